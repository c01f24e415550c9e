"""End-to-end analysis on tiny real models (fast BERT, Japanese BERT with MeCab, GPT-2, a classifier)."""
from __future__ import annotations

import html
import re

import numpy as np
import pytest
from conftest import EN_TEXT, JA_TEXT

from attn_core import ResultStore, Settings, analyze, chunk_attention, document_from_text
from attn_core.errors import EmptyDocumentError


def _check_result(r, text):
    assert r.words, "no words"
    for w in r.words:
        assert text[w.start:w.end] == w.text
        assert 0.0 <= w.score <= 1.0
    assert [w.start for w in r.words] == sorted(w.start for w in r.words)
    ranks = sorted(p.rank for p in r.passages)
    assert ranks == list(range(1, len(r.passages) + 1))
    by_rank = r.read_first()
    assert all(a.score >= b.score for a, b in zip(by_rank, by_rank[1:]))
    assert len(set(round(w.score, 6) for w in r.words)) > 5


def test_english_long_document_many_chunks(en_bert):
    text = EN_TEXT * 6
    doc = document_from_text(text, "en.txt")
    seen = []
    r = analyze(doc, en_bert, progress=lambda d, n: seen.append((d, n)))
    assert len(r.chunks) > 3  # 64-position model: the document needs many windows
    assert seen[-1] == (len(r.chunks), len(r.chunks))
    _check_result(r, text)
    # every token got a score from some chunk, and the tail was analysed
    assert r.tokens[-1].end >= len(text.rstrip()) - 1
    assert all(t.score > 0 for t in r.tokens)
    labels = [p.label for p in r.passages if p.label]
    assert "[0001]" in labels


def test_japanese_slow_tokenizer(ja_bert):
    doc = document_from_text(JA_TEXT * 3, "ja.txt")
    assert doc.language == "ja"
    r = analyze(doc, ja_bert)
    _check_result(r, doc.text)
    assert any(w.text == "カテーテル" for w in r.words)  # fugashi word, not characters
    spans = [(t.start, t.end) for t in r.tokens]
    assert all(0 <= s <= e <= len(doc.text) for s, e in spans)


def test_causal_model(gpt2):
    doc = document_from_text(EN_TEXT * 3, "en.txt")
    r = analyze(doc, gpt2)
    _check_result(r, doc.text)
    assert r.model.kind == "causal"


def test_classifier_reports_labels(classifier):
    doc = document_from_text(EN_TEXT * 3, "en.txt")
    r = analyze(doc, classifier)
    assert r.label in ("label_0", "label_1")
    assert 0.5 <= r.probability <= 1.0
    assert all(c.label in ("label_0", "label_1") and 0 < c.probability <= 1 for c in r.chunks)
    assert r.to_json()["label"] == r.label


def test_methods_differ_and_all_run(en_bert):
    doc = document_from_text(EN_TEXT * 2, "en.txt")
    raws = {}
    for method in ("received", "norm", "cls", "max", "rollout"):
        r = analyze(doc, en_bert, Settings(method=method))
        _check_result(r, doc.text)
        raws[method] = np.array([t.score for t in r.tokens])
    assert not np.allclose(raws["received"], raws["cls"])
    assert not np.allclose(raws["received"], raws["rollout"])


