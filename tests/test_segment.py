"""Words agree with the contract checker; sentences and passages follow line structure."""
from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from attn_core.document import Paragraph
from attn_core.segment import PassageSpan, boundary_offsets, passage_spans, sentence_spans, word_spans

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")


def read(rel: str) -> str:
    data = (CORPUS / rel).read_bytes()
    return data.decode("cp932") if rel.endswith("_sjis.txt") else data.decode("utf-8")


def fugashi_bounds(text: str) -> set[int]:
    """The boundary set of check_contract.py --fugashi, computed the same way."""
    import fugashi
    import unidic_lite

    tagger = fugashi.Tagger("-d " + unidic_lite.DICDIR)
    bounds, pos = set(), 0
    for line in text.splitlines(keepends=True):
        off = 0
        for m in tagger(line):
            s = line.find(m.surface, off)
            if s < 0:
                continue
            bounds.update((pos + s, pos + s + len(m.surface)))
            off = s + len(m.surface)
        pos += len(line)
    return bounds


def letter_coverage(text: str, spans) -> float:
    is_ln = lambda ch: unicodedata.category(ch)[0] in "LN"  # noqa: E731
    letters = sum(1 for ch in text if is_ln(ch))
    return sum(1 for s, e in spans for ch in text[s:e] if is_ln(ch)) / max(letters, 1)


@needs_corpus
@pytest.mark.parametrize("rel", [
    "ja/ja_patent_excerpt_JP2020151139A_llmjp.txt",
    "ja/ja_patent_excerpt_JP2020151725A_llmjp.txt",
    "ja/ja_patent_act_tokkyoho_334AC0000000121.txt",
])
def test_japanese_words_sit_on_fugashi_boundaries(rel):
    text = read(rel)
    words = word_spans(text, "ja")
    bounds = fugashi_bounds(text)
    assert all(s in bounds and e in bounds for s, e in words)
    assert letter_coverage(text, words) >= 0.99
    assert [s for s, _ in words] == sorted(s for s, _ in words)


@needs_corpus
@pytest.mark.parametrize("rel", sorted(p.name for p in (CORPUS / "en").glob("*.txt")) if CORPUS.is_dir() else [])
def test_english_word_coverage(rel):
    text = read("en/" + rel)
    words = word_spans(text, "en")
    assert letter_coverage(text, words) >= 0.95
    assert all(any(unicodedata.category(c)[0] in "LN" for c in text[s:e]) for s, e in words)


def test_english_word_rules():
    text = "Don't stop: a state-of-the-art 1.5 mm device, 10,000 units (U.S.)!"
    words = [text[s:e] for s, e in word_spans(text, "en")]
    assert words == ["Don't", "stop", "a", "state-of-the-art", "1.5", "mm", "device", "10,000", "units", "U", "S"]


def test_japanese_words_leave_out_punctuation():
    text = "東京は、日本の首都です。"
    words = [text[s:e] for s, e in word_spans(text, "ja")]
    assert "、" not in words and "。" not in words
    assert "東京" in words and "首都" in words


def test_japanese_hard_wrapped_sentence_is_not_cut():
    text = ("【請求項１】\n"
            "内部に第一流路及び第二流路を備えたカテーテル本体と、該カテーテル本体の排出口側端部にバルーン部とを有するバルー\n"
            "ンカテーテルであって、前記バルーン部が、膨張収縮可能な可撓性のチューブからなる。次の文です。\n\n"
            "別の段落。")
    sents = [text[s:e] for s, e in sentence_spans(text, "ja")]
    assert sents[0] == "【請求項１】"
    assert sents[1].startswith("内部に") and sents[1].endswith("チューブからなる。")
    assert "\n" in sents[1]
    assert sents[2:] == ["次の文です。", "別の段落。"]


def test_japanese_quote_inside_sentence():
    text = "「やあい！」と彼は言った。「待て」\n「はい」"
    sents = [text[s:e] for s, e in sentence_spans(text, "ja")]
    assert sents == ["「やあい！」と彼は言った。", "「待て」", "「はい」"]


@needs_corpus
def test_pdf_extraction_sentences_join_wrapped_lines():
    text = read("ja/ja_jpo_exam_guidelines_III-2-2_inventive_step.pypdf_extracted.txt")
    sents = [text[s:e] for s, e in sentence_spans(text, "ja")]
    joined = [s for s in sents if s.startswith("当業者が容易に発明をすることができたものについて")]
    assert joined and joined[0].endswith("からである。")


