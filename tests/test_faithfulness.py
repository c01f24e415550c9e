"""Faithfulness badge: deletion test of the highlight vs random words and the longest-words baseline."""
from __future__ import annotations

import json
import math
from contextlib import contextmanager

import numpy as np
import pytest
from conftest import EN_TEXT

from attn_core import ResultStore, Settings, analyze, document_from_text
from attn_core.faithfulness import (
    Faithfulness,
    WindowShift,
    _shift,
    deletion_count,
    longest_selection,
    measure_faithfulness,
    pick_windows,
    random_selections,
    ratio,
    summarize,
    top_selection,
    window_shifts,
    word_tokens,
)
from attn_core.results import ChunkInfo

KEYS = {"method", "ratio_random", "ratio_baseline", "fraction", "draws"}


@contextmanager
def counting_forwards(model):
    """Count model calls and the longest sequence any of them saw."""
    calls: list[int] = []

    def hook(module, args, kwargs, output):
        calls.append(int(kwargs["input_ids"].shape[1]))

    handle = model.model.register_forward_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


# ------------------------------------------------------------------------------------------- pure pieces
def test_badge_arithmetic_on_a_hand_made_case():
    windows = [WindowShift(0, 40, 4, 0.08, (0.01, 0.02), 0.05),
               WindowShift(3, 30, 3, 0.04, (0.02, 0.01), 0.03)]
    f = summarize(windows, method="norm", fraction=0.1, draws=2, measure="m")
    # top mean 0.06, random mean 0.015, baseline mean 0.04
    assert f.top_shift == pytest.approx(0.06) and f.random_shift == pytest.approx(0.015)
    assert f.baseline_shift == pytest.approx(0.04)
    assert f.ratio_random == pytest.approx(4.0) and f.ratio_baseline == pytest.approx(1.5)
    assert f.badge == "4.0× random · 1.5× word-length baseline"
    assert "4.0×" in f.explanation and "1.5×" in f.explanation and "\n" not in f.explanation
    assert f.windows == 2
    d = f.to_json()
    assert KEYS <= set(d) and d["ratio_random"] == 4.0 and d["method"] == "norm" and d["draws"] == 2
    assert Faithfulness.from_json(json.loads(json.dumps(f.to_json(digits=None)))) == f


def test_ratio_degenerate_denominators():
    assert ratio(0.3, 0.1) == pytest.approx(3.0)
    assert ratio(0.3, 0.0) is None and ratio(0.3, -0.1) is None and ratio(0.0, 0.0) is None
    assert ratio(float("nan"), 1.0) is None and ratio(1.0, float("inf")) is None and ratio(None, 1.0) is None
    f = summarize([WindowShift(0, 10, 1, 0.2, (0.0, 0.0), 0.1)], method="received", fraction=0.1, draws=2)
    assert f.ratio_random is None and f.ratio_baseline == pytest.approx(2.0)
    assert f.badge == "n/a× random · 2.0× word-length baseline"
    json.dumps(f.to_json(), allow_nan=False)  # strict JSON: no inf/nan
    empty = summarize([], method="received", fraction=0.1, draws=5)
    assert empty.windows == 0 and empty.ratio_random is None and empty.badge.startswith("n/a×")
    assert "could not be measured" in empty.explanation


def test_selections():
    assert top_selection([0.1, 0.9, 0.5, 0.9], 2) == [1, 3]  # tie → earlier word; returned in text order
    assert top_selection([0.3, 0.3, 0.3], 1) == [0]
    assert longest_selection(["a", "protocol", "of", "backup", "cluster"], 2) == [1, 4]
    assert [deletion_count(n, 0.1) for n in (0, 1, 2, 5, 14, 15, 30, 254)] == [0, 1, 1, 1, 1, 2, 3, 25]
    a = random_selections(50, 5, 5, seed=0, window=3)
    assert a == random_selections(50, 5, 5, seed=0, window=3)  # reproducible
    assert a != random_selections(50, 5, 5, seed=1, window=3)
    assert a != random_selections(50, 5, 5, seed=0, window=4)  # windows draw independently
    assert len({tuple(s) for s in a}) == 5 and all(len(set(s)) == 5 and max(s) < 50 for s in a)


