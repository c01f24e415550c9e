"""Hybrid relevance of passages to a claim or query: keywords (BM25) and meaning (embeddings), per element.

Why a hybrid: measured on patents labelled by reading them, the attention a query pays a chunk is no
relevance signal (nDCG@10 ≈ 0.3), BM25 over the passages is strong (claims reuse the description's words)
and the bi-encoder's cosine between mean-pooled embeddings — what such a model is trained for — is strong on
paraphrase and across languages. Neither wins everywhere; their fusion is the standard way to beat both.

Rule (`fuse`): reciprocal-rank fusion (Cormack et al. 2009) of the BM25 ranking and the cosine ranking,
done for the whole claim and for each claim element ("query units"):

    unit_score(p) = 1/(k + rank_bm25(p)) + 1/(k + rank_cos(p))          k = RRF_K (60, the published default)
    score(p)      = ½ · unit_score_whole(p) + ½ · max over elements of unit_score_element(p)

Ranks rather than raw scores, because BM25 and cosine live on unrelated scales that move with document
length and model; RRF needs no tuning to a labelled set. The whole claim keeps its overall sense; the
element term lets a passage that answers one element well (what an examiner charts) reach the top even
when it says nothing of the others — a mean over elements would dilute it by their number. Passages
whose BM25 score is zero share the worst lexical rank (a word the passage lacks is no evidence for it).
With one element the whole claim is that element and the score is its unit score.

Scores are scaled to 0..1 (1 = first in both rankings for the whole claim and for some element).
"""
from __future__ import annotations

import enum
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .claims import extract_claims
from .document import Document
from .lexical import LexicalIndex
from .sections import Section
from .segment import KANJI_DIGITS

RRF_K = 60
TOPIC_TERMS = 20  # how many of its most salient terms stand for what a document is about
_NUMBER_TERM = re.compile(rf"^[0-9０-９{KANJI_DIGITS}万.,]+$")


class RelevanceMethod(enum.StrEnum):
    """What ranks passages for a query (the benchmark compares them; HYBRID is the product)."""

    HYBRID = "hybrid"
    BM25 = "bm25"
    EMBEDDING = "embedding"


