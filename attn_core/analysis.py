"""The analysis pipeline: preprocess (tokens, chunks, cache keys) → forward (batched, cached) → postprocess.

Each stage is a plain function over plain data, like transformers' Pipeline.
"""
from __future__ import annotations

import bisect
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .alignment import TokenizedText, tokenize_document
from .attention import Capture, ChunkBatch, to_numpy
from .batching import PaddedBatch, default_batch_tokens, length_batches, pad_batch, pad_id
from .cache import ResultStore, default_store, make_key
from .chunking import Chunk, plan_chunks, token_boundaries
from .document import Document
from .errors import EmptyDocumentError, SettingsError
from .models import LoadedModel
from .pooling import (
    SUMS_KIND,
    Segment,
    encode_sums,
    passage_token_ranges,
    plan_segments,
    pools_in_context,
    segment_sums,
    sums_key,
)
from .progress import Cancel, Progress, report
from .relevance import own_claim_relevance, topic_relevance
from .results import AnalysisResult, ChunkInfo, Method, ModelKind, Settings, TokenScore
from .scoring import rank_passages, stitch, word_scores
from .sections import READ_FIRST_WEIGHT, Section, classify_passages, duplicate_passages, is_patent
from .segment import PassageSpan, boundary_offsets, passage_spans, word_spans
from .stopwords import is_unshaded_word

ENGINE_VERSION = "1"  # bump when reductions change: old cache entries stop matching


@dataclass(frozen=True)
class Prepared:
    """Everything decided before the model runs."""

    tokenized: TokenizedText
    chunks: list[Chunk]
    prefix: tuple[int, ...]  # special ids before each chunk's content ([CLS], BOS…)
    suffix: tuple[int, ...]  # and after it ([SEP]…)
    keys: list[str]  # cache key of each chunk
    passages: list[PassageSpan] | None = None  # the document's passages (segment.passage_spans)
    # Passage embeddings pooled from these windows (pooling.py); None for models that embed passages alone.
    segments: list[list[Segment]] | None = None  # per chunk, the passage segments it contributes
    sum_keys: list[str | None] | None = None  # per chunk, the store key of its segment sums (None: no segment)

    @property
    def pooled(self) -> bool:
        """Whether the forward pass also yields this document's passage embeddings."""
        return self.segments is not None


@dataclass(frozen=True)
class ChunkOutput:
    scores: np.ndarray  # [chunk.size] float32, summing to 1 over kept tokens
    logits: np.ndarray | None = None  # classifier models
    sums: np.ndarray | None = None  # [segments, D] hidden-state sums for passage embeddings (stored apart)

    def to_bytes(self) -> bytes:
        """The cache's encoding: two counts, then the float32 scores and logits."""
        logits = self.logits if self.logits is not None else np.zeros(0, np.float32)
        return struct.pack("<ii", len(self.scores), len(logits)) + self.scores.astype(np.float32).tobytes() + \
            logits.astype(np.float32).tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> "ChunkOutput":
        n, m = struct.unpack_from("<ii", blob)
        scores = np.frombuffer(blob, np.float32, n, 8)
        logits = np.frombuffer(blob, np.float32, m, 8 + 4 * n) if m else None
        return cls(scores, logits)


# ----------------------------------------------------------------------------------------------- preprocess
def passage_prefix_ids(model: LoadedModel) -> tuple[int, ...]:
    """The ids of the model's passage prefix ("passage: " for e5), as they stand before a text.

    Taken as the difference between tokenising prefix + probe and the probe alone, so a SentencePiece
    tokenizer gives "▁passage", ":" -- what e5 saw in training -- and not the stray "▁" piece that the
    prefix's trailing space gives when tokenised on its own."""
    text = model.info.passage_prefix
    if not text:
        return ()
    tok = model.tokenizer
    probe = tok("x", add_special_tokens=False)["input_ids"]
    joined = tok(text + "x", add_special_tokens=False)["input_ids"]
    if probe and len(joined) > len(probe) and joined[-len(probe):] == probe:
        return tuple(joined[:-len(probe)])
    return tuple(tok(text.rstrip(), add_special_tokens=False)["input_ids"])