def test_windows_evenly_spaced_first_and_last():
    chunks = [ChunkInfo(i, i * 10, i * 10 + 12, i * 10, i * 10 + 10, 12) for i in range(30)]
    picked = [c.index for c in pick_windows(chunks, 8)]
    assert len(picked) == 8 and picked[0] == 0 and picked[-1] == 29 and picked == sorted(picked)
    gaps = np.diff(picked)
    assert gaps.max() - gaps.min() <= 1
    assert [c.index for c in pick_windows(chunks[:3], 8)] == [0, 1, 2]
    assert pick_windows([], 8) == []


def test_word_to_token_mapping():
    # "backup server": tokens "back", "##up", "server"; a word with no token (dropped chars) maps to nothing
    assert word_tokens([(0, 6), (7, 13), (14, 15)], [(0, 4), (4, 6), (7, 13)]) == [[0, 1], [2], []]


def test_causal_shift_compares_each_remaining_token_with_itself():
    # prefix BOS at 0; content tokens 0..3 at positions 1..4; token 1 deleted
    original = np.array([np.nan, 1.0, 2.0, 3.0, 4.0])
    deleted = np.array([np.nan, 1.0, 5.0, 6.0])  # tokens 0, 2, 3
    assert _shift("causal", original, deleted, [0, 2, 3], 1) == pytest.approx((12 / 3) - (8 / 3))
    assert _shift("classifier", np.array([0.2, 0.8]), np.array([0.5, 0.5]), [], 0) == pytest.approx(0.3)
    assert _shift("encoder", np.array([1.0, 0.0]), np.array([0.0, 2.0]), [], 0) == pytest.approx(1.0)
    assert _shift("encoder", np.array([1.0, 2.0]), np.array([2.0, 4.0]), [], 0) == pytest.approx(0.0)


# ------------------------------------------------------------------------------------------- with models
def test_deterministic_and_seeded(en_bert):
    r = analyze(document_from_text(EN_TEXT * 4, "en.txt"), en_bert)
    a = measure_faithfulness(r, en_bert, use_store=False)
    b = measure_faithfulness(r, en_bert, use_store=False)
    assert a == b and a.to_json() == b.to_json() and not a.cached
    assert a.windows >= 2 and a.top_shift > 0 and a.random_shift > 0
    c = measure_faithfulness(r, en_bert, seed=1, use_store=False)
    assert c.top_shift == pytest.approx(a.top_shift) and c.baseline_shift == pytest.approx(a.baseline_shift)
    assert c.random_shift != pytest.approx(a.random_shift)  # only the random draws depend on the seed


def test_bounded_windows_on_a_long_document(en_bert):
    doc = document_from_text(EN_TEXT * 40, "long.txt")
    r = analyze(doc, en_bert)
    assert len(r.chunks) > 30
    draws, max_windows = 5, 4
    with counting_forwards(en_bert) as calls:
        shifts = window_shifts(r, en_bert, draws=draws, max_windows=max_windows)
    assert 0 < len(calls) <= max_windows * (2 + draws)
    assert max(calls) <= en_bert.info.max_tokens
    measured = [s.window for s in shifts]
    assert len(measured) == max_windows and measured[0] == 0 and measured[-1] == len(r.chunks) - 1
    assert all(len(s.random) == draws and s.k == deletion_count(s.n_words, 0.1) for s in shifts)
    # the "top" selection really is the highest-scored words of its window
    f = summarize(shifts, method="received", fraction=0.1, draws=draws)
    assert f.windows == max_windows


