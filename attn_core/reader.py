"""The Reader: one object that decides and caches a reading, for the CLI and every page.

In the spirit of transformers' `Pipeline`, a Reader owns the loaded model (with its tokenizer and device),
the default settings checked once against that model, the result store and one in-memory memo. The front
ends only say *what* to read (a document, optionally a query or one claim element) and show the result;
the Reader decides how: plain attention or query-guided, which cache answers, how progress is reported
and when a reviewer's Cancel stops the work.

The memo is shared by every caller of the Reader (the dashboard keeps one Reader per model for all
sessions), so it never hands a result to a caller under another upload's file name: a hit is re-labelled
with the caller's own `Document`.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace
from typing import Any, Hashable, Sequence

import numpy as np

from .alignment import tokenize_texts
from .analysis import ChunkAttention, analyze, chunk_attention, clear_preprocess_memo, preprocess
from .cache import ResultStore, default_store
from .claims import Query, make_query
from .document import Document
from .errors import SettingsError
from .faithfulness import Faithfulness, measure_faithfulness
from .guided import guided_analyze, plan_query
from .lexical import LexicalIndex
from .models import LoadedModel, load_model
from .progress import Cancel, Progress
from .relevance import PassageRelevance, lexical_scores, passage_relevance
from .results import HEAD_CHOICES, LAYER_CHOICES, METHODS, AnalysisResult, Method, Passage, Runtime, Settings
from .retrieval import (
    PassageIndex,
    RankedDocument,
    check_query,
    embed_token_ids,
    index_documents,
    rank_documents,
    stack_lexical_index,
)

MEMO_ENTRIES = 64
CHARS_PER_TOKEN = 3.0  # rough, for estimates only (English ≈ 4.5, Japanese ≈ 1.6 with e5)
MIN_CHUNK_TOKENS = 16


def _index(value: Any, count: int, named: tuple[str, ...], what: str) -> str | int:
    """A layer or head: one of `named`, or an index in [-count, count) given as int or digits."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v in named:
            return v
        if v.lstrip("-").isdigit() and len(v) <= 6:
            value = int(v)
    if isinstance(value, int) and not isinstance(value, bool) and -count <= value < count:
        return value
    shown = str(value)[:20]
    raise SettingsError(f"{what} {shown!r} does not exist: this model has {count} {what}s "
                        f"(use {', '.join(named)}, or an index from 0 to {count - 1})")


def validate_settings(model: LoadedModel, settings: Settings) -> Settings:
    """The settings with every value checked against this model; SettingsError says what to use instead."""
    try:
        method = Method(str(settings.method).strip().lower())
    except ValueError:
        method = None
    if method is None or method not in METHODS:
        raise SettingsError(f"unknown method {str(settings.method)[:20]!r}: use one of {', '.join(METHODS)}")
    layer = _index(settings.layer, model.num_layers, LAYER_CHOICES, "layer")
    head = _index(settings.head, model.num_heads, HEAD_CHOICES, "head")
    budget = model.info.max_tokens
    chunk_tokens = settings.chunk_tokens
    if chunk_tokens is not None and (isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int)
                                     or not MIN_CHUNK_TOKENS <= chunk_tokens <= budget):
        raise SettingsError(f"chunk size {str(chunk_tokens)[:20]!r} is not possible: this model reads "
                            f"{MIN_CHUNK_TOKENS}–{budget} tokens at a time")
    window = chunk_tokens or budget
    overlap = settings.overlap
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap <= window // 2:
        raise SettingsError(f"overlap {str(overlap)[:20]!r} is not possible: use 0–{window // 2} tokens "
                            f"(at most half of a {window}-token window)")
    return replace(settings, method=method, layer=layer, head=head)


