"""Rank documents against a query (a claim or free text) by passage relevance, fast on cached work.

Each passage (segment.passage_spans, the same units the reader ranks) is embedded once per document and
model: the model's last hidden state mean-pooled over the passage's tokens (the way sentence-embedding
models such as the offline MiniLM are trained to be used), L2-normalised. The tokens are read inside the
analysis windows (pooling.py), so the analysis pass yields the embeddings and `rank` after `analyze` runs
no model over the document; models read with a passage prefix (e5) embed each passage alone instead. The
matrix of a document is stored in the ResultStore (kind "embedding"), keyed by model identity, engine
version, pooling layout and a hash of the passage texts, so a new query only embeds the query itself and
does a matrix product.

Passage relevance is the hybrid of relevance.py (BM25 and embedding cosine fused by reciprocal rank, for the
whole claim and each element), computed over the passages of all ranked documents together. Document score
(see `document_score`):

    score = ½ · mean(top-3 relevance(query, passage))  +  ½ · mean over elements of max relevance(element, passage)

The first term measures how strongly the document talks about the query as a whole; the mean of its three
best passages rather than the single best keeps one lucky sentence from deciding, and (unlike a mean over
all passages) does not punish a long document for its unrelated parts. The second term is claim coverage:
a reference anticipates a claim only if it discloses every element, so each element's best passage
counts equally; it also keeps a long claim, whose whole-text embedding is an average of windows,
element-sensitive. With a single element both terms use the same evidence and the score is the first term.
"""
from __future__ import annotations

import csv
import io
import json
import struct
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .alignment import tokenize_texts
from .analysis import ENGINE_VERSION, last_hidden_state, passage_sums, preprocess, special_affixes
from .batching import default_batch_tokens, length_batches, pad_batch, pad_id
from .cache import ResultStore, default_store, make_key
from .claims import Query, make_query
from .document import Document
from .errors import QueryError
from .lexical import LexicalIndex
from .models import LoadedModel
from .pooling import POOL_VERSION, SUMS_KIND, decode_sums, encode_sums, pool, pools_in_context
from .progress import Cancel, Progress, report
from .relevance import RelevanceMethod, lexical_scores, passage_relevance
from .results import Settings
from .segment import PassageSpan, passage_spans

EMBEDDING_VERSION = "2"  # bump when pooling changes: old embeddings stop matching (2: in-window pooling)
TOP_K = 3  # passages averaged into the query term of the document score


@dataclass(frozen=True)
class PassageIndex:
    """A document's passages and their unit-length embeddings [P, D]."""

    document: Document
    spans: list[PassageSpan]
    vectors: np.ndarray  # float32 [P, D], rows L2-normalised
    cached: bool = False

    def text(self, i: int) -> str:
        return self.document.text[self.spans[i].start:self.spans[i].end]


@dataclass(frozen=True)
class RankedPassage:
    start: int
    end: int
    relevance: float  # hybrid relevance to the query, 0..1 (relevance.py)
    label: str | None = None


@dataclass(frozen=True)
class ElementMatch:
    text: str  # the query element
    start: int | None  # its best passage in the document (None: no passage / element without a known word)
    end: int | None
    score: float  # hybrid relevance of the best passage to this element, 0..1
    label: str | None = None  # the passage's paragraph number ("[0023]"), when the document numbers them


@dataclass(frozen=True)
class RankedDocument:
    document: Document
    score: float
    rank: int  # 1 = best
    passages: list[RankedPassage]  # best first
    elements: list[ElementMatch]  # in query order
    relevance: np.ndarray  # hybrid relevance of every passage to the query, in text order
    spans: list[PassageSpan]

    def to_json(self) -> dict:
        d = self.document
        return {
            "document": {"name": d.name, "sha256": d.sha256, "language": d.language, "chars": d.chars},
            "score": round(float(self.score), 6),
            "rank": self.rank,
            "passages": [{"start": p.start, "end": p.end, "relevance": round(p.relevance, 6), "label": p.label}
                         for p in self.passages],
            "elements": [{"text": e.text,
                          "passage": None if e.start is None else {"start": e.start, "end": e.end},
                          "score": round(e.score, 6)} for e in self.elements],
        }


