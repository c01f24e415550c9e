"""Ranking documents against a query: pooling, the embedding cache, the score formula, the claim chart,
and the end-to-end check on the six corpus patents with the real offline model."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from conftest import EN_TEXT

from attn_core import QueryError, ResultStore, document_from_text, ingest_path
from attn_core.alignment import tokenize_texts
from attn_core.analysis import special_affixes
from attn_core.claims import extract_claims, make_query, without_claims
from attn_core.retrieval import (
    claim_chart_cells,
    claim_chart_csv,
    claim_chart_rows,
    document_score,
    embed_token_ids,
    index_documents,
    rank_documents,
    to_json,
)

DOCS = [
    ("sip.txt", "A server receives a request from a client.\n\nThe cluster stores the dialog state.\n\n"
                "The server forwards the request to a backup server.\n"),
    ("tunnel.txt", "A tunnel carries packets between two hosts.\n\nEach packet has a header and a payload.\n\n"
                   "The proxy inspects the header of every packet.\n"),
    ("invention.txt", "The invention relates to networks.\n\nA method for managing protocol messages.\n"),
]


def _docs():
    return [document_from_text(t, n, "en") for n, t in DOCS]


class ForwardCounter:
    """Counts sequences the model's encoder runs on (a forward hook on the base model)."""

    def __init__(self, model):
        self.rows = 0
        self.calls = 0
        self._h = model.model.base_model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]
        self.calls += 1
        self.rows += int(ids.shape[0])

    def close(self):
        self._h.remove()


def test_mean_pooling_matches_a_direct_forward(en_bert):
    ids = tokenize_texts(en_bert.tokenizer, ["the proxy inspects the header"])[0]
    pre, suf = special_affixes(en_bert)
    vec = embed_token_ids(en_bert, [ids])[0]
    with torch.inference_mode():
        h = en_bert.model.base_model(input_ids=torch.tensor([list(pre) + ids + list(suf)])).last_hidden_state[0]
    ref = h.mean(0).numpy()
    ref /= np.linalg.norm(ref)
    assert np.allclose(vec, ref, atol=1e-5)
    assert abs(np.linalg.norm(vec) - 1.0) < 1e-5


def test_long_passage_is_windowed_not_truncated(en_bert):
    ids = tokenize_texts(en_bert.tokenizer, [EN_TEXT * 3])[0]
    assert len(ids) > en_bert.info.max_tokens  # longer than the model's window (64)
    counter = ForwardCounter(en_bert)
    try:
        whole = embed_token_ids(en_bert, [ids])[0]
    finally:
        counter.close()
    assert counter.rows >= 2  # several windows, each within the window
    head = embed_token_ids(en_bert, [ids[:40]])[0]
    tail_changed = embed_token_ids(en_bert, [ids[:-20] + ids[:20]])[0]
    assert not np.allclose(whole, head, atol=1e-3)  # the end of the passage counts
    assert not np.allclose(whole, tail_changed, atol=1e-4)