def special_affixes(model: LoadedModel, passage: bool = True) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ids a model wraps around a sequence, found by tokenising a probe with and without them.

    `passage`: include the model's passage prefix ("passage: " for e5) after its own specials — a document
    is always read as a passage; a query is embedded without it (its own prefix is part of its text).
    Like [CLS], the prefix tokens stand outside the chunk: they are never shaded, and the chunk budget
    (max_tokens minus both affixes) leaves room for them."""
    tok = model.tokenizer
    bare = tok("x", add_special_tokens=False)["input_ids"]
    full = tok("x", add_special_tokens=True)["input_ids"]
    prefix: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()
    for i in range(len(full) - len(bare) + 1):
        if full[i:i + len(bare)] == bare:
            prefix, suffix = tuple(full[:i]), tuple(full[i + len(bare):])
            break
    if model.kind == ModelKind.CAUSAL and not prefix and tok.bos_token_id is not None:
        prefix = (tok.bos_token_id,)  # a BOS sink in every window keeps the first real token honest
    if passage:
        prefix += passage_prefix_ids(model)
    return prefix, suffix


def reduction_key(settings: Settings) -> str:
    return repr((str(settings.method), settings.layer, settings.head, settings.drop_special))


_prep_lock = threading.Lock()
_prep_memo: OrderedDict[tuple, tuple[TokenizedText, list[int]]] = OrderedDict()


def _tokenize(document: Document, model: LoadedModel) -> tuple[TokenizedText, list[int]]:
    """Tokens and sentence-start token indices, memoised: a re-run of the same document skips this."""
    key = (document.sha256, len(document.text), document.language, model.info.identity)
    with _prep_lock:
        if key in _prep_memo:
            _prep_memo.move_to_end(key)
            return _prep_memo[key]
    tokenized = tokenize_document(model.tokenizer, document.text)
    starts = [s for s, _ in tokenized.spans]
    bounds = token_boundaries(starts, boundary_offsets(document.text, document.language))
    with _prep_lock:
        _prep_memo[key] = (tokenized, bounds)
        while len(_prep_memo) > 16:
            _prep_memo.popitem(last=False)
    return tokenized, bounds


def preprocess(document: Document, model: LoadedModel, settings: Settings, *, pool: bool = True) -> Prepared:
    """Tokens, windows and cache keys; with `pool` (and a model that pools in context, pooling.py) also the
    passage segments each window contributes to the passage embeddings, and their store keys."""
    if not document.text.strip():
        raise EmptyDocumentError("the document has no text", filename=document.name)
    tokenized, bounds = _tokenize(document, model)
    prefix, suffix = special_affixes(model)
    budget = (settings.chunk_tokens or model.info.max_tokens) - len(prefix) - len(suffix)
    budget = min(budget, model.info.max_tokens - len(prefix) - len(suffix))
    chunks = plan_chunks(len(tokenized.ids), budget, settings.overlap, bounds)
    red = reduction_key(settings)
    ids = np.asarray(tokenized.ids, dtype=np.int64)
    blobs = [ids[c.start:c.end].tobytes() for c in chunks]
    keys = [make_key(ENGINE_VERSION, model.info.identity, red, b) for b in blobs]
    passages = passage_spans(document.text, document.language, document.paragraphs)
    if not (pool and pools_in_context(model.info.passage_prefix)):
        return Prepared(tokenized, chunks, prefix, suffix, keys, passages)
    ranges = passage_token_ranges(tokenized.spans, [(p.start, p.end) for p in passages])
    segments = plan_segments(chunks, ranges)
    sum_keys = [sums_key(model.info.identity, (prefix, suffix), b, c, seg) if seg else None
                for b, c, seg in zip(blobs, chunks, segments)]
    return Prepared(tokenized, chunks, prefix, suffix, keys, passages, segments, sum_keys)


def clear_preprocess_memo() -> None:
    """Forget memoised tokenisations ("Clear cache")."""
    with _prep_lock:
        _prep_memo.clear()


# --------------------------------------------------------------------------------------------------- forward
def chunk_batches(chunks: Sequence[Chunk], batch_tokens: int) -> list[list[Chunk]]:
    """Longest first, so padding is small and the slowest batch shows progress early."""
    return [[chunks[i] for i in b] for b in length_batches([c.size for c in chunks], batch_tokens)]


def _sequences(prepared: Prepared, batch: Sequence[Chunk]) -> list[list[int]]:
    ids = prepared.tokenized.ids
    pre, suf = list(prepared.prefix), list(prepared.suffix)
    return [pre + ids[c.start:c.end] + suf for c in batch]


def _chunk_sums(prepared: Prepared, batch: Sequence[Chunk], hidden: np.ndarray) -> list[np.ndarray | None]:
    """Each chunk's passage-segment sums from the batch's last hidden states [B, T, D] (None: no segment)."""
    assert prepared.segments is not None
    out: list[np.ndarray | None] = []
    pre = len(prepared.prefix)
    for b, c in enumerate(batch):
        segments = prepared.segments[c.index]
        out.append(segment_sums(hidden[b, pre:pre + c.size], c, segments) if segments else None)
    return out


def run_batch(model: LoadedModel, prepared: Prepared, batch: Sequence[Chunk], settings: Settings,
              full: bool = False) -> tuple[list[ChunkOutput], Capture]:
    """One padded forward pass with the attention capture on.

    When the prepared document pools its passage embeddings here, the pass runs to the last layer's output
    instead of stopping after the last layer a reduction needs (for the default "last" layer that is only
    the rest of one layer), and each chunk's passage-segment sums come back with its scores."""
    pre = list(prepared.prefix)
    seqs = _sequences(prepared, batch)
    padded = pad_batch(seqs, pad_id(model.tokenizer), model.info.device)
    keep = np.zeros_like(padded.mask)
    for b, (s, c) in enumerate(zip(seqs, batch)):
        if settings.drop_special:
            keep[b, len(pre): len(pre) + c.size] = True
        else:
            keep[b, : len(s)] = True
    classifier = model.kind == ModelKind.CLASSIFIER
    pooled = prepared.pooled and not full
    if model.runner is not None and not full:  # ONNX Runtime (runtime.py): same capture, numpy arrays
        capture = Capture(settings, model.num_layers, ChunkBatch(padded.mask, keep, False))
        # "auto" reads the norm method (it needs each head's value vectors) with torch; an ONNX runtime refuses it
        norm_on_torch = settings.method == Method.NORM and model.runner.verified_only
        if not norm_on_torch and model.runner.ready(sorted(capture.layers)):
            return _run_runner(model, prepared, batch, settings, padded, capture), capture
    from .eager_attention import run_captured  # torch is imported when a torch network first reads

    capture = Capture(settings, model.num_layers,
                      ChunkBatch(padded.valid, padded.on_device(keep), model.kind == ModelKind.CAUSAL),
                      model.output_projections, full=full, needs_outputs=classifier or pooled)
    net = model.model if classifier else model.model.base_model
    extra = {"output_hidden_states": True} if classifier and pooled else {}
    out = run_captured(net, capture, input_ids=padded.input_ids, attention_mask=padded.attention_mask, **extra)
    if full:
        return [], capture
    scores = capture.cpu_scores()
    logits = to_numpy(out.logits) if classifier and out is not None else None
    sums: list[np.ndarray | None] = [None] * len(batch)
    if pooled and out is not None:
        sums = _chunk_sums(prepared, batch, to_numpy(out.hidden_states[-1] if classifier else out.last_hidden_state))
    outputs = []
    for b, c in enumerate(batch):
        outputs.append(ChunkOutput(scores[b, len(pre): len(pre) + c.size].copy(),
                                   None if logits is None else logits[b].copy(), sums[b]))
    return outputs, capture