def test_english_sentences_and_abbreviations():
    text = ("See FIG. 1 and No. 5, e.g. the U.S. office. Then it ends! Is it 2.5? Yes.\n"
            "HEADING\n\nNew paragraph without a period\nsecond line")
    sents = [text[s:e] for s, e in sentence_spans(text, "en")]
    assert sents[0] == "See FIG. 1 and No. 5, e.g. the U.S. office."
    assert sents[1:4] == ["Then it ends!", "Is it 2.5?", "Yes."]
    assert "HEADING" in sents


def test_sentences_cover_text_in_order():
    text = "  One. Two!  \n\nThree?  "
    spans = sentence_spans(text, "en")
    assert [text[s:e] for s, e in spans] == ["One.", "Two!", "Three?"]
    assert boundary_offsets(text, "en") == [e for _, e in spans]


@needs_corpus
def test_us_patent_numbered_paragraphs_and_claims():
    text = read("en/US08930553B2.txt")
    passages = passage_spans(text, "en")
    labels = [p.label for p in passages if p.label and p.label.startswith("[")]
    assert labels[:3] == ["[0001]", "[0002]", "[0003]"]
    distinct = list(dict.fromkeys(labels))  # a paragraph over max_chars gives several passages, same label
    assert distinct == sorted(distinct) and len(distinct) == 37
    p1 = next(p for p in passages if p.label == "[0001]")
    assert text[p1.start:p1.end].startswith("[0001] The present invention relates")
    assert text[p1.start:p1.end].endswith("supporting SIP.")
    claim_lines = [line for line in text.splitlines() if line[:3] in {f"{i}. " for i in range(1, 9)}]
    assert len(claim_lines) == 8
    for line in claim_lines:
        start = text.index(line)
        assert any(p.start <= start and start + len(line) <= p.end for p in passages), line[:40]
    check_passages(text, passages, 1500)


def test_full_width_numbered_paragraphs_with_wrapped_lines():
    text = ("【発明の詳細な説明】\n【技術分野】\n【０００１】\n本発明は、カテーテルに関する。二行目に\n続く文である。\n"
            "【０００２】\n次の段落。\n")
    passages = passage_spans(text, "ja")
    numbered = [p for p in passages if p.label and p.label.startswith("【０")]
    assert [p.label for p in numbered] == ["【０００１】", "【０００２】"]
    assert text[numbered[0].start:numbered[0].end].endswith("続く文である。")


@needs_corpus
def test_table_stays_with_its_paragraph():
    text = read("en/US08927118B2.txt")
    passages = passage_spans(text, "en", max_chars=100_000)
    p = next(p for p in passages if p.label == "[0280]")
    assert text[p.start:p.end].endswith("[/TABLE]")


def check_passages(text: str, passages: list[PassageSpan], max_chars: int) -> None:
    prev_end = 0
    for p in passages:
        piece = text[p.start:p.end]
        assert p.start >= prev_end and p.start < p.end
        assert piece == piece.strip()
        assert any(unicodedata.category(c)[0] in "LN" for c in piece)
        assert len(piece) <= max_chars
        prev_end = p.end


@needs_corpus
@pytest.mark.parametrize("rel,lang", [
    ("en/US08927118B2.txt", "en"),
    ("ja/ja_patent_act_tokkyoho_334AC0000000121.txt", "ja"),
    ("ja/ja_aozora_shiki_rososhinkan_retsuden_sjis.txt", "ja"),
    ("ja/ja_jpo_exam_guidelines_III-2-2_inventive_step.pypdf_extracted.txt", "ja"),
])
def test_corpus_passages_are_clean(rel, lang):
    text = read(rel)
    check_passages(text, passage_spans(text, lang, max_chars=400), 400)


def test_max_chars_splits_at_sentence_ends():
    text = "[0001] " + " ".join(f"Sentence number {i} is here." for i in range(40))
    passages = passage_spans(text, "en", max_chars=200)
    assert len(passages) > 1
    check_passages(text, passages, 200)
    assert all(text[p.start:p.end].endswith(".") for p in passages)
    assert all(p.label == "[0001]" for p in passages)


