"""Query-guided highlighting: how much the query's tokens attend to each word of the open document.

For every chunk the model reads the pair `[CLS] query [SEP] chunk [SEP]` (causal models: `BOS chunk EOS
query`, so the query comes after the text it looks at). In the last layer, heads averaged, the rows of the
query's tokens are summed column-wise over the chunk's tokens; specials, the query itself and padding are
removed and each chunk's scores renormalised — the same `Capture` machinery, chunk planning, stitching
and word/passage scoring as the unguided analysis, so the same renderers apply.

Sinks: in the last layer every row, query or not, pours much of its attention into "the", "a", "." —
without correction those win for any query. With LIFT (default) a token's score is the attention the
query's rows pay it divided by the attention the chunk's own rows pay it (same pass, same layer): sinks
cancel and what remains is what the query attends to *more than the document itself does*. On the real
MiniLM this moves the passages that contain the query's words up the read-first list (tests/test_guided.py).

Budget: the query takes part of the model's window (at most QUERY_SHARE of it) and the document is
re-chunked with what is left. A query longer than that is run element by element (one pass per claim
element, each truncated to the share if it is still too long) and the passes are combined per token by
MAX: a passage that discloses one element strongly stays visible even when it says nothing about the
others (a mean would dilute it by the number of elements), which is what an examiner charting element by
element wants to see. `guided_elements` gives each element's own result.

Chunk results are cached in the ResultStore (kind "guided") keyed by model identity, the query pass's
token ids and the chunk's token ids.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from .alignment import tokenize_texts
from .analysis import ENGINE_VERSION, ChunkOutput, Prepared, chunk_batches, postprocess, preprocess, special_affixes
from .attention import Capture, ChunkBatch
from .batching import default_batch_tokens, pad_batch, pad_id
from .cache import ResultStore, default_store, make_key
from .chunking import Chunk
from .claims import Query, make_query
from .document import Document
from .errors import QueryError
from .models import LoadedModel
from .progress import Cancel, Progress, report
from .results import AnalysisResult, Method, ModelKind, QueryMode, QueryRun, Settings

GUIDED_VERSION = "1"
QUERY_SHARE = 0.5  # the query may take at most this share of the model's window
MIN_DOC_TOKENS = 16
COMBINE = "max"
LIFT = True  # divide by the attention the document's own tokens pay (sinks such as "the", "." cancel)
GUIDED_METHOD = Method.QUERY  # Settings.method of a guided result (unguided results use results.METHODS)


@dataclass(frozen=True)
class PairLayout:
    """Special ids around the (query, chunk) pair, found by probing the tokenizer."""

    prefix: tuple[int, ...]
    mid: tuple[int, ...]
    suffix: tuple[int, ...]
    query_first: bool  # encoders: query then chunk; causal models: chunk then query
    typed: bool  # the second segment gets token_type_id 1 (BERT pairs)

    @property
    def n_special(self) -> int:
        return len(self.prefix) + len(self.mid) + len(self.suffix)


def pair_layout(model: LoadedModel) -> PairLayout:
    tok = model.tokenizer
    if model.kind == ModelKind.CAUSAL:
        pre, _ = special_affixes(model)
        sep = () if tok.eos_token_id is None else (tok.eos_token_id,)
        return PairLayout(tuple(pre), sep, (), False, False)
    a = tok("x", add_special_tokens=False)["input_ids"]
    b = tok("y", add_special_tokens=False)["input_ids"]
    enc = tok("x", "y")
    full = list(enc["input_ids"])
    types = enc.get("token_type_ids")
    for i in range(len(full) - len(a) + 1):
        if full[i:i + len(a)] != a:
            continue
        for j in range(i + len(a), len(full) - len(b) + 1):
            if full[j:j + len(b)] == b:
                return PairLayout(tuple(full[:i]), tuple(full[i + len(a):j]), tuple(full[j + len(b):]), True,
                                  bool(types) and any(types))
    pre, suf = special_affixes(model)
    return PairLayout(tuple(pre), tuple(suf), tuple(suf), True, False)


@dataclass(frozen=True)
class QueryPlan:
    """The passes a query needs on this model, and the document budget they leave."""

    query: Query
    passes: list[tuple[str, list[int]]]  # (text, token ids) per pass
    mode: QueryMode
    doc_budget: int  # document tokens per chunk
    truncated: bool  # some pass was cut to the query share
    layout: PairLayout


def _ids(model: LoadedModel, text: str) -> list[int]:
    return tokenize_texts(model.tokenizer, [text])[0]


def plan_query(model: LoadedModel, query: Query | str, element: int | None = None) -> QueryPlan:
    """Whole query when it fits in the query share, else one pass per element. `element` picks one pass
    but keeps the document budget of the full plan, so its chunks (and cache entries) are shared."""
    q = make_query(query) if isinstance(query, str) else query
    layout = pair_layout(model)
    unk = model.tokenizer.unk_token_id
    cap = int((model.info.max_tokens - layout.n_special) * QUERY_SHARE)
    if cap < 1 or model.info.max_tokens - layout.n_special - cap < MIN_DOC_TOKENS:
        raise QueryError(f"the model's window ({model.info.max_tokens} tokens) is too small for a query")
    whole = _ids(model, q.text)
    if not any(t != unk for t in whole):
        raise QueryError(f"no word of the query is known to the model {model.info.id!r} "
                         f"(every token is [UNK]); try another model or another wording")
    truncated = False
    if len(whole) <= cap:
        passes, mode = [(q.text, whole)], QueryMode.WHOLE
    else:
        passes, mode = [], QueryMode.ELEMENTS
        for e in q.elements:
            ids = _ids(model, e)
            if len(ids) > cap:
                ids, truncated = ids[:cap], True
            passes.append((e, ids))
        if len(q.elements) == 1:
            mode = QueryMode.WHOLE
    doc_budget = model.info.max_tokens - layout.n_special - max(len(ids) for _, ids in passes)
    if element is not None:
        if not 0 <= element < len(q.elements):
            raise QueryError(f"element {element + 1} does not exist (the query has {len(q.elements)})")
        ids = _ids(model, q.elements[element])
        if len(ids) > cap:
            ids, truncated = ids[:cap], True
        passes, mode = [(q.elements[element], ids)], QueryMode.ELEMENT
        doc_budget = min(doc_budget, model.info.max_tokens - layout.n_special - len(ids))
    passes = [(t, ids) for t, ids in passes if any(i != unk for i in ids)]
    if not passes:
        raise QueryError("no element of the query has a word the model knows")
    return QueryPlan(q, passes, mode, doc_budget, truncated, layout)


class QueryCapture(Capture):
    """Capture whose per-token score is the attention the query's rows pay to each column."""

    def __init__(self, num_layers: int, batch: ChunkBatch, query_rows: Any) -> None:
        super().__init__(Settings(method=GUIDED_METHOD), num_layers, batch)
        self.query_rows = query_rows

    def _token_scores(self, a: Any) -> Any:
        xp = self.xp
        q = xp.astype(self.query_rows, a.dtype)
        from_query = xp.sum(a * q[:, :, None], axis=1) / xp.clip(xp.sum(q, axis=1, keepdims=True), min=1.0)
        if not LIFT:
            return from_query
        d = xp.astype(self.batch.keep, a.dtype)
        from_doc = xp.sum(a * d[:, :, None], axis=1) / xp.clip(xp.sum(d, axis=1, keepdims=True), min=1.0)
        return from_query / (from_doc + 1e-4)