def _run_runner(model: LoadedModel, prepared: Prepared, batch: Sequence[Chunk], settings: Settings,
                padded: PaddedBatch, capture: Capture) -> list[ChunkOutput]:
    """run_batch on a runtime that returns the needed layers' attention probabilities (runtime.py)."""
    if settings.method == Method.NORM:
        raise SettingsError("the norm method needs each head's value vectors, which only the torch runtime "
                            "exposes: use --runtime torch, or another method")
    layers = sorted(capture.layers)
    hidden, probs = model.runner.run(padded.ids, padded.mask, layers)
    for i in layers:
        capture.consume(i, probs[i], probs[i])  # `value` is read by the norm method only
    scores = capture.cpu_scores()
    sums = _chunk_sums(prepared, batch, hidden) if prepared.pooled else [None] * len(batch)
    pre = len(prepared.prefix)
    return [ChunkOutput(scores[b, pre:pre + c.size].copy(), None, sums[b]) for b, c in enumerate(batch)]


def last_hidden_state(model: LoadedModel, padded: PaddedBatch) -> np.ndarray:
    """The last hidden state [B, T, D] of a padded batch, on the model's runtime (float32, on the CPU)."""
    if model.runner is not None and model.runner.ready():
        return model.runner.run(padded.ids, padded.mask)[0]
    from .eager_attention import encoder_hidden_state

    return to_numpy(encoder_hidden_state(model.model.base_model, padded.input_ids, padded.attention_mask))


