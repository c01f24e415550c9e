"""Every token maps to a span of the original text, for fast (offsets) and slow (aligned) tokenizers."""
from __future__ import annotations

from pathlib import Path

import pytest

from attn_core.alignment import TokenizedText, align_tokens, tokenize_with_spans

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
# The slow MeCab tokenizer needs a few seconds for the 680k-char novel; a large prefix keeps the file fast.
SLOW_PREFIX = 200_000


def corpus_texts() -> list[tuple[str, str]]:
    if not CORPUS.is_dir():
        return []
    out = []
    for path in sorted(CORPUS.glob("*/*.txt")):
        data = path.read_bytes()
        out.append((path.name, data.decode("cp932") if path.name.endswith("_sjis.txt") else data.decode("utf-8")))
    return out


TEXTS = corpus_texts()
needs_corpus = pytest.mark.skipif(not TEXTS, reason=f"corpus not found at {CORPUS}")


def check_spans(text: str, spans: list[tuple[int, int]], min_coverage: float = 0.99) -> float:
    starts = [s for s, _ in spans]
    assert starts == sorted(starts), "spans out of order"
    assert all(0 <= s <= e <= len(text) for s, e in spans)
    covered = bytearray(len(text))
    for s, e in spans:
        covered[s:e] = b"\x01" * (e - s)
    non_space = [i for i, ch in enumerate(text) if not ch.isspace()]
    coverage = sum(covered[i] for i in non_space) / max(len(non_space), 1)
    assert coverage >= min_coverage, f"spans cover only {coverage:.2%} of non-space chars"
    return coverage


@pytest.fixture(scope="module")
def ja_tok(ja_bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ja_bert_dir))
    assert not tok.is_fast
    return tok


@pytest.fixture(scope="module")
def en_tok(en_bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(en_bert_dir))
    assert tok.is_fast
    return tok


@needs_corpus
@pytest.mark.parametrize("name", [n for n, _ in TEXTS])
def test_corpus_spans_with_slow_japanese_tokenizer(ja_tok, name):
    text = dict(TEXTS)[name][:SLOW_PREFIX]
    tt = tokenize_with_spans(ja_tok, text)
    assert len(tt.ids) == len(tt.tokens) == len(tt.spans) == len(tt.unk)
    assert any(tt.unk), "the tiny vocab should leave many [UNK]s"
    check_spans(text, tt.spans)


@needs_corpus
@pytest.mark.parametrize("name", [n for n, _ in TEXTS])
def test_corpus_spans_with_fast_english_tokenizer(en_tok, name):
    text = dict(TEXTS)[name]
    tt = tokenize_with_spans(en_tok, text)
    check_spans(text, tt.spans)


def test_fast_spans_equal_tokenizer_offsets(en_tok):
    text = "The server receives a request, and forwards it: [0001] héllo Wörld 12.5%."
    tt = tokenize_with_spans(en_tok, text)
    enc = en_tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert isinstance(tt, TokenizedText)
    assert tt.ids == enc["input_ids"]
    assert tt.spans == [tuple(o) for o in enc["offset_mapping"]]
    assert tt.unk == [i == en_tok.unk_token_id for i in tt.ids]


def test_fast_path_long_text_does_not_warn(en_tok, caplog):
    text = "the server receives a request. " * 2000
    tt = tokenize_with_spans(en_tok, text)
    assert len(tt.ids) > en_tok.model_max_length
    assert "longer than the specified maximum" not in caplog.text


def texts_of(text, spans):
    return [text[s:e] for s, e in spans]


def test_full_width_digits_and_letters():
    text = "端面２０ｂに接続"
    spans = align_tokens(text, ["端", "##面", "20", "##b", "に", "接続"])
    assert texts_of(text, spans) == ["端", "面", "２０", "ｂ", "に", "接続"]


def test_circled_digit_and_squared_company():
    text = "①㈱東京"
    spans = align_tokens(text, ["1", "(", "株", ")", "東京"])
    assert texts_of(text, spans) == ["①", "㈱", "㈱", "㈱", "東京"]


