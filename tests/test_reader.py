"""The Reader without Streamlit: settings validated against the model, memo, progress, cancel, clearing."""
from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from conftest import EN_TEXT

import attn_core as ac
from attn_core.errors import CancelledError, SettingsError


def test_settings_are_validated_against_the_model(en_bert):
    reader = ac.Reader(en_bert)
    layers, heads = en_bert.num_layers, en_bert.num_heads
    ok = reader.check(ac.Settings(method="norm", layer=str(layers - 1), head="-1"))
    assert ok.method is ac.Method.NORM and ok.layer == layers - 1 and ok.head == -1
    assert reader.check(ac.Settings(layer="ALL", head="Max")).layer == "all"
    bad = [ac.Settings(layer=layers), ac.Settings(layer="99"), ac.Settings(layer=-layers - 1),
           ac.Settings(head=heads), ac.Settings(head="-999"), ac.Settings(head="10" * 5000),
           ac.Settings(method="attention"), ac.Settings(method="query"), ac.Settings(layer=True),
           ac.Settings(chunk_tokens=3), ac.Settings(chunk_tokens=10**6), ac.Settings(overlap=-1),
           ac.Settings(overlap=10**4), ac.Settings(layer=1.5)]
    for settings in bad:
        with pytest.raises(SettingsError) as info:
            reader.check(settings)
        assert isinstance(info.value, ac.ChumokuError) and len(info.value.message) < 200
    with pytest.raises(SettingsError, match=f"this model has {layers} layers"):
        ac.Reader(en_bert, ac.Settings(layer=99))


def test_memo_hits_and_keeps_each_callers_file_name(en_bert, tmp_path):
    reader = ac.Reader(en_bert, store=ac.ResultStore(tmp_path / "r.sqlite"))
    doc = ac.document_from_text(EN_TEXT, "mine.txt", "en")
    calls: list[tuple[int, int]] = []
    first = reader.read(doc, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1] == len(first.chunks)
    assert reader.cached(doc) is first and reader.memo_size() == 1
    calls.clear()
    again = reader.read(doc, progress=lambda d, t: calls.append((d, t)))
    assert again is first and not calls  # answered from memory: no model run, no progress
    theirs = replace(doc, name="someone else's name.txt")  # the same bytes uploaded under another name
    shown = reader.read(theirs)
    assert shown.document.name == "someone else's name.txt" and first.document.name == "mine.txt"
    assert shown.words == first.words
    other = reader.read(doc, settings=ac.Settings(method="max"))
    assert other is not first and reader.memo_size() == 2


def test_cancel_stops_between_batches_and_a_rerun_resumes(en_bert, tmp_path):
    store = ac.ResultStore(tmp_path / "r.sqlite")
    reader = ac.Reader(en_bert, ac.Settings(chunk_tokens=32, overlap=4), store=store)
    import random

    rng, words = random.Random(0), EN_TEXT.split()  # the tiny model knows these words: every chunk differs
    text = " ".join(" ".join(rng.choice(words) for _ in range(12)) + "." for _ in range(150))
    doc = ac.document_from_text(text, "long.txt", "en")
    cancel = threading.Event()
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done > 0:
            cancel.set()  # the reviewer presses Stop after the first batch

    with pytest.raises(CancelledError):
        reader.read(doc, progress=progress, cancel=cancel)
    assert reader.cached(doc) is None
    finished = store.count("chunk")  # chunk results (passage-embedding sums are stored beside them)
    assert 0 < finished
    result = reader.read(doc)
    assert 0 < result.cached_chunks == finished < len(result.chunks)  # resumed, not restarted


def test_query_reading_and_ranking_through_the_reader(en_bert, tmp_path):
    reader = ac.Reader(en_bert, store=ac.ResultStore(tmp_path / "r.sqlite"))
    doc = ac.document_from_text(EN_TEXT, "a.txt", "en")
    result = reader.read(doc, "proxy header inspection")
    assert result.query is not None and result.query.mode == ac.QueryMode.WHOLE
    assert result.to_json()["query"]["text"] == "proxy header inspection"
    with pytest.raises(ac.QueryError):
        reader.read(doc, "   ")
    ranked = reader.rank("proxy header", [doc, replace(ac.document_from_text("Tea and cake.", "b.txt", "en"))])
    assert [r.rank for r in ranked] == [1, 2]
    assert reader.rank("proxy header", [doc])[0].document is doc


def test_faithfulness_is_a_typed_field(en_bert, tmp_path):
    reader = ac.Reader(en_bert, store=ac.ResultStore(tmp_path / "r.sqlite"))
    result = reader.with_faithfulness(reader.read(ac.document_from_text(EN_TEXT, "a.txt", "en")))
    assert isinstance(result.faithfulness, ac.Faithfulness)
    assert result.to_json()["faithfulness"]["badge"] == result.faithfulness.badge


def test_clear_empties_every_cache(en_bert, tmp_path):
    store = ac.ResultStore(tmp_path / "r.sqlite")
    reader = ac.Reader(en_bert, store=store)
    doc = ac.document_from_text(EN_TEXT, "a.txt", "en")
    reader.read(doc)
    reader.chunk_attention(doc, 0)
    assert reader.memo_size() == 2 and store.count() > 0
    counts = reader.clear()
    assert counts["memo"] == 2 and counts["stored"] > 0
    assert reader.memo_size() == 0 and store.count() == 0 and reader.cached(doc) is None