def rrf_ranks(scores: np.ndarray, floor_zero: bool = False) -> np.ndarray:
    """1-based ranks of each score (ties share the best rank); with `floor_zero`, every non-positive score
    gets the rank after the last positive one (no evidence is no evidence, whatever its order)."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if n == 0:
        return np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(n, dtype=np.float64)
    sorted_scores = scores[order]  # ties share the rank of their first member
    first = np.searchsorted(-sorted_scores, -sorted_scores, side="left") + 1
    ranks[order] = first
    if floor_zero:
        positive = scores > 0
        ranks[~positive] = positive.sum() + 1
    return ranks


def fuse(lexical: np.ndarray, cosine: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """Per query unit (rows), the reciprocal-rank fusion of BM25 and cosine over passages (columns)."""
    lexical, cosine = np.atleast_2d(lexical), np.atleast_2d(cosine)
    out = np.zeros(lexical.shape, dtype=np.float64)
    for u in range(lexical.shape[0]):
        out[u] = 1.0 / (k + rrf_ranks(lexical[u], floor_zero=True)) + 1.0 / (k + rrf_ranks(cosine[u]))
    return out


def combine_units(unit_scores: np.ndarray, k: int = RRF_K) -> tuple[np.ndarray, np.ndarray]:
    """(score per passage in 0..1, index of the element each passage answers best).

    Row 0 is the whole claim, rows 1.. its elements (module docstring)."""
    best = 2.0 / (k + 1)
    whole = unit_scores[0]
    if unit_scores.shape[0] <= 2:  # one element: it is the whole claim
        return whole / best, np.zeros(len(whole), dtype=np.int64)
    elements = unit_scores[1:]
    return (0.5 * whole + 0.5 * elements.max(0)) / best, elements.argmax(0)


@dataclass(frozen=True)
class PassageRelevance:
    """Relevance of each passage (text order) to a query, and per element."""

    scores: np.ndarray  # [P] 0..1
    element: np.ndarray  # [P] index of the element each passage answers best
    per_element: np.ndarray  # [E, P] 0..1, each element's own fused score (the claim chart)
    lexical: np.ndarray  # [1 + E, P] BM25 (whole claim, then elements)
    cosine: np.ndarray  # [1 + E, P]
    method: RelevanceMethod = RelevanceMethod.HYBRID

    def order(self) -> np.ndarray:
        """Passage indices, most relevant first (ties: text order)."""
        return np.lexsort((np.arange(len(self.scores)), -self.scores))


def lexical_scores(index: LexicalIndex, units: Sequence[str]) -> np.ndarray:
    """[U, P] BM25 of each query unit against every passage of the index."""
    return np.stack([index.scores(u) for u in units]) if units else np.zeros((0, 0), np.float32)


def passage_relevance(lexical: np.ndarray, cosine: np.ndarray,
                      method: RelevanceMethod = RelevanceMethod.HYBRID, k: int = RRF_K) -> PassageRelevance:
    """Fuse [1 + E, P] BM25 and cosine scores (row 0 the whole claim) into passage relevance."""
    lexical, cosine = np.atleast_2d(lexical), np.atleast_2d(cosine)
    if method == RelevanceMethod.HYBRID:
        units = fuse(lexical, cosine, k)
    else:  # one signal alone, in the same rank form (benchmark baselines)
        signal = lexical if method == RelevanceMethod.BM25 else cosine
        units = np.stack([2.0 / (k + rrf_ranks(row, floor_zero=method == RelevanceMethod.BM25)) for row in signal])
    scores, element = combine_units(units, k)
    per_element = units[1:] / (2.0 / (k + 1)) if units.shape[0] > 2 else units[:1] / (2.0 / (k + 1))
    return PassageRelevance(scores, element, per_element, lexical, cosine, method)


def own_claim_relevance(document: Document, spans: Sequence[tuple[int, int]]) -> np.ndarray | None:
    """BM25 of each passage against the document's own first claim, or None when it has no claims.

    Without a query, a patent still says what it is about: its first (independent) claim. The passages
    that share its terms are the summary and the main embodiment a reviewer reads first — the same
    evidence an examiner uses to find "the embodiment the claim reads on"."""
    claims = extract_claims(document)
    if not claims or not claims[0].text.strip():
        return None
    index = LexicalIndex([document.text[s:e] for s, e in spans], document.language)
    return index.scores(claims[0].text)


def topic_relevance(document: Document, spans: Sequence[tuple[int, int]],
                    sections: Sequence[Section]) -> np.ndarray | None:
    """BM25 of each passage against the document's own topic, or None when its running text has no terms.

    A document without claims still says what it is about: the terms its running text keeps returning to.
    Those are the TOPIC_TERMS terms with the highest tf · log(1 + N/df) over the BODY passages (frequent in
    the document, not in every passage; numbers and one-character terms left out); the passages that use
    most of them are the ones that state the document's substance (a licence's grants and conditions, a
    guideline's test, a statute's core rights), where attention alone favours short dense fragments. It
    is the same evidence a patent gets from its own first claim (`own_claim_relevance`), measured in
    benchmarks/bench_readfirst.py task D."""
    index = LexicalIndex([document.text[s:e] for s, e in spans], document.language)
    body = [i for i, section in enumerate(sections) if section is Section.BODY]
    tf: Counter[str] = Counter()
    df: Counter[str] = Counter()
    for i in body:
        terms = [t for t in index.passage_terms[i] if len(t) >= 2 and not _NUMBER_TERM.match(t)]
        tf.update(terms)
        df.update(set(terms))
    if not tf:
        return None
    salience = {t: tf[t] * math.log(1 + len(body) / df[t]) for t in tf}
    topic = sorted(salience, key=lambda t: (-salience[t], t))[:TOPIC_TERMS]
    return index.term_scores(topic)