def passage_sums(model: LoadedModel, items: Sequence[tuple[Prepared, Chunk]], *, batch_tokens: int | None = None,
                 progress: Progress | None = None, cancel: Cancel | None = None) -> list[np.ndarray]:
    """The passage-segment sums of chunks that were never analysed (retrieval's own pass): the same windows,
    specials and pooling as the analysis pass, with every layer on SDPA and no attention kept.

    `items`: (prepared document, chunk) pairs, from any number of documents, batched together by length."""
    batch_tokens = batch_tokens or default_batch_tokens(model.info.device, scale=4)
    seqs = [_sequences(p, [c])[0] for p, c in items]
    out: list[np.ndarray] = [np.zeros((0, 0), np.float32)] * len(items)
    done = 0
    for batch in length_batches([len(s) for s in seqs], batch_tokens):
        padded = pad_batch([seqs[k] for k in batch], pad_id(model.tokenizer), model.info.device)
        hidden = last_hidden_state(model, padded)
        for b, k in enumerate(batch):
            p, c = items[k]
            assert p.segments is not None, "passage_sums needs a document prepared with pool=True"
            (sums,) = _chunk_sums(p, [c], hidden[b:b + 1])
            out[k] = sums if sums is not None else np.zeros((0, hidden.shape[-1]), np.float32)
        done += len(batch)
        report(progress, cancel, done, len(items))
    return out


def forward(model: LoadedModel, prepared: Prepared, settings: Settings, *, store: ResultStore | None,
            progress: Progress | None = None, batch_tokens: int | None = None,
            cancel: Cancel | None = None) -> tuple[list[ChunkOutput], int]:
    """Chunk outputs in chunk order, reading finished chunks from the store and saving each new batch
    (with the passage-segment sums of the chunks it runs, when the document pools them: pooling.py)."""
    total = len(prepared.chunks)
    results: dict[int, ChunkOutput] = {}
    if store is not None:
        found = store.get_many(prepared.keys)
        for c, k in zip(prepared.chunks, prepared.keys):
            if k in found:
                results[c.index] = ChunkOutput.from_bytes(found[k])
    cached = len(results)
    report(progress, cancel, cached, total)
    todo = [c for c in prepared.chunks if c.index not in results]
    batch_tokens = batch_tokens or default_batch_tokens(model.info.device)
    for batch in chunk_batches(todo, batch_tokens):
        outputs, _ = run_batch(model, prepared, batch, settings)
        fresh, sums = {}, {}
        for c, o in zip(batch, outputs):
            results[c.index] = o
            fresh[prepared.keys[c.index]] = o.to_bytes()
            if o.sums is not None and prepared.sum_keys is not None and prepared.sum_keys[c.index]:
                sums[prepared.sum_keys[c.index]] = encode_sums(o.sums)
        if store is not None:
            store.put_many(fresh)
            store.put_many(sums, kind=SUMS_KIND)
        report(progress, cancel, len(results), total)
    return [results[c.index] for c in prepared.chunks], cached