def test_embedding_cache_is_reused_across_queries(en_bert, tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    docs = _docs()
    counter = ForwardCounter(en_bert)
    try:
        first = rank_documents("the proxy inspects the header of every packet", docs, en_bert, store=store)
        cold_rows = counter.rows
        assert store.count("embedding") == len(docs)
        counter.rows = counter.calls = 0
        idx = index_documents(docs, en_bert, store=store)
        assert all(ix.cached for ix in idx) and counter.rows == 0
        second = rank_documents("a server forwards the request to a backup server; the cluster stores the state",
                                docs, en_bert, store=store)
    finally:
        counter.close()
    n_passages = sum(len(ix.spans) for ix in idx)
    # the cold pass read every document's windows (passages are pooled inside them: pooling.py)
    assert cold_rows >= len(docs) and n_passages > len(docs)
    # the second query ran the model on the query and its 2 elements only, never on a document
    assert counter.rows == 3 and counter.calls == 1
    assert store.count("embedding") == len(docs)
    assert [r.rank for r in first] == [1, 2, 3] and [r.rank for r in second] == [1, 2, 3]
    # cached float16 vectors give the same ranking as fresh ones
    fresh = rank_documents("a server forwards the request to a backup server; the cluster stores the state",
                           docs, en_bert, use_store=False)
    assert [r.document.name for r in fresh] == [r.document.name for r in second]
    assert np.allclose([r.score for r in fresh], [r.score for r in second], atol=2e-3)


def test_edited_document_is_re_embedded(en_bert, tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    docs = _docs()
    index_documents(docs, en_bert, store=store)
    edited = document_from_text(DOCS[0][1] + "\nA new paragraph about routers.\n", "sip.txt", "en")
    idx = index_documents([edited] + docs[1:], en_bert, store=store)
    assert [ix.cached for ix in idx] == [False, True, True]


def test_document_score_formula():
    sims = np.array([0.9, 0.1, 0.5, 0.7, 0.2])
    assert document_score(sims, [0.8]) == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    assert document_score(sims, [0.8, 0.4]) == pytest.approx(0.5 * 0.7 + 0.5 * 0.6)
    assert document_score(np.array([0.3]), [0.3, 0.1]) == pytest.approx(0.5 * 0.3 + 0.5 * 0.2)
    assert document_score(np.zeros(0), [0.5, 0.5]) == 0.0


def test_ranked_documents_json_contract_and_claim_chart(en_bert, tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    q = make_query("A network comprising: a tunnel carrying packets between hosts; a proxy inspecting the header")
    assert len(q.elements) == 3
    ranked = rank_documents(q, _docs(), en_bert, store=store, top_passages=2)
    out = json.loads(to_json(ranked))
    assert [d["rank"] for d in out] == [1, 2, 3]
    assert [d["score"] for d in out] == sorted((d["score"] for d in out), reverse=True)
    names = {n for n, _ in DOCS}
    for d, r in zip(out, ranked):
        assert set(d) == {"document", "score", "rank", "passages", "elements"}
        assert set(d["document"]) == {"name", "sha256", "language", "chars"} and d["document"]["name"] in names
        assert 1 <= len(d["passages"]) <= 2
        rel = [p["relevance"] for p in d["passages"]]
        assert rel == sorted(rel, reverse=True)
        for p in d["passages"]:
            assert 0 <= p["start"] < p["end"] <= d["document"]["chars"]
        assert [e["text"] for e in d["elements"]] == list(q.elements)
        for e in d["elements"]:
            assert set(e) == {"text", "passage", "score"} and set(e["passage"]) == {"start", "end"}
            spans = [(s.start, s.end) for s in r.spans]
            assert (e["passage"]["start"], e["passage"]["end"]) in spans
    rows = claim_chart_rows(ranked)
    assert [r["element"] for r in rows] == list(q.elements)
    assert rows[0][f"1. {ranked[0].document.name}"] == pytest.approx(ranked[0].elements[0].score, abs=1e-4)
    table = list(csv.reader(io.StringIO(claim_chart_csv(ranked))))
    assert table[0][:2] == ["#", "element"] and len(table) == 1 + len(q.elements)
    assert len(table[0]) == 2 + 5 * len(ranked)
    best = ranked[0]
    m = best.elements[1]
    assert table[2][4] == " ".join(best.document.text[m.start:m.end].split())
    cells = claim_chart_cells(ranked)
    cell = cells[1][f"1. {best.document.name}"]
    passage = " ".join(best.document.text[m.start:m.end].split())
    assert cell == "—" if m.start is None else passage.startswith(cell.rstrip("…")[:20])


def test_query_without_known_words_is_an_error(en_bert):
    with pytest.raises(QueryError, match="known"):
        rank_documents("日本語の質問", _docs(), en_bert)
    with pytest.raises(QueryError):
        rank_documents("  ", _docs(), en_bert)


# ------------------------------------------------------------------ real model, real patents
def test_claim_one_finds_its_own_patent_among_the_six(corpus, minilm, tmp_path):
    """Claim 1 of each US patent, claims removed from every document: its own patent ranks first."""
    paths = sorted((corpus / "en").glob("*.txt"))
    assert len(paths) == 6
    docs = [ingest_path(p) for p in paths]
    stripped = [without_claims(d) for d in docs]
    store = ResultStore(tmp_path / "r.sqlite")
    index = index_documents(stripped, minilm, store=store)
    for d, s in zip(docs, stripped):
        claim1 = extract_claims(d)[0].text
        assert claim1 not in s.text
        ranked = rank_documents(make_query(claim1, "en"), stripped, minilm, indexes=index)
        assert ranked[0].document.name == d.name, [(r.document.name, round(r.score, 3)) for r in ranked]
        assert ranked[0].score > ranked[1].score
