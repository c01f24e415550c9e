"""From per-token attention to word scores and ranked "read first" passages."""
from __future__ import annotations

from typing import Collection, Mapping, Sequence

import numpy as np

from .chunking import Chunk
from .results import Passage, WordScore

PASSAGE_PRIOR_WORDS = 8.0  # pseudo-words at the document mean added to every passage


def stitch(n_tokens: int, chunks: Sequence[Chunk], chunk_scores: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each token takes its score from its chunk's core range. Returns (scores, chunk index per token).

    Chunk scores sum to 1 within a chunk, so they are multiplied by the chunk's length to put windows of
    different lengths on one scale (1.0 = an average token's share).
    """
    scores = np.zeros(n_tokens, dtype=np.float32)
    owner = np.zeros(n_tokens, dtype=np.int32)
    for chunk, s in zip(chunks, chunk_scores):
        if len(s) != chunk.size:
            raise ValueError(f"chunk {chunk.index}: {len(s)} scores for {chunk.size} tokens")
        a, b = chunk.core_start - chunk.start, chunk.core_end - chunk.start
        scores[chunk.core_start:chunk.core_end] = s[a:b] * chunk.size
        owner[chunk.core_start:chunk.core_end] = chunk.index
    return scores, owner


def percentile_ranks(values: np.ndarray) -> np.ndarray:
    """Mid-rank percentile in 0..1 (ties share a rank): flat raw attention still spreads over the scale."""
    n = len(values)
    if n == 0:
        return np.zeros(0)
    if n == 1:
        return np.ones(1)
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    # average rank over runs of equal values: a run [s, e) gets (s + e - 1) / 2
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], n]
    run_rank = (starts + ends - 1) / 2.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks / (n - 1)


def word_raw_scores(word_spans: Sequence[tuple[int, int]], token_spans: Sequence[tuple[int, int]],
                    token_scores: np.ndarray) -> np.ndarray:
    """A word's raw score is the max over the tokens overlapping it (pieces of one word share its weight)."""
    out = np.zeros(len(word_spans), dtype=np.float64)
    n_tok = len(token_spans)
    t = 0
    for i, (ws, we) in enumerate(word_spans):
        while t < n_tok and token_spans[t][1] <= ws and token_spans[t][0] < we:
            t += 1
        j, best = t, 0.0
        while j < n_tok and token_spans[j][0] < we:
            s, e = token_spans[j]
            if e > ws and e > s:
                best = max(best, float(token_scores[j]))
            j += 1
        out[i] = best
    return out


def word_scores(text: str, word_spans: Sequence[tuple[int, int]], token_spans: Sequence[tuple[int, int]],
                token_scores: np.ndarray, unshaded: Sequence[bool] | None = None) -> list[WordScore]:
    """Raw score (max of the word's tokens) and percentile within the document.

    `unshaded` words (stop words, particles, bare reference numerals) keep their raw score but get
    percentile 0 and take no part in the others' percentiles: "the" and "211" are never what a reviewer
    should read first, and leaving them in would push content words down the scale."""
    raw = word_raw_scores(word_spans, token_spans, token_scores)
    if unshaded is None or not any(unshaded):
        pct = percentile_ranks(raw)
    else:
        mask = ~np.asarray(unshaded, dtype=bool)
        pct = np.zeros(len(raw), dtype=np.float64)
        if mask.any():
            pct[mask] = percentile_ranks(raw[mask])
    return [WordScore(text[s:e], s, e, p, r) for (s, e), p, r in zip(word_spans, pct.tolist(), raw.tolist())]


def passage_score(word_percentiles: np.ndarray, doc_mean: float, prior: float = PASSAGE_PRIOR_WORDS) -> float:
    """Shrunken mean of the passage's word percentiles: (Σ p + m·μ) / (n + m).

    A plain mean lets a three-word heading with one hot word win; a sum lets the longest paragraph win.
    Shrinking toward the document mean μ with m pseudo-words keeps short passages near average unless
    their evidence is strong, and does not reward length.
    """
    n = len(word_percentiles)
    return float((word_percentiles.sum() + prior * doc_mean) / (n + prior))


def rank_passages(spans: Sequence[tuple[int, int, str | None, int | None]], words: Sequence[WordScore],
                  sections: Sequence[str] | None = None, weights: Mapping[str, float] | None = None,
                  duplicates: Collection[int] = (), evidence: np.ndarray | None = None) -> list[Passage]:
    """Score passages (start, end, label, page) from their words and rank them (1 = read first).

    With `sections` and `weights`: the attention ranking is fused by reciprocal rank with `evidence` of
    what the document is about when there is some (each passage's BM25 against a patent's own first claim,
    relevance.own_claim_relevance, or against any other document's most salient terms, relevance.
    topic_relevance), then weighted by the passage's section (sections.py says why: a reviewer reads the
    independent claims, summary and main embodiment first, never the drawing list, and running text
    before titles and headings); a passage repeating an earlier one scores 0, so it sinks to the end.
    Scores stay in 0..1."""
    from .relevance import RRF_K, rrf_ranks

    starts = np.array([w.start for w in words], dtype=np.int64)
    pct = np.array([w.score for w in words], dtype=np.float64)
    doc_mean = float(pct.mean()) if len(pct) else 0.0
    attention = np.array([passage_score(pct[np.searchsorted(starts, s):np.searchsorted(starts, e)], doc_mean)
                          for s, e, _, _ in spans], dtype=np.float64)
    scores = attention
    if sections is not None and weights is not None:
        # 1 = the best a passage of this document could score: a licence has no summary to compare it with
        top = max((weights.get(sec, 1.0) for sec in sections), default=1.0) or 1.0
        if evidence is not None and len(evidence) == len(spans) and float(np.max(evidence, initial=0.0)) > 0:
            best = 2.0 / (RRF_K + 1)
            scores = (1.0 / (RRF_K + rrf_ranks(attention)) + 1.0 / (RRF_K + rrf_ranks(evidence, floor_zero=True))) / best
        scores = scores * np.array([weights.get(sec, 1.0) for sec in sections]) / top
    scores = scores.copy()
    for i in duplicates:
        if 0 <= i < len(scores):
            scores[i] = 0.0
    order = sorted(range(len(spans)), key=lambda i: (-scores[i], spans[i][0]))
    rank = {i: r + 1 for r, i in enumerate(order)}
    return [Passage(s, e, round(float(scores[i]), 6), rank[i], label, page,
                    None if sections is None else str(sections[i]))
            for i, (s, e, label, page) in enumerate(spans)]