# ----------------------------------------------------------------------------------------------- postprocess
def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


UNSHADED_SECTIONS = frozenset({Section.META, Section.HEADING})  # their words are never shaded (patents)


def _in_sections(w_spans: Sequence[tuple[int, int]], bounds: Sequence[tuple[int, int]],
                 sections: Sequence[Section], wanted: frozenset[Section]) -> list[bool]:
    """For each word, whether it starts inside a passage of one of the `wanted` sections."""
    starts = [b[0] for b in bounds]
    out = []
    for s, _ in w_spans:
        i = bisect.bisect_right(starts, s) - 1
        out.append(i >= 0 and s < bounds[i][1] and sections[i] in wanted)
    return out


def postprocess(document: Document, model: LoadedModel, settings: Settings, prepared: Prepared,
                outputs: Sequence[ChunkOutput], cached: int = 0, seconds: float = 0.0, *,
                aboutness: bool = True) -> AnalysisResult:
    """Words, passages (ranked to read first, sections.py) and chunk labels from the chunk outputs.

    `aboutness=False` skips the BM25 pass against what the document says it is about (a patent's own first
    claim, else its most salient terms): a claim reading ranks its passages by relevance to the reviewer's
    claim instead (Reader), so that index would be built for nothing."""
    tok = prepared.tokenized
    token_scores, owner = stitch(len(tok.ids), prepared.chunks, [o.scores for o in outputs])
    tokens = [TokenScore(t, s, e, v, o, u)
              for t, (s, e), v, o, u in zip(tok.tokens, tok.spans, token_scores.tolist(), owner.tolist(), tok.unk)]
    text, language = document.text, document.language
    p_spans = prepared.passages if prepared.passages is not None else passage_spans(text, language,
                                                                                      document.paragraphs)
    spans = [(p.start, p.end, p.label, p.page) for p in p_spans]
    bounds = [(p.start, p.end) for p in p_spans]
    patent = is_patent(text)
    sections = classify_passages(text, bounds)
    w_spans = word_spans(text, language)
    unshaded = [is_unshaded_word(text[s:e], language) for s, e in w_spans]
    if patent:  # a patent's bibliographic lines, record headers and bare headings are not content
        unshaded = [u or m for u, m in zip(unshaded, _in_sections(w_spans, bounds, sections, UNSHADED_SECTIONS))]
    words = word_scores(text, w_spans, tok.spans, token_scores, unshaded)
    # read first: a patent's summary, independent claims and main embodiment; any document's running text
    # before its title, headings and fragments (sections.py)
    evidence = None
    if aboutness:  # what the document is about: a patent's first claim, else its own most salient terms
        evidence = own_claim_relevance(document, bounds) if patent else None
        if evidence is None:
            evidence = topic_relevance(document, bounds, sections)
    passages = rank_passages(spans, words, sections, READ_FIRST_WEIGHT, duplicate_passages(text, bounds), evidence)
    id2label = getattr(model.config, "id2label", None) or {}
    chunk_infos, label, probability = [], None, None
    doc_probs = None
    for c, o in zip(prepared.chunks, outputs):
        c_label = c_prob = None
        if o.logits is not None and len(o.logits):
            probs = _softmax(o.logits.astype(np.float64))
            k = int(probs.argmax())
            c_label, c_prob = str(id2label.get(k, k)), float(probs[k])
            weight = c.core_end - c.core_start
            doc_probs = probs * weight if doc_probs is None else doc_probs + probs * weight
        spans_c = tok.spans[c.start:c.end]
        core = tok.spans[c.core_start:c.core_end] or spans_c
        chunk_infos.append(ChunkInfo(c.index, spans_c[0][0], spans_c[-1][1], core[0][0], core[-1][1], c.size,
                                     c_label, c_prob))
    if doc_probs is not None:
        doc_probs = doc_probs / doc_probs.sum()
        k = int(doc_probs.argmax())
        label, probability = str(id2label.get(k, k)), float(doc_probs[k])
    unk_rate = float(np.mean(tok.unk)) if tok.unk else 0.0
    return AnalysisResult(document, model.info, settings, tokens, words, passages, chunk_infos, unk_rate,
                          label, probability, cached, seconds)