class Reader:
    """A model ready to read documents with validated settings, a result store and a memo.

    Thread-safe: the dashboard shares one Reader per model between sessions (the model is used
    read-only; attention captures are per thread).
    """

    def __init__(self, model: LoadedModel, settings: Settings | None = None, *, store: ResultStore | None = None,
                 use_store: bool = True, memo_entries: int = MEMO_ENTRIES) -> None:
        self.model = model
        self.settings = validate_settings(model, settings or Settings())
        self._store, self._use_store = store, use_store
        self._memo: OrderedDict[Hashable, Any] = OrderedDict()
        self._memo_entries = memo_entries
        self._lock = threading.Lock()
        self._rate: float | None = None  # tokens/s of this Reader's last fresh analysis

    @classmethod
    def load(cls, model_id: str | None = None, settings: Settings | None = None, *,
             runtime: Runtime | str = Runtime.TORCH, background: bool = False, **kw: Any) -> "Reader":
        """Load a hub id or folder (offline default when None) and wrap it; ModelLoadError on failure.

        `runtime` other than torch: read through it (runtime.py); with "auto" the torch weights load only
        when something needs them, and `background` builds a missing ONNX export in a background process."""
        rt = Runtime.parse(runtime)
        if rt is Runtime.TORCH:
            return cls(load_model(model_id), settings, **kw)
        from .runtime import with_runtime

        return cls(with_runtime(load_model(model_id, lazy=True), rt, background=background), settings, **kw)

    @property
    def store(self) -> ResultStore | None:
        """The given store, else the data directory's default one, looked up at each use (so it follows
        CHUMOKU_DATA_DIR), or None when caching on disk was turned off."""
        if self._store is not None:
            return self._store
        return default_store() if self._use_store else None

    # ---- settings ---------------------------------------------------------------------------------------
    def check(self, settings: Settings | None = None) -> Settings:
        """`settings` validated for this model (the Reader's own when None)."""
        return self.settings if settings is None else validate_settings(self.model, settings)

    def check_query(self, query: Query | str) -> Query:
        """A query this model can read; QueryError for an empty one or one with no known word."""
        return check_query(self.model, make_query(query) if isinstance(query, str) else query)

    # ---- memo ------------------------------------------------------------------------------------------
    def _memo_get(self, key: Hashable) -> Any:
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        return None

    def _memo_put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._memo[key] = value
            while len(self._memo) > self._memo_entries:
                self._memo.popitem(last=False)

    @staticmethod
    def _read_key(document: Document, settings: Settings, query: Query | None, element: int | None) -> tuple:
        q = None if query is None else (query.text, tuple(query.elements), element)
        return ("read", document.sha256, document.language, len(document.text), settings.key(), q)

    @staticmethod
    def _as(result: AnalysisResult, document: Document) -> AnalysisResult:
        """The memoised result under the caller's own document (its file name, notes)."""
        return result if result.document is document or result.document == document else replace(result, document=document)

    # ---- operations ------------------------------------------------------------------------------------
    def cached(self, document: Document, query: Query | None = None, element: int | None = None,
               settings: Settings | None = None) -> AnalysisResult | None:
        """The result if this process already has it in memory (no model run, no disk)."""
        hit = self._memo_get(self._read_key(document, self.check(settings), query, element))
        return None if hit is None else self._as(hit, document)

    def read(self, document: Document, query: Query | str | None = None, element: int | None = None, *,
             settings: Settings | None = None, progress: Progress | None = None,
             cancel: Cancel | None = None) -> AnalysisResult:
        """Word and passage scores of a document: its own attention, or, with a query, what the query
        attends to in it (`element` picks one claim element). Cached in memory and per chunk on disk."""
        s = self.check(settings)
        q = self.check_query(query) if query is not None else None
        key = self._read_key(document, s, q, element)
        hit = self._memo_get(key)
        if hit is not None:
            return self._as(hit, document)
        if q is None:
            result = analyze(document, self.model, s, progress=progress, store=self.store, use_store=False,
                             cancel=cancel)
            self._measure(result)
        else:
            result = guided_analyze(document, self.model, q, element=element, settings=s, store=self.store,
                                    use_store=False, progress=progress, cancel=cancel)
            result = self._ranked_by_relevance(result, q, element, cancel)
        self._memo_put(key, result)
        return result

    # ---- relevance (relevance.py says why a hybrid) -----------------------------------------------------
    def passage_index(self, document: Document, cancel: Cancel | None = None) -> PassageIndex:
        """The document's passages with their embeddings (cached on disk per document and model)."""
        key = ("index", document.sha256, document.language, len(document.text))
        hit = self._memo_get(key)
        if hit is None:
            hit = index_documents([document], self.model, store=self.store, use_store=False, cancel=cancel,
                                  settings=self.settings)[0]  # the analysis windows: its stored sums answer
            self._memo_put(key, hit)
        return hit

    def lexical_index(self, document: Document, index: PassageIndex) -> LexicalIndex:
        key = ("lexical", document.sha256, document.language, len(document.text))
        hit = self._memo_get(key)
        if hit is None:
            hit = LexicalIndex([index.text(i) for i in range(len(index.spans))], document.language)
            self._memo_put(key, hit)
        return hit

    def query_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings of query texts, with the model's query prefix ("query: " for e5)."""
        prefix = self.model.info.query_prefix
        return embed_token_ids(self.model, tokenize_texts(self.model.tokenizer, [prefix + t for t in texts]),
                               affixes="query")

    def relevance(self, document: Document, query: Query | str, element: int | None = None,
                  cancel: Cancel | None = None) -> PassageRelevance:
        """How relevant each passage of the document is to the query (whole claim and per element)."""
        q = self.check_query(query)
        index = self.passage_index(document, cancel)
        units = [q.text, *q.elements] if element is None else [q.elements[element]] * 2
        lexical = lexical_scores(self.lexical_index(document, index), units)
        if len(index.spans):
            cosine = (index.vectors @ self.query_vectors(units).T).T
        else:
            cosine = np.zeros((len(units), 0), np.float32)
        return passage_relevance(lexical, cosine)

    def _ranked_by_relevance(self, result: AnalysisResult, query: Query, element: int | None,
                             cancel: Cancel | None) -> AnalysisResult:
        """The guided result with its passages ranked by hybrid relevance instead of attention."""
        rel = self.relevance(result.document, query, element, cancel)
        if len(rel.scores) != len(result.passages):  # same segmentation by construction; never mix them up
            return result
        order = rel.order()
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(1, len(order) + 1)
        passages = [Passage(p.start, p.end, round(float(rel.scores[i]), 6), int(rank[i]), p.label, p.page,
                            p.section, int(rel.element[i]) if element is None and len(query.elements) > 1 else element)
                    for i, p in enumerate(result.passages)]
        return replace(result, passages=passages, query=replace(result.query, ranking="relevance"))

    def estimate_seconds(self, document: Document, query: Query | str | None = None, element: int | None = None,
                         settings: Settings | None = None) -> float:
        """About how long a fresh reading takes (0 when it is in memory): tokens to run through the model
        over the throughput this Reader measured on its last runs (a conservative default before that).
        The UI asks before a long run and offers Stop during it."""
        s = self.check(settings)
        q = self.check_query(query) if query is not None else None
        if self._memo_get(self._read_key(document, s, q, element)) is not None:
            return 0.0
        prepared = preprocess(document, self.model, s)
        tokens = sum(c.size + len(prepared.prefix) + len(prepared.suffix) for c in prepared.chunks)
        if q is not None:
            plan = plan_query(self.model, q, element)
            tokens = tokens * len(plan.passes) * (1 + max(len(ids) for _, ids in plan.passes) / max(plan.doc_budget, 1))
            tokens += sum(c.size for c in prepared.chunks)  # passage embeddings for the relevance ranking
        return tokens / self._tokens_per_second

    def estimate_rank_seconds(self, query: Query | str, documents: Sequence[Document]) -> float:
        """About how long ranking these documents takes: 0 when answered from memory, else the passage
        embeddings of the documents this process has not indexed (their stored copies are read back fast;
        this over-estimates those rather than under-estimate a cold stack)."""
        q = self.check_query(query)
        key = ("rank", q.text, tuple(q.elements), tuple((d.sha256, d.language, len(d.text)) for d in documents), 5)
        if self._memo_get(key) is not None:
            return 0.0
        chars = sum(len(d.text) for d in documents
                    if self._memo_get(("index", d.sha256, d.language, len(d.text))) is None)
        return chars / CHARS_PER_TOKEN / self._tokens_per_second

    @property
    def _tokens_per_second(self) -> float:
        with self._lock:
            if self._rate:
                return self._rate
        return 20_000.0 if str(self.model.info.device).startswith("cuda") else 1_500.0

    def _measure(self, result: AnalysisResult) -> None:
        """Remember the throughput of a fresh run (for estimates)."""
        fresh = len(result.chunks) - result.cached_chunks
        if fresh >= 4 and result.seconds > 0.5:
            tokens = sum(c.n_tokens for c in result.chunks) * fresh / max(len(result.chunks), 1)
            with self._lock:
                self._rate = tokens / result.seconds

    def rank(self, query: Query | str, documents: Sequence[Document], *, progress: Progress | None = None,
             cancel: Cancel | None = None, top_passages: int = 5) -> list[RankedDocument]:
        """Documents best first against a claim or query, each element's best passage per document."""
        q = self.check_query(query)
        key = ("rank", q.text, tuple(q.elements), tuple((d.sha256, d.language, len(d.text)) for d in documents),
               top_passages)
        ranked = self._memo_get(key)
        if ranked is None:
            indexes = index_documents(documents, self.model, store=self.store, use_store=False, progress=progress,
                                      cancel=cancel, settings=self.settings)
            stack = ("stack-lexical", key[3])  # the same documents ranked against another query reuse it
            lexical = self._memo_get(stack)
            if lexical is None:
                lexical = stack_lexical_index(indexes, q.language)
                self._memo_put(stack, lexical)
            ranked = rank_documents(q, documents, self.model, top_passages=top_passages, indexes=indexes,
                                    lexical_index=lexical)
            self._memo_put(key, ranked)
        by_sha = {d.sha256: d for d in documents}
        return [replace(r, document=by_sha.get(r.document.sha256, r.document)) for r in ranked]

    def faithfulness(self, result: AnalysisResult, *, progress: Progress | None = None,
                     cancel: Cancel | None = None) -> Faithfulness:
        """The deletion test behind the badge (bounded cost; cached in the store)."""
        return measure_faithfulness(result, self.model, store=self.store, use_store=False, progress=progress,
                                    cancel=cancel)

    def with_faithfulness(self, result: AnalysisResult, **kw: Any) -> AnalysisResult:
        """The result with its faithfulness figure attached (exports and the CLI carry it)."""
        return replace(result, faithfulness=self.faithfulness(result, **kw))

    def chunk_attention(self, document: Document, chunk: int, settings: Settings | None = None) -> ChunkAttention:
        """Every layer and head of one chunk, for the Explorer."""
        s = self.check(settings)
        key = ("chunk", document.sha256, document.language, len(document.text), s.chunk_tokens, s.overlap, chunk)
        hit = self._memo_get(key)
        if hit is None:
            hit = chunk_attention(document, self.model, chunk, s)
            self._memo_put(key, hit)
        return hit

    def chunk_spans(self, document: Document, settings: Settings | None = None) -> list[tuple[int, int]]:
        """Character span of each chunk (no model run): for choosing a chunk to explore."""
        prepared = preprocess(document, self.model, self.check(settings))
        spans = prepared.tokenized.spans
        return [(spans[c.start][0], spans[c.end - 1][1]) if c.end > c.start else (0, 0) for c in prepared.chunks]

    def clear(self, *, include_store: bool = True) -> dict[str, int]:
        """Empty every cache this Reader reaches: its memo, the tokenisation memo and (unless told
        otherwise) the result store on disk."""
        with self._lock:
            memo = len(self._memo)
            self._memo.clear()
        clear_preprocess_memo()
        stored = 0
        store = self.store
        if include_store and store is not None:
            stored = store.count()
            store.clear()
        return {"memo": memo, "stored": stored}

    def memo_size(self) -> int:
        """How many readings, rankings and chunk views this Reader holds in memory."""
        with self._lock:
            return len(self._memo)