@pytest.mark.parametrize("fixture,measure", [("en_bert", "cosine"), ("gpt2", "LM loss"),
                                             ("classifier", "probability"), ("ja_bert", "cosine")])
def test_every_model_kind(request, fixture, measure):
    model = request.getfixturevalue(fixture)
    from conftest import JA_TEXT

    text = (JA_TEXT if fixture == "ja_bert" else EN_TEXT) * 3
    r = analyze(document_from_text(text, "doc.txt"), model, Settings(method="norm"))
    f = measure_faithfulness(r, model, draws=3, max_windows=3)
    assert measure in f.measure and f.method == "norm" and 1 <= f.windows <= 3
    for v in (f.top_shift, f.random_shift, f.baseline_shift):
        assert v is not None and math.isfinite(v)
    if model.kind == "encoder":  # 1 − cosine is positive (a random-weight LM or classifier may not mind)
        assert f.random_shift > 0 and f.ratio_random is not None and f.ratio_random > 0
    json.dumps(f.to_json(), allow_nan=False)


def test_real_model_top_words_beat_random(minilm):
    """On the offline sentence-embedding model the highlighted words matter more than random ones."""
    r = analyze(document_from_text(EN_TEXT * 2, "en.txt"), minilm)
    f = measure_faithfulness(r, minilm)
    assert f.ratio_random is not None and f.ratio_random > 1.5
    assert f.top_shift > f.random_shift


def test_tiny_documents_do_not_crash(en_bert):
    for text in ("Packets.", "The proxy inspects packets.", "A tunnel carries packets between two hosts."):
        r = analyze(document_from_text(text, "tiny.txt", language="en"), en_bert)
        f = measure_faithfulness(r, en_bert)
        assert f.windows <= 1
        if len(r.words) < 2:
            assert f.windows == 0 and f.ratio_random is None
        else:
            assert f.top_shift is not None
        assert isinstance(f.badge, str) and isinstance(f.explanation, str)


def test_second_call_is_a_cache_hit_without_forward_pass(en_bert, tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    r = analyze(document_from_text(EN_TEXT * 3, "en.txt"), en_bert, store=store)
    with counting_forwards(en_bert) as calls:
        first = measure_faithfulness(r, en_bert, store=store)
    assert calls and not first.cached and store.count("faithfulness") == 1
    with counting_forwards(en_bert) as calls:
        second = measure_faithfulness(r, en_bert, store=store)
    assert calls == [] and second.cached and second == first
    # other parameters or other scores are other entries
    with counting_forwards(en_bert) as calls:
        other = measure_faithfulness(r, en_bert, store=store, fraction=0.2)
    assert calls and not other.cached and other.fraction == 0.2 and store.count("faithfulness") == 2
    r_cls = analyze(r.document, en_bert, Settings(method="cls"), store=store)
    assert not measure_faithfulness(r_cls, en_bert, store=store).cached


def test_cli_faithfulness_is_opt_in(en_bert_dir, tmp_path, capsys):
    from attn_core.cli import main

    src = tmp_path / "a.txt"
    src.write_text(EN_TEXT * 3, encoding="utf-8")
    assert main(["analyze", str(src), "--model", str(en_bert_dir), "--quiet"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert "faithfulness" not in plain
    assert main(["analyze", str(src), "--model", str(en_bert_dir), "--quiet", "--faithfulness",
                 "--method", "max"]) == 0
    doc = json.loads(capsys.readouterr().out)
    f = doc["faithfulness"]
    assert KEYS <= set(f) and f["method"] == "max" and f["fraction"] == 0.1 and f["draws"] == 5
    assert f["windows"] >= 1 and f["badge"].endswith("word-length baseline")
    assert main(["analyze", str(src), "--model", str(en_bert_dir), "--quiet", "--method", "max"]) == 0
    assert json.loads(capsys.readouterr().out)["words"] == doc["words"]  # the test does not change the analysis
