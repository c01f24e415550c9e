"""BM25 keyword relevance (attn_core.lexical) on small hand-made passages."""
from __future__ import annotations

import numpy as np
import pytest

from attn_core.lexical import LexicalIndex, lexical_terms

FILLER = [
    "A printer feeds paper past the drum and fuses the toner.",
    "The gearbox transmits torque from the motor to the wheel.",
    "A battery pack supplies power to the controller board.",
]


def _scores(passages: list[str], query: str, language: str = "en") -> np.ndarray:
    return LexicalIndex(passages, language).scores(query)


def test_passage_with_query_words_outranks_one_without():
    passages = ["The balloon catheter is advanced through the vessel.", *FILLER]
    scores = _scores(passages, "balloon catheter")
    assert scores.dtype == np.float32 and scores.shape == (4,)
    assert scores[0] > 0
    assert np.all(scores[1:] == 0)


def test_term_frequency_saturates():
    """One word fifty times must not beat three distinct query words once each."""
    passages = [" ".join(["valve"] * 50), "The valve spring rests on its seat.", *FILLER]
    scores = _scores(passages, "valve spring seat")
    assert scores[1] > scores[0] > 0


def test_longer_passage_with_the_same_match_scores_lower():
    padding = " ".join(f"word{i}" for i in range(60))
    passages = ["The nozzle sprays ink.", f"The nozzle sprays ink. {padding}", *FILLER]
    scores = _scores(passages, "nozzle")
    assert scores[0] > scores[1] > 0


def test_stop_words_alone_match_nothing():
    passages = ["The said valve is one of the parts.", "Of the claims, claim 1 is said to be broad.", *FILLER]
    assert np.all(_scores(passages, "the of said") == 0)
    assert lexical_terms("the of said wherein comprising thereof a plurality of at least claims", "en") == []


@pytest.mark.parametrize("query, passage", [
    ("catheters", "A catheter is inserted."),
    ("catheter", "Two catheters are inserted."),
    ("inflating", "The balloon is inflated with saline."),
    ("batteries", "The battery is charged."),
    ("coupling", "The shaft is coupled to the rotor."),
])
def test_stemming_matches_word_forms(query, passage):
    assert _scores([passage, *FILLER], query)[0] > 0


def test_repeating_a_query_word_does_not_change_scores():
    index = LexicalIndex(["The balloon catheter.", "A catheter.", *FILLER], "en")
    np.testing.assert_array_equal(index.scores("catheter catheter"), index.scores("catheter"))


def test_hyphenated_words_match_their_parts():
    assert _scores(["The balloon-catheter is advanced.", *FILLER], "balloon catheter")[0] > 0


def test_japanese_query_ranks_the_passage_about_it_first():
    passages = [
        "東京は日本の首都です。",
        "本発明は、バルーンカテーテルを血管内で拡張する方法に関する。",
        "自然言語処理の注意機構を可視化します。",
        "印刷装置は用紙を搬送してトナーを定着させる。",
    ]
    scores = _scores(passages, "バルーンカテーテルの拡張", "ja")
    assert int(np.argmax(scores)) == 1
    assert scores[1] > 0 and np.all(np.delete(scores, 1) == 0)


def test_japanese_terms_drop_particles_and_boilerplate():
    terms = lexical_terms("前記請求項に記載のバルーンを拡張することができる。", "ja")
    assert {"バルーン", "拡張", "請求"} <= set(terms)
    for dropped in ("の", "に", "を", "前記", "記載", "記請", "こと", "事", "できる", "出来る", "。"):
        assert dropped not in terms
    assert lexical_terms("前記の上記", "ja") == []


@pytest.mark.parametrize("query, passage", [
    ("出願", "本件は特許出願の審査に関する。"),
    ("特許出願", "出願人は書類を提出した。"),
    ("請求", "請求項１に係る発明。"),
    ("エチレン", "ポリエチレン製のチューブを用いる。"),  # one unidic word: only bigrams can match
    ("記憶合金", "形状記憶合金からなるステント。"),
])
def test_japanese_bigrams_match_compound_variants(query, passage):
    passages = [passage, "東京は日本の首都です。", "印刷装置は用紙を搬送する。"]
    scores = _scores(passages, query, "ja")
    assert scores[0] > 0 and np.all(scores[1:] == 0)


def test_full_compound_outranks_a_partial_one():
    passages = ["特許出願を審査する。", "出願人が手数料を納付する。", "東京は日本の首都です。"]
    scores = _scores(passages, "特許出願", "ja")
    assert scores[0] > scores[1] > scores[2] == 0


def test_latin_words_inside_japanese_are_english_terms():
    passages = ["本発明のcathetersは、wherein 血管に挿入される。", "東京は日本の首都です。"]
    index = LexicalIndex(passages, "ja")
    assert index.scores("catheter")[0] > 0
    assert np.all(index.scores("wherein") == 0)


def test_fullwidth_and_halfwidth_forms_are_normalised():
    assert lexical_terms("ＳＵＳ３０４　Ｖａｌｖｅ", "en") == lexical_terms("SUS304 valve", "en")
    assert lexical_terms("ｶﾃｰﾃﾙ", "ja") == lexical_terms("カテーテル", "ja")
    passages = ["ＳＵＳ３０４製のバルブ本体。", "東京は日本の首都です。"]
    scores = _scores(passages, "SUS304", "ja")
    assert scores[0] > 0 and scores[1] == 0
    assert _scores(["Valve body made of SUS304.", *FILLER], "ＳＵＳ３０４")[0] > 0


@pytest.mark.parametrize("query", ["", "   ", "。、！", "the of"])
def test_query_without_terms_gives_zeros(query):
    scores = _scores(["The balloon catheter.", "東京は日本の首都です。"], query, "ja")
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(scores, np.zeros(2, dtype=np.float32))


def test_empty_passage_list_and_empty_passages():
    empty = LexicalIndex([], "en")
    assert len(empty) == 0
    assert empty.scores("catheter").shape == (0,)
    assert empty.scores("catheter").dtype == np.float32
    blank = LexicalIndex(["", "the of", "。"], "ja")
    np.testing.assert_array_equal(blank.scores("catheter"), np.zeros(3, dtype=np.float32))
    some = LexicalIndex(["", "The catheter.", "   "], "en").scores("catheter")
    assert some[1] > 0 and some[0] == 0 and some[2] == 0


def test_unmatched_query_term_does_not_error():
    scores = _scores(["The balloon catheter.", *FILLER], "zeppelin catheter")
    assert scores[0] > 0 and np.all(scores[1:] == 0)


def test_term_scores_take_index_terms_as_they_are():
    """A stemmed term ("licens") queried as a term scores like the word it came from; re-tokenising it would
    stem it again and could miss. Every passage's terms are kept in index form for such queries."""
    passages = ["The licensee may copy the work.", "Licenses are granted per copy.", "Nothing here."]
    index = LexicalIndex(passages, "en")
    assert index.passage_terms == [lexical_terms(p, "en") for p in passages]
    stem = lexical_terms("licenses", "en")
    assert stem and stem != ["licenses"]
    np.testing.assert_allclose(index.term_scores(stem), index.scores("licenses"))
    assert index.term_scores(stem)[1] > 0 and index.term_scores(stem)[2] == 0
    assert not index.term_scores(["absent-term"]).any()