def run_pairs(model: LoadedModel, prepared: Prepared, batch: Sequence[Chunk], query_ids: list[int],
              layout: PairLayout) -> list[ChunkOutput]:
    """One padded forward pass over (query, chunk) pairs; scores over each chunk's tokens (sum 1)."""
    ids = prepared.tokenized.ids
    q = list(query_ids)
    seqs, q_at, d_at, types = [], [], [], []
    for c in batch:
        doc = ids[c.start:c.end]
        if layout.query_first:
            head = list(layout.prefix) + q + list(layout.mid)
            seqs.append(head + doc + list(layout.suffix))
            q_at.append(len(layout.prefix))
            d_at.append(len(head))
            types.append(len(head))
        else:
            head = list(layout.prefix) + doc + list(layout.mid)
            seqs.append(head + q + list(layout.suffix))
            q_at.append(len(head))
            d_at.append(len(layout.prefix))
            types.append(len(seqs[-1]))
    width = max(len(s) for s in seqs)
    if width > model.info.max_tokens:
        raise AssertionError(f"pair of {width} tokens exceeds the window of {model.info.max_tokens}")
    device = model.info.device
    padded = pad_batch(seqs, pad_id(model.tokenizer), device)
    keep = np.zeros_like(padded.mask)
    rows = np.zeros_like(padded.mask)
    token_type = np.zeros_like(padded.ids)
    for b, (s, c) in enumerate(zip(seqs, batch)):
        keep[b, d_at[b]:d_at[b] + c.size] = True
        rows[b, q_at[b]:q_at[b] + len(q)] = True
        token_type[b, types[b]:len(s)] = 1
    capture = QueryCapture(model.num_layers, ChunkBatch(padded.valid, padded.on_device(keep),
                                                        model.kind == ModelKind.CAUSAL), padded.on_device(rows))
    kwargs = {"input_ids": padded.input_ids, "attention_mask": padded.attention_mask}
    if layout.typed:
        kwargs["token_type_ids"] = padded.on_device(token_type)
    from .eager_attention import run_captured  # torch: guided reading always runs the torch network

    run_captured(model.model.base_model, capture, **kwargs)
    scores = capture.cpu_scores()
    return [ChunkOutput(scores[b, d_at[b]:d_at[b] + c.size].copy()) for b, c in enumerate(batch)]


