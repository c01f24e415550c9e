"""One pass, two products: the analysis forward pass also yields the passage embeddings (pooling.py).

Checked: the embeddings an analysis leaves in the store equal (cosine >= 0.999) those of retrieval's own pass
over the same windows, on every tiny model kind and on the real MiniLM with a corpus patent; indexing an
analysed document runs no model; models read with a passage prefix (e5) keep embedding passages alone.
"""
from __future__ import annotations

import random
import sqlite3

import numpy as np
import pytest
from conftest import EN_TEXT, JA_TEXT

import attn_core as ac
from attn_core.analysis import preprocess
from attn_core.chunking import Chunk
from attn_core.pooling import IN_WINDOW_ENV, SUMS_KIND, Segment, plan_segments
from attn_core.retrieval import embed_token_ids, index_documents

AGREE = 0.999


class RowCounter:
    """Counts sequences the model's encoder runs on (a forward hook on the base model)."""

    def __init__(self, model: ac.LoadedModel) -> None:
        self.rows = 0
        self._h = model.model.base_model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output) -> None:
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]
        self.rows += int(ids.shape[0])

    def close(self) -> None:
        self._h.remove()



@pytest.fixture(autouse=True)
def _in_window(monkeypatch):
    """These tests are about the opt-in in-window pooling (the default embeds each passage alone)."""
    monkeypatch.setenv(IN_WINDOW_ENV, "in-window")


def _long_english(seed: int = 0) -> str:
    """Numbered paragraphs of known words, several 64-token windows long, one paragraph longer than a window."""
    rng, words = random.Random(seed), EN_TEXT.lower().replace(".", "").split()
    paras = []
    for i in range(1, 9):
        n = 70 if i == 5 else rng.randint(6, 20)
        paras.append(f"[{i:04d}] " + " ".join(rng.choice(words) for _ in range(n)) + ".")
    return "\n".join(paras) + "\n"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def _one_pass_vs_separate(model: ac.LoadedModel, doc: ac.Document, tmp_path, settings: ac.Settings | None = None
                          ) -> tuple[np.ndarray, np.ndarray, int]:
    """(vectors from the analysis pass, vectors from a separate pass, rows the model ran while indexing)."""
    settings = settings or ac.Settings()
    analysed = ac.ResultStore(tmp_path / "analysed.sqlite")
    ac.analyze(doc, model, settings, store=analysed)
    assert analysed.count(SUMS_KIND) > 0
    counter = RowCounter(model)
    try:
        one = index_documents([doc], model, store=analysed, settings=settings)[0]
    finally:
        counter.close()
    separate = index_documents([doc], model, store=ac.ResultStore(tmp_path / "fresh.sqlite"), settings=settings)[0]
    assert one.cached and not separate.cached
    assert [(s.start, s.end) for s in one.spans] == [(s.start, s.end) for s in separate.spans]
    return one.vectors, separate.vectors, counter.rows


@pytest.mark.parametrize("fixture", ["en_bert", "gpt2", "classifier"])
def test_analysis_pass_embeddings_equal_a_separate_pass(fixture, request, tmp_path):
    model = request.getfixturevalue(fixture)
    doc = ac.document_from_text(_long_english(), "long.txt", "en")
    prepared = preprocess(doc, model, ac.Settings())
    assert len(prepared.chunks) >= 3  # several windows, and one passage longer than a window
    one, separate, rows = _one_pass_vs_separate(model, doc, tmp_path)
    assert rows == 0  # indexing an analysed document ran no model
    assert len(one) == len(prepared.passages) >= 8
    assert _cosines(one, separate).min() >= AGREE
    assert np.allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-2)


def test_japanese_and_other_reductions_give_the_same_embeddings(ja_bert, en_bert, tmp_path):
    doc = ac.document_from_text(JA_TEXT * 4, "ja.txt", "ja")
    one, separate, rows = _one_pass_vs_separate(ja_bert, doc, tmp_path)
    assert rows == 0 and _cosines(one, separate).min() >= AGREE
    # the sums do not depend on the reduction: an analysis with another method and layer stores the same
    en = ac.document_from_text(_long_english(1), "en.txt", "en")
    store = ac.ResultStore(tmp_path / "methods.sqlite")
    ac.analyze(en, en_bert, ac.Settings(method="cls", layer=0), store=store)
    counter = RowCounter(en_bert)
    try:
        from_cls = index_documents([en], en_bert, store=store)[0]
    finally:
        counter.close()
    assert counter.rows == 0
    ac.analyze(en, en_bert, store=ac.ResultStore(tmp_path / "received.sqlite"))
    from_received = index_documents([en], en_bert, store=ac.ResultStore(tmp_path / "received.sqlite"))[0]
    assert _cosines(from_cls.vectors, from_received.vectors).min() >= AGREE