def test_half_width_katakana_with_voiced_marks():
    text = "ｶﾞｽ ﾊﾟｲﾌﾟ"
    spans = align_tokens(text, ["ガス", "パイプ"])
    assert texts_of(text, spans) == ["ｶﾞｽ", "ﾊﾟｲﾌﾟ"]


def test_lowercase_and_accents():
    text = "Café NAÏVE Résumé"
    spans = align_tokens(text, ["cafe", "nai", "##ve", "resume"], lowercase=True, strip_accents=True)
    assert texts_of(text, spans) == ["Café", "NAÏ", "VE", "Résumé"]


def test_decomposed_accent_stays_with_its_letter():
    text = "Cafe\u0301 bar"
    spans = align_tokens(text, ["cafe", "bar"], lowercase=True, strip_accents=True)
    assert texts_of(text, spans) == ["Cafe\u0301", "bar"]


def test_sentencepiece_markers():
    text = "Hello world again"
    spans = align_tokens(text, ["▁Hello", "▁wor", "ld", "▁", "again"])
    assert texts_of(text, spans)[:3] == ["Hello", "wor", "ld"]
    assert texts_of(text, spans)[4] == "again"


def test_wordpiece_pieces():
    text = "unaffable thing"
    spans = align_tokens(text, ["un", "##aff", "##able", "thing"])
    assert texts_of(text, spans) == ["un", "aff", "able", "thing"]


def test_single_unk_takes_the_gap():
    text = "a  strangeword  b"
    spans = align_tokens(text, ["a", "[UNK]", "b"])
    assert texts_of(text, spans) == ["a", "strangeword", "b"]


def test_consecutive_unks_split_by_whitespace():
    text = "x foo bar baz y"
    spans = align_tokens(text, ["x", "[UNK]", "[UNK]", "[UNK]", "y"])
    assert texts_of(text, spans) == ["x", "foo", "bar", "baz", "y"]


def test_consecutive_unks_split_by_characters():
    text = "東京鷗外の本"
    spans = align_tokens(text, ["東京", "[UNK]", "[UNK]", "の", "本"])
    assert texts_of(text, spans) == ["東京", "鷗", "外", "の", "本"]


def test_unks_at_both_ends():
    text = "  鷗 abc 鷗  "
    spans = align_tokens(text, ["[UNK]", "abc", "[UNK]"])
    assert texts_of(text, spans) == ["鷗", "abc", "鷗"]


def test_next_token_inside_unknown_word_is_not_taken():
    # "。" also occurs inside the unknown run: the match the following token continues wins
    text = "に丸傍点]。毒藥。【"
    tokens = ["に", "[UNK]", "[UNK]", "[UNK]", "[UNK]", "。", "【"]
    spans = align_tokens(text, tokens)
    assert texts_of(text, spans)[5:] == ["。", "【"]
    assert spans[5] == (len(text) - 2, len(text) - 1)


def test_lost_token_does_not_jump_far_ahead():
    text = "alpha beta " + "x " * 200 + "gamma"
    spans = align_tokens(text, ["alpha", "gamma", "beta"])
    assert texts_of(text, spans)[0] == "alpha"
    assert texts_of(text, spans)[2] == "beta"
    assert spans[1][0] <= spans[2][0]  # "gamma" was not found nearby: it shares the gap, in order


def test_spans_are_ordered_even_for_garbage_tokens():
    text = "abc def"
    spans = align_tokens(text, ["zzz", "[UNK]", "def", "abc", "qq"])
    starts = [s for s, _ in spans]
    assert starts == sorted(starts)
    assert all(0 <= s <= e <= len(text) for s, e in spans)


def test_slow_tokenizer_block_offsets(ja_tok):
    line = "本発明は、バルーンカテーテルに関する。\n"
    text = line * 1200  # > one 10k-char block
    tt = tokenize_with_spans(ja_tok, text)
    check_spans(text, tt.spans, min_coverage=1.0)
    known = [(t, text[s:e]) for t, (s, e), u in zip(tt.tokens, tt.spans, tt.unk) if not u]
    assert all(t.removeprefix("##") == piece for t, piece in known)