# ------------------------------------------------------------------------------------------ embeddings
def _windows(ids: list[int], budget: int) -> list[list[int]]:
    """Balanced windows of at most `budget` tokens: a long passage is read whole, not truncated."""
    if len(ids) <= budget:
        return [ids]
    n = -(-len(ids) // budget)
    size = -(-len(ids) // n)
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def embed_token_ids(model: LoadedModel, seqs: Sequence[list[int]], *, batch_tokens: int | None = None,
                    progress: Progress | None = None, cancel: Cancel | None = None,
                    affixes: str = "passage") -> np.ndarray:
    """Mean-pooled last hidden state of each token sequence, L2-normalised: [N, D] float32.

    Each sequence is wrapped in the model's specials ([CLS] … [SEP]) and pooled over all its positions,
    as sentence-transformers does; one longer than the window is cut into balanced windows whose
    token sums are pooled together. Windows run longest first in padded batches under inference_mode.
    """
    pre, suf = special_affixes(model, passage=affixes == "passage")
    budget = max(8, model.info.max_tokens - len(pre) - len(suf))
    windows: list[tuple[int, list[int]]] = []
    for i, ids in enumerate(seqs):
        for w in _windows(list(ids), budget):
            windows.append((i, list(pre) + w + list(suf)))
    hidden = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "n_embd"))
    sums = np.zeros((len(seqs), hidden), dtype=np.float64)
    counts = np.zeros(len(seqs), dtype=np.float64)
    batch_tokens = batch_tokens or default_batch_tokens(model.info.device, scale=4)
    done = 0
    for batch in length_batches([len(w) for _, w in windows], batch_tokens):
        padded = pad_batch([windows[k][1] for k in batch], pad_id(model.tokenizer), model.info.device)
        h = last_hidden_state(model, padded)  # on the model's runtime (runtime.py)
        summed = (h * padded.mask[:, :, None]).sum(1, dtype=np.float64)
        for b, k in enumerate(batch):
            i = windows[k][0]
            sums[i] += summed[b]
            counts[i] += float(padded.lengths[b])
        done += len(batch)
        report(progress, cancel, done, len(windows))
    vec = sums / np.maximum(counts, 1.0)[:, None]
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    return (vec / np.maximum(norms, 1e-12)).astype(np.float32)


def _spans(document: Document) -> list[PassageSpan]:
    return passage_spans(document.text, document.language, document.paragraphs)


def embedding_key(model: LoadedModel, texts: Sequence[str], settings: Settings | None = None) -> str:
    """Model identity + versions + how passages are pooled + the passage texts: an edited document, a new
    model or other windows (in-context pooling reads passages inside the analysis windows) never hit."""
    pre, suf = special_affixes(model)
    if pools_in_context(model.info.passage_prefix):
        s = settings or Settings()
        layout = repr((pre, suf, model.info.max_tokens, "mean-last-in-window", POOL_VERSION, s.chunk_tokens,
                       s.overlap))
    else:
        layout = repr((pre, suf, model.info.max_tokens, "mean-last"))
    return make_key("embedding", EMBEDDING_VERSION, ENGINE_VERSION, model.info.identity, layout,
                    make_key(*texts) if texts else "")


def _encode(vectors: np.ndarray) -> bytes:
    return struct.pack("<ii", *vectors.shape) + vectors.astype(np.float16).tobytes()


def _decode(blob: bytes) -> np.ndarray:
    n, d = struct.unpack_from("<ii", blob)
    return np.frombuffer(blob, np.float16, n * d, 8).reshape(n, d).astype(np.float32)


def _hidden_size(model: LoadedModel) -> int:
    cfg = model.config
    return int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd"))


def _embed_alone(documents: Sequence[Document], texts: Sequence[Sequence[str]], model: LoadedModel,
                 todo: Sequence[int], progress: Progress | None, cached: int, total: int,
                 batch_tokens: int | None, cancel: Cancel | None) -> dict[int, np.ndarray]:
    """Each passage embedded alone after the model's passage prefix (models that do not pool in context)."""
    flat = [t for i in todo for t in texts[i]]
    ids = tokenize_texts(model.tokenizer, flat)

    def sub_progress(done: int, n: int) -> None:
        if progress:
            progress(cached + int((total - cached) * done / max(n, 1)), total)

    mat = embed_token_ids(model, ids, batch_tokens=batch_tokens, progress=sub_progress, cancel=cancel)
    out, pos = {}, 0
    for i in todo:
        n = len(texts[i])
        out[i] = mat[pos:pos + n]
        pos += n
    return out