def test_windows_of_the_analysis_settings_are_the_ones_pooled(en_bert, tmp_path):
    doc = ac.document_from_text(_long_english(2), "long.txt", "en")
    small = ac.Settings(chunk_tokens=32, overlap=4)
    one, separate, rows = _one_pass_vs_separate(en_bert, doc, tmp_path, small)
    assert rows == 0 and _cosines(one, separate).min() >= AGREE
    # another window size is another embedding: the store is not consulted for it
    counter = RowCounter(en_bert)
    try:
        index_documents([doc], en_bert, store=ac.ResultStore(tmp_path / "analysed.sqlite"))
    finally:
        counter.close()
    assert counter.rows > 0


def test_a_partly_analysed_document_runs_only_the_missing_windows(en_bert, tmp_path):
    doc = ac.document_from_text(_long_english(3), "long.txt", "en")
    store = ac.ResultStore(tmp_path / "r.sqlite")
    ac.analyze(doc, en_bert, store=store)
    prepared = preprocess(doc, en_bert, ac.Settings())
    dropped = [k for k in prepared.sum_keys if k][:2]
    with sqlite3.connect(store.path) as conn:  # two windows' sums go, as an eviction would take them
        conn.executemany("DELETE FROM entries WHERE key=?", [(k,) for k in dropped])
    counter = RowCounter(en_bert)
    try:
        partial = index_documents([doc], en_bert, store=store)[0]
    finally:
        counter.close()
    assert counter.rows == len(dropped) and not partial.cached
    fresh = index_documents([doc], en_bert, use_store=False)[0]
    assert _cosines(partial.vectors, fresh.vectors).min() >= AGREE


def test_rank_after_analyze_runs_the_model_on_the_query_only(en_bert, tmp_path):
    reader = ac.Reader(en_bert, store=ac.ResultStore(tmp_path / "r.sqlite"))
    docs = [ac.document_from_text(_long_english(s), f"d{s}.txt", "en") for s in range(3)]
    for d in docs:
        reader.read(d)
    counter = RowCounter(en_bert)
    try:
        ranked = reader.rank("the proxy inspects the header of every packet", docs)
    finally:
        counter.close()
    assert [r.rank for r in ranked] == [1, 2, 3]
    q = ac.make_query("the proxy inspects the header of every packet")
    assert counter.rows == 1 + len(q.elements)  # the query and its element; no document window ran again


def test_prefixed_models_embed_passages_alone(models_dir, tmp_path):
    """e5-style models (passage prefix) keep retrieval's own pass: their analysis stores no sums."""
    from tiny_models import build_english_bert

    model = ac.load_model(str(build_english_bert(models_dir / "tiny-e5", EN_TEXT * 2)))
    assert model.info.passage_prefix == "passage: "
    doc = ac.document_from_text(EN_TEXT, "a.txt", "en")
    store = ac.ResultStore(tmp_path / "r.sqlite")
    ac.analyze(doc, model, store=store)
    assert store.count(SUMS_KIND) == 0 and not preprocess(doc, model, ac.Settings()).pooled
    ix = index_documents([doc], model, store=store)[0]
    from attn_core.alignment import tokenize_texts

    alone = embed_token_ids(model, tokenize_texts(model.tokenizer, [ix.text(i) for i in range(len(ix.spans))]))
    assert _cosines(ix.vectors, alone).min() >= AGREE


def test_plan_takes_the_window_with_most_context():
    chunks = [Chunk(0, 0, 10, 0, 8), Chunk(1, 6, 16, 8, 13), Chunk(2, 10, 20, 13, 20)]
    plan = plan_segments(chunks, [(0, 5), (8, 10), (11, 14), (2, 19), (4, 4), (15, 18)])
    assert plan[0][0] == Segment(0, 0, 5)
    # (8, 10) sits whole in windows 0 and 1; window 0 ends right after it, window 1 leaves 2 tokens each side
    assert Segment(1, 8, 10) in plan[1] and all(s.passage != 1 for s in plan[0])
    # (11, 14) is whole in windows 1 and 2: the larger margin (2 against 1) decides
    assert Segment(2, 11, 14) in plan[1]
    # (15, 18): most of its tokens are in window 2
    assert Segment(5, 15, 18) in plan[2]
    # (2, 19) fits no window whole: each token from the window that scores it (the cores)
    assert [s for c in plan for s in c if s.passage == 3] == [Segment(3, 2, 8), Segment(3, 8, 13),
                                                                Segment(3, 13, 19)]
    assert all(s.passage != 4 for c in plan for s in c)  # no tokens, no segment


def test_minilm_on_a_corpus_patent(corpus, minilm, tmp_path):
    doc = ac.ingest_path(corpus / "en" / "US08930553B2.txt")
    one, separate, rows = _one_pass_vs_separate(minilm, doc, tmp_path)
    assert rows == 0
    cos = _cosines(one, separate)
    assert len(cos) > 40 and cos.min() >= AGREE, (float(cos.min()), float(np.median(cos)))