# ------------------------------------------------------------------------------------------------------- API
def analyze(document: Document, model: LoadedModel, settings: Settings | None = None, *,
            progress: Progress | None = None, store: ResultStore | None = None,
            use_store: bool = True, batch_tokens: int | None = None, cancel: Cancel | None = None) -> AnalysisResult:
    """Analyse a whole document; finished chunks are cached on disk, so a re-run or resume is cheap."""
    t0 = time.perf_counter()
    settings = settings or Settings()
    if store is None and use_store:
        store = default_store()
    prepared = preprocess(document, model, settings)
    outputs, cached = forward(model, prepared, settings, store=store, progress=progress,
                              batch_tokens=batch_tokens, cancel=cancel)
    return postprocess(document, model, settings, prepared, outputs, cached, time.perf_counter() - t0)


@dataclass
class ChunkAttention:
    """The full attention of one chunk, for the explorer views."""

    chunk: int
    tokens: list[str]  # including special tokens
    spans: list[tuple[int, int]]  # (-1, -1) for special tokens
    special: list[bool]
    attentions: np.ndarray  # [layers, heads, T, T]
    value_norms: np.ndarray | None = None  # [layers, heads, T]: ||v·W_O|| per head and key (norm method)

    def reduce(self, method: str, layer: str | int = "last", head: str | int = "mean",
               causal: bool = False) -> np.ndarray:
        """A reduction of this chunk's attention (same code as the engine), over its tokens."""
        norm = method == Method.NORM
        if norm and self.value_norms is None:
            raise ValueError("this chunk's attention was captured without value norms")
        # norm = "received" over attention weighted by each key's value-output norm (Kobayashi et al.)
        settings = Settings(method=Method.RECEIVED if norm else Method(method), layer=layer, head=head)
        n = len(self.tokens)
        valid = np.ones((1, n), dtype=bool)
        keep = np.array([[not s for s in self.special]], dtype=bool)
        cap = Capture(settings, self.attentions.shape[0], ChunkBatch(valid, keep, causal))
        for i in range(self.attentions.shape[0]):
            if cap.wants(i):
                probs = self.attentions[i][None]
                if norm:
                    probs = probs * self.value_norms[i][None, :, None, :]
                cap.consume(i, probs, np.zeros((1, probs.shape[1], n, 1), np.float32))
        return cap.cpu_scores()[0]


def chunk_attention(document: Document, model: LoadedModel, chunk_index: int,
                    settings: Settings | None = None) -> ChunkAttention:
    settings = settings or Settings()
    prepared = preprocess(document, model, settings)
    if not 0 <= chunk_index < len(prepared.chunks):
        raise IndexError(f"chunk {chunk_index} out of range (document has {len(prepared.chunks)} chunks)")
    c = prepared.chunks[chunk_index]
    _, capture = run_batch(model, prepared, [c], settings, full=True)
    att = np.stack([layer[0] for layer in capture.full_layers])
    norms = np.stack([n[0] for n in capture.full_value_norms])
    tok = prepared.tokenized
    conv = model.tokenizer.convert_ids_to_tokens
    pre, suf = list(prepared.prefix), list(prepared.suffix)
    tokens = conv(pre) + tok.tokens[c.start:c.end] + conv(suf)
    spans = [(-1, -1)] * len(pre) + list(tok.spans[c.start:c.end]) + [(-1, -1)] * len(suf)
    special = [True] * len(pre) + [False] * c.size + [True] * len(suf)
    return ChunkAttention(chunk_index, tokens, spans, special, att, norms)