def test_cache_hit_and_resume(en_bert, tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    doc = document_from_text("".join(f"{EN_TEXT} part {i}.\n" for i in range(8)), "en.txt")

    class Interrupt(Exception):
        pass

    def stop_after_first_batch(done, total):
        if done > 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        analyze(doc, en_bert, store=store, progress=stop_after_first_batch, batch_tokens=128)
    saved = store.count("chunk")
    assert saved > 0
    r = analyze(doc, en_bert, store=store)
    assert r.cached_chunks == saved < len(r.chunks)  # resumed: finished chunks were not recomputed
    again = analyze(doc, en_bert, store=store)
    assert again.cached_chunks == len(again.chunks)
    assert [w.score for w in again.words] == [w.score for w in r.words]
    fresh = analyze(doc, en_bert, store=None, use_store=False)
    np.testing.assert_allclose([t.score for t in fresh.tokens], [t.score for t in r.tokens], rtol=1e-5)


def test_settings_change_cache_key(en_bert, tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    doc = document_from_text(EN_TEXT, "en.txt")
    analyze(doc, en_bert, store=store)
    r = analyze(doc, en_bert, Settings(method="max"), store=store)
    assert r.cached_chunks == 0


def test_chunk_attention_for_explorer(en_bert):
    doc = document_from_text(EN_TEXT * 2, "en.txt")
    att = chunk_attention(doc, en_bert, 1)
    L, H, T, T2 = att.attentions.shape
    assert (L, H) == (2, 4) and T == T2 == len(att.tokens)
    assert att.tokens[0] == "[CLS]" and att.tokens[-1] == "[SEP]" and att.special[0]
    np.testing.assert_allclose(att.attentions.sum(-1), 1.0, rtol=1e-5)
    # the explorer's reduction of the full tensor equals the engine's own scores for that chunk
    r = analyze(doc, en_bert)
    c = r.chunks[1]
    engine = [t.score for t in r.tokens if t.chunk == 1]
    mine = att.reduce("received")[1:-1] * c.n_tokens
    core = [i for i, t in enumerate(r.tokens) if t.chunk == 1]
    offset = core[0] - next(i for i, t in enumerate(r.tokens) if t.start >= c.start)
    np.testing.assert_allclose(engine, mine[offset:offset + len(engine)], rtol=1e-4)
    # the norm-weighted method too (it needs each key's value-output norm, kept with the attention)
    r_norm = analyze(doc, en_bert, Settings(method="norm"))
    engine_norm = [t.score for t in r_norm.tokens if t.chunk == 1]
    mine_norm = att.reduce("norm")[1:-1] * c.n_tokens
    np.testing.assert_allclose(engine_norm, mine_norm[offset:offset + len(engine_norm)], rtol=1e-4)
    assert not np.allclose(mine_norm, att.reduce("received")[1:-1] * c.n_tokens)
    with pytest.raises(IndexError):
        chunk_attention(doc, en_bert, 999)


def test_empty_document_is_a_typed_error(en_bert):
    with pytest.raises(EmptyDocumentError):
        analyze(document_from_text("   \n ", "blank.txt"), en_bert)


def test_html_in_text_is_only_text(en_bert):
    from attn_core.export import report_html
    from attn_core.render import render_document_html

    text = "The server <script>alert(1)</script> sends </span><img src=x onerror=alert(2)> packets."
    r = analyze(document_from_text(text, "<b>x</b>.txt"), en_bert)
    for out in (render_document_html(r, top_percent=100), report_html(r)):
        assert "<script" not in out and "<img" not in out
        tags = set(re.findall(r"</?([a-z0-9]+)", out))
        assert tags <= {"div", "span", "ol", "li", "a", "h1", "h2", "p", "html", "head", "body", "meta", "title",
                        "style", "mark"}, tags
        visible = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<style>.*?</style>", "", out, flags=re.S)))
        assert text in visible
    assert "&lt;b&gt;x&lt;/b&gt;.txt" in report_html(r)


def test_a_patent_record_header_and_bare_headings_are_never_shaded(minilm):
    """The llm-jp excerpts (like many exported records) start with a header: "Japanese Patent Raw Record", a
    ruler, "Source year : 2020"… sections.py calls those lines META. They are not content: they must not be the
    brightest words of the page (before, "Japanese Patent Raw Record" held percentile 1.0), while the abstract
    and claim right after them keep their shading. A bare heading (【特許請求の範囲】) is not content either."""
    from pathlib import Path

    from attn_core import ingest_path
    from attn_core.sections import Section, classify_passages
    from attn_core.segment import passage_spans

    doc = ingest_path(Path(__file__).parent / "data" / "ja_patent_excerpt_JP2020151139A_llmjp.txt")
    result = analyze(doc, minilm, use_store=False)
    spans = passage_spans(doc.text, doc.language, doc.paragraphs)
    sections = classify_passages(doc.text, [(p.start, p.end) for p in spans])
    leading = next(i for i, s in enumerate(sections) if s != Section.META)  # the record header's passages
    assert leading >= 1
    meta_end = spans[leading - 1].end
    header = [w for w in result.words if w.end <= meta_end]
    assert {"Japanese", "Patent", "Record"} <= {w.text for w in header}
    assert all(w.score == 0 for w in header)
    body = [w for w in result.words if w.start >= meta_end]
    assert max(w.score for w in body) == 1.0 and sum(w.score > 0.5 for w in body) > 20
    heading = spans[sections.index(Section.HEADING)]  # 【特許請求の範囲】 on its own line
    assert doc.text[heading.start:heading.end].strip() == "【特許請求の範囲】"
    assert all(w.score == 0 for w in result.words if heading.start <= w.start < heading.end)


GUIDE = """Examination of Inventive Step

1. Overview

An invention lacks an inventive step when a person skilled in the art could easily have arrived at it from the
prior art. The examiner reasons from the closest prior art to the claimed invention and asks whether that
reasoning is plausible.

2. The Person Skilled in the Art

The person skilled in the art knows the common general knowledge of the field at the filing date, can use
ordinary research methods and can choose materials and change designs in ordinary ways.

Figure 1

Cited Invention A

3. Advantageous Effects

An effect that is superior to what the prior art suggests, and that a skilled person could not have predicted,
supports an inventive step even where the combination of features looks obvious.
"""


def test_read_first_outside_patents_puts_running_text_before_title_and_headings(minilm):
    """A guideline is not a patent, yet attention still favours its short title and heading lines. The real
    model's read-first list must start with the paragraphs; headings stay shaded (only a patent's are not)."""
    from attn_core.scoring import rank_passages

    doc = document_from_text(GUIDE, "guide.txt")
    result = analyze(doc, minilm, use_store=False)
    by_rank = sorted(result.passages, key=lambda p: p.rank)
    body = [p for p in by_rank if p.section == "body"]
    other = [p for p in by_rank if p.section != "body"]
    assert len(body) == 3 and {p.section for p in other} == {"title", "heading"}
    assert max(p.rank for p in body) < min(p.rank for p in other)
    assert result.read_first(3) == body
    headings = [w for w in result.words for p in other if p.start <= w.start < p.end]
    assert any(w.score > 0.5 for w in headings)
    plain = rank_passages([(p.start, p.end, p.label, p.page) for p in result.passages], result.words)
    plain_top = min(plain, key=lambda p: p.rank)
    assert GUIDE[plain_top.start:plain_top.end].count("\n") == 0  # without the prior, a one-line passage leads
