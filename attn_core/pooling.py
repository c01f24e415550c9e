"""Passage embeddings as a by-product of the analysis pass (opt-in, see `pools_in_context`): which tokens of
which window pool each passage.

A passage's embedding is the mean of the model's last hidden states over the passage's own tokens, read in
the window where the passage has most context: the window holding most of its tokens, ties broken by the
larger margin to the window's edges. A passage longer than any window (it cannot sit whole in one) takes
each token from the window that scores it (the chunk's core, chunking.py). Every token is read inside its
document window, so the analysis forward pass -- which runs exactly these windows -- yields the embeddings
for free, and `rank` after `analyze` never runs the model over the document again.

What is stored per chunk is compact and exact: for each passage segment the chunk contributes, the float32
sum of its hidden states (counts follow from the segment's token range), under a key made of the model
identity, the chunk's token ids and the segments' ranges inside the chunk. It does not depend on the
attention reduction, so one analysis serves every method, and a chunk analysed under any settings with the
same windows is reused. Pooling a document is then a sum of a few vectors per passage.

Models read with a passage prefix (e5's "passage: ") are the exception (`pools_in_context`): they were
trained to embed each passage alone after its prefix, and in-window pooling agrees with that only at cosine
median 0.93 / minimum 0.79 (US08930553B2, 54 passages) and median 0.86 / minimum 0.83 (the JP2020151139A
excerpt) -- below the 0.99 needed to call it the same embedding -- so for them retrieval keeps its own pass
over each passage alone. (For MiniLM the two differ as much, median 0.87, but MiniLM was never trained with a
passage framing, and in-window pooling ranked each of the six corpus patents first for its own claim 1,
with a mean margin over the runner-up of 0.465 against 0.448 for passages embedded alone.)
"""
from __future__ import annotations

import bisect
import os
import struct
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .cache import make_key
from .chunking import Chunk

POOL_VERSION = "1"  # bump when the window choice or the stored sums change: old entries stop matching
SUMS_KIND = "passage-sums"  # the ResultStore kind of the per-chunk sums


@dataclass(frozen=True)
class Segment:
    """Tokens [start, end) of the document that passage `passage` takes from one chunk."""

    passage: int
    start: int
    end: int


IN_WINDOW_ENV = "CHUMOKU_EMBEDDINGS"  # "in-window": pool passage embeddings from the analysis pass (speed)


def pools_in_context(passage_prefix: str) -> bool:
    """Whether passage embeddings come from the analysis windows: only when the server asks for it
    (CHUMOKU_EMBEDDINGS=in-window) and never for models read with a passage prefix (module docstring).

    The default embeds each passage alone: measured on the read-first benchmark (claim task, six labelled
    patents) in-window vectors cut the hybrid's nDCG@10 from 0.640 to 0.595, below BM25's 0.621 — a reviewer's
    ranking is worth one more pass. A landscape of thousands of already-analysed documents may prefer the
    speed: then `rank` after `analyze` runs the model on the query only."""
    return not passage_prefix and os.environ.get(IN_WINDOW_ENV, "").strip().lower() == "in-window"


def passage_token_ranges(token_spans: Sequence[tuple[int, int]],
                         passages: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Token index range [a, b) of each passage (character span): the tokens that start inside it."""
    starts = [s for s, _ in token_spans]
    return [(bisect.bisect_left(starts, s), bisect.bisect_left(starts, e)) for s, e in passages]


def _best_window(chunks: Sequence[Chunk], a: int, b: int) -> Chunk | None:
    best, best_key = None, None
    for c in chunks:
        covered = min(b, c.end) - max(a, c.start)
        if covered <= 0:
            continue
        key = (covered, min(a - c.start, c.end - b))
        if best_key is None or key > best_key:
            best, best_key = c, key
    return best


def plan_segments(chunks: Sequence[Chunk], ranges: Sequence[tuple[int, int]]) -> list[list[Segment]]:
    """For each chunk, the passage segments it contributes (module docstring: the window with most context)."""
    out: list[list[Segment]] = [[] for _ in chunks]
    for p, (a, b) in enumerate(ranges):
        if b <= a:
            continue
        c = _best_window(chunks, a, b)
        if c is None:
            continue
        if c.start <= a and b <= c.end:
            out[c.index].append(Segment(p, a, b))
            continue
        for c in chunks:  # longer than a window: each token from the window that scores it
            s, e = max(a, c.core_start), min(b, c.core_end)
            if s < e:
                out[c.index].append(Segment(p, s, e))
    return out


def sums_key(identity: str, affixes: tuple[tuple[int, ...], tuple[int, ...]], chunk_ids: bytes, chunk: Chunk,
             segments: Sequence[Segment]) -> str:
    """The store key of one chunk's segment sums: model, specials, the chunk's token ids and the segments'
    ranges relative to the chunk (which passage they belong to is the document's business, not the key's)."""
    rel = np.asarray([(s.start - chunk.start, s.end - chunk.start) for s in segments], dtype=np.int32)
    return make_key("passage-sums", POOL_VERSION, identity, repr(affixes), chunk_ids, rel.tobytes())


def segment_sums(hidden: np.ndarray, chunk: Chunk, segments: Sequence[Segment]) -> np.ndarray:
    """[S, D] float32 sums of `hidden` ([chunk.size, D], the chunk's content positions) over each segment."""
    if not segments:
        return np.zeros((0, hidden.shape[-1]), np.float32)
    h = hidden.astype(np.float64, copy=False)
    return np.stack([h[s.start - chunk.start:s.end - chunk.start].sum(0) for s in segments]).astype(np.float32)


def encode_sums(sums: np.ndarray) -> bytes:
    return struct.pack("<ii", *sums.shape) + np.ascontiguousarray(sums, dtype=np.float32).tobytes()


def decode_sums(blob: bytes) -> np.ndarray:
    n, d = struct.unpack_from("<ii", blob)
    return np.frombuffer(blob, np.float32, n * d, 8).reshape(n, d)


def pool(n_passages: int, plan: Sequence[Sequence[Segment]], sums: Sequence[np.ndarray], dim: int) -> np.ndarray:
    """[P, D] unit-length passage embeddings from every chunk's segment sums (a passage without tokens: zeros)."""
    total = np.zeros((n_passages, dim), np.float64)
    count = np.zeros(n_passages, np.float64)
    for segments, s in zip(plan, sums):
        for seg, row in zip(segments, s):
            total[seg.passage] += row
            count[seg.passage] += seg.end - seg.start
    vec = total / np.maximum(count, 1.0)[:, None]
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    return (vec / np.maximum(norms, 1e-12)).astype(np.float32)
