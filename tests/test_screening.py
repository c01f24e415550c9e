"""The Batch page's screening table and its cross-document score."""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import EN_TEXT

from attn_core.analysis import analyze
from attn_core.document import document_from_text
from attn_core.library import Review
from attn_core.results import AnalysisResult, ModelInfo, Passage, Settings, TokenScore
from attn_core.screening import COLUMNS, focus_score, screening_table


def _result(text: str, token_scores: list[float], passages: list[tuple[int, int, int]], name="d.txt"):
    """A hand-made result: one token per word of `text`, passages (start, end, rank)."""
    doc = document_from_text(text, name, language="en")
    spans, pos = [], 0
    for w in text.split():
        s = text.index(w, pos)
        spans.append((s, s + len(w)))
        pos = s + len(w)
    assert len(spans) == len(token_scores)
    tokens = [TokenScore(text[s:e], s, e, v, 0) for (s, e), v in zip(spans, token_scores)]
    ps = [Passage(s, e, 1.0 / r, r) for s, e, r in passages]
    info = ModelInfo("m", "m-id", "encoder", "cpu")
    return AnalysisResult(doc, info, Settings(), tokens, [], ps, [], 0.0)


def test_focus_is_attention_lift_of_the_top_passages():
    text = "aa bb cc dd ee ff gg hh"
    # passages: [aa bb] rank 1, [cc dd] rank 2, [ee ff gg hh] rank 3
    r = _result(text, [3.0, 3.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5], [(0, 5, 1), (6, 11, 2), (12, len(text), 3)])
    overall = np.mean([3, 3, 1, 1, 0.5, 0.5, 0.5, 0.5])
    assert focus_score(r, top_k=1) == pytest.approx(3.0 / overall)
    assert focus_score(r, top_k=2) == pytest.approx(2.0 / overall)
    assert focus_score(r, top_k=3) == pytest.approx(1.0)  # everything is "top": no lift


def test_focus_is_scale_free_and_flat_attention_gives_one():
    text = "aa bb cc dd"
    flat = _result(text, [1.0] * 4, [(0, 5, 1), (6, 11, 2)])
    assert focus_score(flat, 1) == pytest.approx(1.0)
    a = _result(text, [2.0, 2.0, 0.5, 0.5], [(0, 5, 1), (6, 11, 2)])
    b = _result(text, [20.0, 20.0, 5.0, 5.0], [(0, 5, 1), (6, 11, 2)])
    assert focus_score(a, 1) == pytest.approx(focus_score(b, 1)) == pytest.approx(1.6)


def test_focus_nan_without_tokens_or_passages():
    r = _result("aa bb", [1.0, 1.0], [])
    assert math.isnan(focus_score(r))


def test_screening_table_rows_sorting_and_reviews():
    text = "aa bb cc dd"
    sharp = _result(text, [4.0, 4.0, 0.1, 0.1], [(0, 5, 1), (6, 11, 2)], name="sharp.txt")
    flat = _result(text + " ", [1.0] * 4, [(0, 5, 1), (6, 11, 2)], name="flat.txt")
    assert sharp.document.sha256 != flat.document.sha256
    mark = Review(flat.document.sha256, "flat.txt", "relevant", "claim 1 <here>", 1.0)
    df = screening_table([flat, sharp], [mark], top_k=1)
    assert list(df.columns) == COLUMNS
    assert list(df.document) == ["sharp.txt", "flat.txt"]  # highest focus first
    assert df.focus.iloc[0] > 1.5 and df.focus.iloc[1] == pytest.approx(1.0)
    assert list(df.status) == ["unread", "relevant"] and df.note.iloc[1] == "claim 1 <here>"
    assert df["top passages"].iloc[0] == "#1 aa bb"
    assert df.chars.iloc[0] == len(text) and df.sha256.iloc[1] == flat.document.sha256
    # a mapping of reviews works too, and the table sorts by any column
    df2 = screening_table([flat, sharp], {mark.sha256: mark})
    assert df2.sort_values("chars").document.iloc[0] == "sharp.txt"


def test_screening_table_empty():
    df = screening_table([], [])
    assert len(df) == 0 and list(df.columns) == COLUMNS


def test_screening_table_on_real_analyses(en_bert):
    docs = [document_from_text(EN_TEXT, "a.txt", "en"),
            document_from_text(EN_TEXT.replace("packet", "tunnel") * 2, "b.txt", "en")]
    results = [analyze(d, en_bert, use_store=False) for d in docs]
    df = screening_table(results, None)
    assert set(df.document) == {"a.txt", "b.txt"} and len(df) == 2
    assert (df.focus > 0).all() and df.focus.notna().all()
    for _, row in df.iterrows():
        r = next(x for x in results if x.document.name == row.document)
        assert row.focus == pytest.approx(focus_score(r), abs=1e-4)
        assert row["top passages"].startswith("#1 ") and row["top passages"].count("\n") == min(3, len(r.passages)) - 1
        assert row.chunks == len(r.chunks) and row.language == "en"