def _guided_outputs(model: LoadedModel, prepared: Prepared, plan: QueryPlan, store: ResultStore | None,
                    progress: Progress | None, batch_tokens: int | None,
                    cancel: Cancel | None = None) -> tuple[list[list[ChunkOutput]], int]:
    """Per pass, the chunk outputs in chunk order (cached per (model, query pass, chunk))."""
    ids = np.asarray(prepared.tokenized.ids, dtype=np.int64)
    layout_key = repr((plan.layout, str(GUIDED_METHOD), "last", "mean", "lift" if LIFT else "raw"))
    keys = [[make_key("guided", GUIDED_VERSION, ENGINE_VERSION, model.info.identity, layout_key,
                      np.asarray(q, np.int64).tobytes(), ids[c.start:c.end].tobytes())
             for c in prepared.chunks] for _, q in plan.passes]
    flat = [k for ks in keys for k in ks]
    found = store.get_many(list(dict.fromkeys(flat))) if store is not None else {}
    total = len(flat)
    results: list[dict[int, ChunkOutput]] = [{} for _ in plan.passes]
    for p, ks in enumerate(keys):
        for c, k in zip(prepared.chunks, ks):
            if k in found:
                results[p][c.index] = ChunkOutput.from_bytes(found[k])
    cached = sum(len(r) for r in results)
    done = cached
    report(progress, cancel, done, total)
    batch_tokens = batch_tokens or default_batch_tokens(model.info.device, scale=2)
    for p, (_, q) in enumerate(plan.passes):
        todo = [c for c in prepared.chunks if c.index not in results[p]]
        for batch in chunk_batches(todo, batch_tokens):
            outs = run_pairs(model, prepared, batch, q, plan.layout)
            fresh = {}
            for c, o in zip(batch, outs):
                results[p][c.index] = o
                fresh[keys[p][c.index]] = o.to_bytes()
            if store is not None:
                store.put_many(fresh, kind="guided")
            done += len(batch)
            report(progress, cancel, done, total)
    return [[r[c.index] for c in prepared.chunks] for r in results], cached


def _settings(model: LoadedModel, plan: QueryPlan, base: Settings | None) -> Settings:
    pre, suf = special_affixes(model)
    base = base or Settings()
    return replace(base, method=GUIDED_METHOD, layer="last", head="mean", drop_special=True,
                   chunk_tokens=plan.doc_budget + len(pre) + len(suf))


def guided_analyze(document: Document, model: LoadedModel, query: Query | str, *, element: int | None = None,
                   settings: Settings | None = None, store: ResultStore | None = None, use_store: bool = True,
                   progress: Progress | None = None, batch_tokens: int | None = None,
                   cancel: Cancel | None = None) -> AnalysisResult:
    """Word and passage scores of `document` for this query (or for one of its elements).

    Returns an AnalysisResult whose settings.method is "query" and whose `query` describes the
    query and passes; passages are ranked by guided attention.
    """
    t0 = time.perf_counter()
    plan = plan_query(model, query, element)
    if store is None and use_store:
        store = default_store()
    settings = _settings(model, plan, settings)
    prepared = preprocess(document, model, settings)
    outputs, cached = _guided_outputs(model, prepared, plan, store, progress, batch_tokens, cancel)
    if len(outputs) == 1:
        combined = outputs[0]
    else:  # MAX over passes (module docstring), each chunk renormalised to sum 1 again
        combined = []
        for per_chunk in zip(*outputs):
            s = np.max(np.stack([o.scores for o in per_chunk]), axis=0)
            combined.append(ChunkOutput((s / max(float(s.sum()), 1e-12)).astype(np.float32)))
    result = postprocess(document, model, settings, prepared, combined, cached, time.perf_counter() - t0,
                         aboutness=False)
    q = plan.query
    return replace(result, query=QueryRun(
        text=q.text, elements=tuple(q.elements), language=q.language, mode=plan.mode, element=element,
        combine=COMBINE if len(plan.passes) > 1 else None, passes=tuple(t for t, _ in plan.passes),
        query_tokens=tuple(len(ids) for _, ids in plan.passes), document_tokens_per_chunk=plan.doc_budget,
        truncated=plan.truncated))


def guided_elements(document: Document, model: LoadedModel, query: Query | str, **kw) -> list[AnalysisResult]:
    """One guided result per query element ("pick an element, see its passages")."""
    q = make_query(query) if isinstance(query, str) else query
    return [guided_analyze(document, model, q, element=i, **kw) for i in range(len(q.elements))]
