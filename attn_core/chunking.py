"""Token windows over a whole document: the model's real budget, cut at sentence ends, overlapping."""
from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int  # token range [start, end) into the document's tokens
    end: int
    core_start: int  # tokens whose scores are taken from this chunk (where they have most context)
    core_end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def plan_chunks(n_tokens: int, budget: int, overlap: int, boundaries: list[int] | None = None) -> list[Chunk]:
    """Windows of at most `budget` tokens, ending at a sentence boundary when one lies in the last quarter.

    `boundaries`: sorted token indices at which a sentence starts (a cut before them is clean).
    Neighbours share about `overlap` tokens; each token's score comes from the window in which it
    sits furthest from an edge, i.e. overlaps are split at their midpoint.
    """
    if budget < 8:
        raise ValueError(f"token budget {budget} is too small")
    if n_tokens <= 0:
        return []
    overlap = max(0, min(overlap, budget // 4))
    bounds = sorted(set(b for b in (boundaries or []) if 0 < b < n_tokens))
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + budget, n_tokens)
        if end < n_tokens:
            i = bisect.bisect_right(bounds, end) - 1
            if i >= 0 and bounds[i] > start + (3 * budget) // 4:
                end = bounds[i]
        spans.append((start, end))
        if end >= n_tokens:
            break
        nxt = end - overlap
        # start the next window at a sentence start inside the overlap when there is one
        j = bisect.bisect_left(bounds, end - overlap - overlap // 2)
        if j < len(bounds) and bounds[j] < end - overlap // 2:
            nxt = bounds[j]
        start = max(nxt, start + 1)
    chunks: list[Chunk] = []
    for k, (s, e) in enumerate(spans):
        core_s = 0 if k == 0 else (s + spans[k - 1][1]) // 2
        core_e = n_tokens if k == len(spans) - 1 else (spans[k + 1][0] + e) // 2
        chunks.append(Chunk(k, s, e, max(core_s, s), min(core_e, e)))
    return chunks


def token_boundaries(token_starts: list[int], char_boundaries: list[int]) -> list[int]:
    """Map character offsets where sentences start to the first token at or after each."""
    out = []
    for c in char_boundaries:
        i = bisect.bisect_left(token_starts, c)
        if 0 < i < len(token_starts):
            out.append(i)
    return sorted(set(out))