def _embed_in_windows(documents: Sequence[Document], model: LoadedModel, todo: Sequence[int],
                      store: ResultStore | None, settings: Settings, progress: Progress | None, cached: int,
                      total: int, batch_tokens: int | None, cancel: Cancel | None
                      ) -> tuple[dict[int, np.ndarray], set[int]]:
    """Passage embeddings pooled in the analysis windows (pooling.py): the segment sums an analysis stored
    are read back, and only windows never analysed run the model (all documents' windows batched together).
    Returns the vectors and the documents for which the model ran."""
    dim = _hidden_size(model)
    out: dict[int, np.ndarray] = {}
    prepared = {}
    for i in todo:
        if not documents[i].text.strip():
            out[i] = np.zeros((0, dim), np.float32)
            continue
        prepared[i] = preprocess(documents[i], model, settings, pool=True)
    wanted = [k for p in prepared.values() for k in (p.sum_keys or []) if k]
    found = store.get_many(list(dict.fromkeys(wanted))) if store is not None and wanted else {}
    sums: dict[str, np.ndarray] = {k: decode_sums(v) for k, v in found.items()}
    missing: dict[str, tuple] = {}
    ran: set[int] = set()
    for i, p in prepared.items():
        for c, k in zip(p.chunks, p.sum_keys or []):
            if k and k not in sums and k not in missing:
                missing[k] = (p, c)
                ran.add(i)
    if missing:
        def sub_progress(done: int, n: int) -> None:
            if progress:
                progress(cached + int((total - cached) * done / max(n, 1)), total)

        items = list(missing.items())
        fresh = passage_sums(model, [pc for _, pc in items], batch_tokens=batch_tokens, progress=sub_progress,
                             cancel=cancel)
        for (k, _), v in zip(items, fresh):
            sums[k] = v
        if store is not None:
            store.put_many({k: encode_sums(v) for (k, _), v in zip(items, fresh)}, kind=SUMS_KIND)
    for i, p in prepared.items():
        assert p.segments is not None and p.sum_keys is not None and p.passages is not None
        per_chunk = [sums[k] if k else np.zeros((0, dim), np.float32) for k in p.sum_keys]
        out[i] = pool(len(p.passages), p.segments, per_chunk, dim)
    return out, ran


def index_documents(documents: Sequence[Document], model: LoadedModel, *, store: ResultStore | None = None,
                    use_store: bool = True, progress: Progress | None = None,
                    batch_tokens: int | None = None, cancel: Cancel | None = None,
                    settings: Settings | None = None) -> list[PassageIndex]:
    """Passage embeddings of every document: read from the store when present, else computed and saved.

    Most models pool each passage inside the analysis windows (pooling.py), so a document that was analysed
    is indexed from the sums its analysis stored, without running the model; `settings` (chunk size and
    overlap) must be the analysis's for its windows to match. Models read with a passage prefix (e5) embed
    each passage alone (all missing documents' passages batched together by length). Progress counts
    passages."""
    if store is None and use_store:
        store = default_store()
    settings = settings or Settings()
    spans = [_spans(d) for d in documents]
    texts = [[d.text[s.start:s.end] for s in sp] for d, sp in zip(documents, spans)]
    keys = [embedding_key(model, t, settings) for t in texts]
    found = store.get_many(list(dict.fromkeys(keys))) if store is not None else {}
    vectors: dict[int, np.ndarray] = {}
    for i, k in enumerate(keys):
        if k in found:
            v = _decode(found[k])
            if v.shape[0] == len(texts[i]):
                vectors[i] = v
    todo = [i for i in range(len(documents)) if i not in vectors]
    total = sum(len(t) for t in texts)
    cached = total - sum(len(texts[i]) for i in todo)
    if progress:
        progress(cached, total)
    ran: set[int] = set(todo)
    if todo:
        if pools_in_context(model.info.passage_prefix):
            fresh, ran = _embed_in_windows(documents, model, todo, store, settings, progress, cached, total,
                                           batch_tokens, cancel)
        else:
            fresh = _embed_alone(documents, texts, model, todo, progress, cached, total, batch_tokens, cancel)
        for i in todo:
            if fresh[i].shape[0] != len(texts[i]):  # segmentation and pooling disagree: never mix passages up
                raise RuntimeError(f"{documents[i].name}: {fresh[i].shape[0]} embeddings for {len(texts[i])} passages")
            vectors[i] = fresh[i]
        if store is not None:
            store.put_many({keys[i]: _encode(vectors[i]) for i in todo}, kind="embedding")
    if progress:
        progress(total, total)
    return [PassageIndex(d, spans[i], vectors[i], i not in ran) for i, d in enumerate(documents)]


