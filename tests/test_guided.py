"""Query-guided highlighting: the query's share of the window, every token scored, caching, causal layout,
and (real MiniLM) guidance moving the read-first list toward the passages that contain the query's words."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import EN_TEXT

from attn_core import QueryError, ResultStore, analyze, document_from_text
from attn_core.alignment import tokenize_with_spans
from attn_core.claims import make_query
from attn_core.guided import GUIDED_METHOD, QUERY_SHARE, guided_analyze, guided_elements, pair_layout, plan_query

LONG_CLAIM = ("A network system comprising: a server that receives a request from a client and forwards it to a "
              "backup server; a cluster that stores the dialog state of every session; a tunnel that carries "
              "packets between two hosts, wherein each packet has a header and a payload; and a proxy that "
              "inspects the header of every packet")


class InputRecorder:
    def __init__(self, model):
        self.lengths: list[int] = []
        self._h = model.model.base_model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]
        mask = kwargs.get("attention_mask")
        self.lengths.extend((mask.sum(1) if mask is not None else
                             np.full(ids.shape[0], ids.shape[1])).tolist())

    def close(self):
        self._h.remove()


def _doc(text=EN_TEXT * 4):
    return document_from_text(text, "doc.txt", "en")


def test_short_query_is_one_pass_and_long_claim_goes_element_by_element(en_bert):
    short = plan_query(en_bert, "the proxy inspects the header")
    assert short.mode == "whole" and len(short.passes) == 1
    long_ = plan_query(en_bert, make_query(LONG_CLAIM))
    cap = int((en_bert.info.max_tokens - pair_layout(en_bert).n_special) * QUERY_SHARE)
    assert len(en_bert.tokenizer(LONG_CLAIM, add_special_tokens=False)["input_ids"]) > cap
    assert long_.mode == "elements" and [t for t, _ in long_.passes] == list(make_query(LONG_CLAIM).elements)
    assert all(len(ids) <= cap for _, ids in long_.passes)
    assert long_.doc_budget == en_bert.info.max_tokens - 3 - max(len(ids) for _, ids in long_.passes)


@pytest.mark.parametrize("fixture", ["en_bert", "gpt2"])
def test_query_budget_respected_and_every_token_scored(request, fixture):
    model = request.getfixturevalue(fixture)
    doc = _doc()
    rec = InputRecorder(model)
    try:
        result = guided_analyze(doc, model, make_query(LONG_CLAIM), use_store=False)
    finally:
        rec.close()
    plan = plan_query(model, make_query(LONG_CLAIM))
    n_tokens = len(tokenize_with_spans(model.tokenizer, doc.text).ids)
    assert rec.lengths and max(rec.lengths) <= model.info.max_tokens
    assert len(rec.lengths) == len(plan.passes) * len(result.chunks)  # one pair per element per chunk
    assert all(c.n_tokens <= plan.doc_budget for c in result.chunks)
    assert len(result.tokens) == n_tokens and all(t.score > 0 for t in result.tokens)
    assert len(result.words) > 0 and all(0.0 <= w.score <= 1.0 for w in result.words)
    assert result.settings.method == GUIDED_METHOD
    q = result.query.to_json()
    assert q["mode"] == "elements" and q["combine"] == "max" and q["elements"] == list(make_query(LONG_CLAIM).elements)
    assert sorted(p.rank for p in result.passages) == list(range(1, len(result.passages) + 1))


def test_causal_layout_puts_the_query_after_the_text(gpt2):
    layout = pair_layout(gpt2)
    assert not layout.query_first and layout.prefix == (gpt2.tokenizer.bos_token_id,)


def test_guided_scores_differ_from_unguided_and_by_query(en_bert):
    doc = _doc()
    a = guided_analyze(doc, en_bert, "the proxy inspects the header of every packet")
    b = guided_analyze(doc, en_bert, "the cluster stores the dialog state")
    u = analyze(doc, en_bert)
    ra, rb, ru = (np.array([t.score for t in r.tokens]) for r in (a, b, u))
    assert ra.shape == ru.shape and not np.allclose(ra, ru, atol=1e-3) and not np.allclose(ra, rb, atol=1e-3)


def test_guided_chunks_are_cached_per_query(en_bert, tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    doc = _doc()
    q = make_query(LONG_CLAIM)
    first = guided_analyze(doc, en_bert, q, store=store)
    n = len(first.chunks) * len(first.query.passes)
    assert first.cached_chunks == 0 and 0 < store.count("guided") <= n  # repeated chunks share an entry
    rec = InputRecorder(en_bert)
    try:
        again = guided_analyze(doc, en_bert, q, store=store)
        one = guided_analyze(doc, en_bert, q, element=2, store=store)  # shares the chunks of the full plan
    finally:
        rec.close()
    assert rec.lengths == [] and again.cached_chunks == n
    assert [w.raw for w in again.words] == pytest.approx([w.raw for w in first.words], abs=1e-5)
    assert one.query.mode == "element" and one.query.passes == (q.elements[2],)
    other = guided_analyze(doc, en_bert, "a different query about routers", store=store)
    assert other.cached_chunks == 0


def test_per_element_results(en_bert):
    q = make_query(LONG_CLAIM)
    results = guided_elements(_doc(), en_bert, q, use_store=False)
    assert len(results) == len(q.elements)
    assert [r.query.element for r in results] == list(range(len(q.elements)))
    raws = [np.array([w.raw for w in r.words]) for r in results]
    assert not np.allclose(raws[0], raws[1])


def test_unknown_or_empty_query_is_an_error(en_bert, ja_bert):
    with pytest.raises(QueryError, match="known"):
        guided_analyze(_doc(), en_bert, "日本語の質問")
    with pytest.raises(QueryError):
        guided_analyze(_doc(), en_bert, "   ")
    with pytest.raises(QueryError):
        guided_analyze(_doc(), en_bert, make_query(LONG_CLAIM), element=99)


def test_japanese_guided_on_a_slow_tokenizer(ja_bert):
    from conftest import JA_TEXT

    doc = document_from_text(JA_TEXT * 3, "ja.txt", "ja")
    r = guided_analyze(doc, ja_bert, "カテーテルは血管に挿入される", use_store=False)
    assert r.words and all(t.score > 0 for t in r.tokens) and r.query.mode == "whole"


# ------------------------------------------------------------------ real model
PARAS = [
    "The weather in the northern mountains was cold and windy for most of the winter season.",
    "A balloon catheter is inserted into a blood vessel and the balloon is inflated with saline.",
    "The committee approved the annual budget after a long discussion about school funding.",
    "Farmers harvested wheat and barley before the autumn rains arrived in the valley.",
    "The orchestra performed a symphony by Brahms to a full concert hall on Saturday.",
    "Engineers replaced the bridge cables because corrosion had weakened the steel.",
]


@pytest.mark.parametrize("query,key", [("balloon catheter blood vessel", "balloon"),
                                       ("steel bridge cables corrosion", "bridge"),
                                       ("orchestra symphony concert", "orchestra"),
                                       ("wheat barley harvest", "wheat"),
                                       ("annual school budget", "budget"),
                                       ("cold windy winter weather", "winter")])
def test_guidance_moves_passages_with_the_query_words_up(minilm, query, key):
    text = "\n\n".join(PARAS * 3) + "\n"
    doc = document_from_text(text, "topics.txt", "en")
    unguided = analyze(doc, minilm)
    guided = guided_analyze(doc, minilm, query)
    assert len(guided.passages) == 18

    def ranks(result):
        return [p.rank for p in result.passages if key in text[p.start:p.end]]

    # each paragraph is there three times: read first keeps the first copy and sends repeats to the end
    for result in (guided, unguided):
        assert min(ranks(result)) <= 6 < min(sorted(ranks(result))[1:])
    assert min(ranks(guided)) <= min(ranks(unguided))
    assert min(ranks(guided)) <= 2  # the matching paragraph sits in the top third of the six