def test_one_very_long_sentence_is_still_cut():
    text = "、".join(["長い文"] * 400) + "。"
    passages = passage_spans(text, "ja", max_chars=300)
    check_passages(text, passages, 300)
    assert passages[-1].end == len(text)


def test_ingestion_paragraphs_carry_page_and_label():
    text = "First page text here.\n\nSecond page text. More.\n"
    s2 = text.index("Second")
    paragraphs = (Paragraph(0, 21, label="p1", page=1), Paragraph(s2, len(text), page=2))
    passages = passage_spans(text, "en", paragraphs)
    assert [(text[p.start:p.end], p.label, p.page) for p in passages] == [
        ("First page text here.", "p1", 1), ("Second page text. More.", None, 2)]


def test_fallbacks_english_paragraphs_japanese_sentences():
    en = "One line paragraph. Two sentences.\n\nAnother paragraph."
    assert [en[p.start:p.end] for p in passage_spans(en, "en")] == [
        "One line paragraph. Two sentences.", "Another paragraph."]
    ja = "一つ目の文。二つ目の文。\n\n三つ目。"
    assert [ja[p.start:p.end] for p in passage_spans(ja, "ja")] == ["一つ目の文。", "二つ目の文。", "三つ目。"]


def test_punctuation_only_text_gives_no_passages():
    assert passage_spans("。。。\n---\n", "ja") == []
    assert word_spans("、。！", "ja") == []


def test_a_passage_is_named_by_its_caption_or_first_line_never_by_a_later_list_item():
    """A statute's list items are short lines without 。, so they join the sentence after them like heading
    lines do; the passage was named after the LAST item ("三　…処分"), which the read-first list then showed
    before a preview starting at "一". A caption such as （目的） still names the article under it."""
    text = ("（目的）\n第一条　この法律は、発明を保護する。\n"
            "一　出願人の氏名\n二　特許番号\n三　政令で定める処分\n２　前項の書面を提出する。\n")
    spans = passage_spans(text, "ja")
    named = {text[p.start:p.end].split("\n")[0]: p.label for p in spans}
    assert named["（目的）"] == "（目的）"
    assert named["一　出願人の氏名"] == "一　出願人の氏名"


def test_a_statutes_paragraphs_are_labelled_with_their_article():
    """２　前項の… alone does not say which article it belongs to: its label does."""
    text = ("（目的）\n第一条　この法律は、発明を保護する。\n２　前項の規定は、特許に適用する。\n"
            "第二条　この法律で発明とは、創作をいう。\n"
            "第二十九条の二　特許出願に係る発明は、特許を受けることができない。ただし、例外がある。\n"
            "２　前項の規定は、適用しない。\n")
    named = {text[p.start:p.end].split("\n")[0]: p.label for p in passage_spans(text, "ja")}
    assert named["（目的）"] == "（目的）"
    assert named["２　前項の規定は、特許に適用する。"] == "第一条"
    assert named["第二条　この法律で発明とは、創作をいう。"] is None  # it starts its article
    assert named["２　前項の規定は、適用しない。"] == "第二十九条の二"
    assert named["ただし、例外がある。"] == "第二十九条の二"
    assert all(p.label is None for p in passage_spans("第一条　甲。\n２　乙。\n", "ja"))  # not a statute


@needs_corpus
def test_every_label_of_the_patent_act_starts_its_passage_or_names_its_article():
    from attn_core.ingest import ingest_path
    from attn_core.segment import ARTICLE_LINE

    doc = ingest_path(CORPUS / "ja" / "ja_patent_act_tokkyoho_334AC0000000121.txt")
    spans = passage_spans(doc.text, doc.language, doc.paragraphs)
    articles = [m.group(1) for m in ARTICLE_LINE.finditer(doc.text)]
    own = [p for p in spans if p.label and p.label not in articles]
    assert len(own) > 300
    assert all(doc.text[p.start:p.end].lstrip().startswith(p.label.strip()) for p in own)
    named = [p for p in spans if p.label in articles]
    assert len(named) > 500
    for p in named[::25]:  # the named article is the last one that begins before the passage
        before = [m.group(1) for m in ARTICLE_LINE.finditer(doc.text, 0, p.start)]
        assert before[-1] == p.label