# ------------------------------------------------------------------------------------------------ query
def known_token_ids(model: LoadedModel, text: str) -> list[int]:
    """The query's tokens the model has in its vocabulary ([UNK] dropped)."""
    ids = tokenize_texts(model.tokenizer, [text])[0]
    unk = model.tokenizer.unk_token_id
    return [i for i in ids if i != unk]


def check_query(model: LoadedModel, query: Query | str) -> Query:
    """A Query the model can read; QueryError for an empty one or one with no word the model knows."""
    q = make_query(query) if isinstance(query, str) else query
    if not q.text.strip():
        raise QueryError("the query is empty: type or paste a claim or a few words to search for")
    if not known_token_ids(model, q.text):
        raise QueryError(f"no word of the query is known to the model {model.info.id!r} "
                         f"(every token is [UNK]); try another model or another wording")
    return q


def document_score(query_sims: np.ndarray, element_best: Sequence[float], k: int = TOP_K) -> float:
    """½ · mean of the top-k passage similarities + ½ · mean of each element's best similarity
    (the module docstring says why). With one element, or no passage, it is the first term alone."""
    if len(query_sims) == 0:
        return 0.0
    top = float(np.sort(query_sims)[::-1][:k].mean())
    if len(element_best) <= 1:
        return top
    return 0.5 * top + 0.5 * float(np.mean(element_best))


def stack_lexical_index(indexes: Sequence[PassageIndex], language: str) -> LexicalIndex:
    """One BM25 index over the passages of all documents of a ranking (term rarity is the stack's)."""
    return LexicalIndex([ix.text(i) for ix in indexes for i in range(len(ix.spans))], language)


def rank_documents(query: Query | str, documents: Sequence[Document], model: LoadedModel, *,
                   store: ResultStore | None = None, use_store: bool = True, progress: Progress | None = None,
                   top_passages: int = 5, indexes: Sequence[PassageIndex] | None = None,
                   cancel: Cancel | None = None, method: RelevanceMethod = RelevanceMethod.HYBRID,
                   lexical_index: LexicalIndex | None = None) -> list[RankedDocument]:
    """Documents best first, each with its best passages and, per query element, its best passage.

    Passages of all documents are ranked together by hybrid relevance (relevance.py: BM25 over the whole
    stack, so term rarity is the stack's, fused with cosine by reciprocal rank, for the whole claim and
    each element); `document_score` then combines each document's best passages and element coverage."""
    q = check_query(model, query)
    if indexes is None:
        indexes = index_documents(documents, model, store=store, use_store=use_store, progress=progress,
                                  cancel=cancel)
    elements = list(q.elements)
    units = [q.text] + elements
    prefix = model.info.query_prefix
    ids = tokenize_texts(model.tokenizer, [prefix + t for t in units])
    unk = model.tokenizer.unk_token_id
    readable = [any(t != unk for t in seq) for seq in tokenize_texts(model.tokenizer, units)]
    qv = embed_token_ids(model, ids, affixes="query")  # [1 + E, D]
    texts = [ix.text(i) for ix in indexes for i in range(len(ix.spans))]
    bounds = np.cumsum([0] + [len(ix.spans) for ix in indexes])
    if texts:
        if lexical_index is None or len(lexical_index) != len(texts):
            lexical_index = stack_lexical_index(indexes, q.language)
        lexical = lexical_scores(lexical_index, units)
        vectors = np.concatenate([ix.vectors for ix in indexes if len(ix.spans)])
        rel = passage_relevance(lexical, (vectors @ qv.T).T, method)
        fused = rel.per_element if len(elements) > 1 else rel.scores[None, :]
    else:
        rel, fused = None, np.zeros((len(elements), 0))
    scored = []
    for d, ix in enumerate(indexes):
        lo, hi = int(bounds[d]), int(bounds[d + 1])
        combined = rel.scores[lo:hi] if rel is not None else np.zeros(0)
        matches, best_vals = [], []
        for e, text in enumerate(elements):
            column = fused[min(e, len(fused) - 1), lo:hi]
            if not len(column) or not readable[1 + e]:
                matches.append(ElementMatch(text, None, None, 0.0))
                best_vals.append(0.0)
                continue
            j = int(np.argmax(column))
            sp = ix.spans[j]
            matches.append(ElementMatch(text, sp.start, sp.end, float(column[j]), sp.label))
            best_vals.append(float(column[j]))
        order = np.argsort(-combined, kind="stable")[:top_passages]
        passages = [RankedPassage(ix.spans[j].start, ix.spans[j].end, float(combined[j]), ix.spans[j].label)
                    for j in order]
        scored.append((document_score(combined, best_vals), ix, passages, matches, combined))
    scored.sort(key=lambda t: -t[0])
    return [RankedDocument(ix.document, s, r + 1, passages, matches, sims, ix.spans)
            for r, (s, ix, passages, matches, sims) in enumerate(scored)]


# ----------------------------------------------------------------------------------------- outputs
def to_json(ranked: Sequence[RankedDocument], query: Query | None = None) -> str:
    """The `rank` CLI contract: a JSON list, best first."""
    return json.dumps([r.to_json() for r in ranked], ensure_ascii=False)


def _chart(ranked: Sequence[RankedDocument], cell: Callable[[RankedDocument, ElementMatch], object]) -> list[dict]:
    """The element × document matrix, one dict per element: {"#", "element", <chart column>: cell, …}."""
    if not ranked:
        return []
    return [{"#": e + 1, "element": match.text, **{chart_column(r): cell(r, r.elements[e]) for r in ranked}}
            for e, match in enumerate(ranked[0].elements)]


def claim_chart_rows(ranked: Sequence[RankedDocument]) -> list[dict]:
    """Each element's best passage relevance per document, in rank order (the shaded table's numbers)."""
    return _chart(ranked, lambda _r, m: round(m.score, 4))


def chart_column(r: RankedDocument) -> str:
    """A claim-chart column name: rank and file name (two uploads may share a name)."""
    return f"{r.rank}. {r.document.name}"


def claim_chart_cells(ranked: Sequence[RankedDocument], snippet_chars: int = 90) -> list[dict]:
    """The claim chart as a reviewer reads it: per element and document, the answering passage's paragraph
    number and the start of its text ("[0023] The balloon is inflated…"); "—" where nothing answers."""

    def cell(r: RankedDocument, m: ElementMatch) -> str:
        if m.start is None:
            return "—"
        text = passage_snippet(r.document.text[m.start:m.end], m.label, snippet_chars)
        return f"{m.label} {text}" if m.label else text

    return _chart(ranked, cell)


def passage_snippet(text: str, label: str | None, chars: int) -> str:
    """A passage on one line, without its leading paragraph number, cut to `chars` with an ellipsis."""
    text = " ".join(text.split())
    if label and text.startswith(label):
        text = text[len(label):].lstrip()
    return text if len(text) <= chars else text[:chars - 1] + "…"


def claim_chart_csv(ranked: Sequence[RankedDocument], excerpt_chars: int = 300) -> str:
    """The claim chart skeleton as CSV: per element, each document's score and best passage (span and text)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    header = ["#", "element"]
    for r in ranked:
        name = r.document.name
        header += [f"{name} score", f"{name} paragraph", f"{name} passage", f"{name} start", f"{name} end"]
    w.writerow(header)
    if ranked:
        for e, match in enumerate(ranked[0].elements):
            row: list = [e + 1, match.text]
            for r in ranked:
                m = r.elements[e]
                text = "" if m.start is None else " ".join(r.document.text[m.start:m.end].split())
                if len(text) > excerpt_chars:
                    text = text[:excerpt_chars - 1] + "…"
                row += [f"{m.score:.4f}", m.label or "", text, "" if m.start is None else m.start,
                        "" if m.end is None else m.end]
            w.writerow(row)
    return buf.getvalue()
