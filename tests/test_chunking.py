from __future__ import annotations

import pytest

from attn_core.chunking import plan_chunks, token_boundaries


@pytest.mark.parametrize("n,budget,overlap", [(1, 30, 8), (30, 30, 8), (31, 30, 8), (1000, 62, 16), (5000, 254, 32)])
def test_chunks_cover_everything_within_budget(n, budget, overlap):
    chunks = plan_chunks(n, budget, overlap)
    assert chunks[0].start == 0 and chunks[-1].end == n
    assert all(c.size <= budget for c in chunks)
    # cores partition the tokens exactly, in order
    assert chunks[0].core_start == 0 and chunks[-1].core_end == n
    for a, b in zip(chunks, chunks[1:]):
        assert a.core_end == b.core_start
        assert b.start < a.end  # neighbours overlap
        assert a.end - b.start <= overlap + overlap // 2 + 1
    for c in chunks:
        assert c.start <= c.core_start <= c.core_end <= c.end


def test_core_gives_each_token_its_most_context():
    chunks = plan_chunks(200, 50, 10)
    for t in range(200):
        owner = next(c for c in chunks if c.core_start <= t < c.core_end)
        ctx = min(t - owner.start, owner.end - 1 - t)
        for c in chunks:
            if c.start <= t < c.end:
                assert min(t - c.start, c.end - 1 - t) <= ctx + 1


def test_prefers_sentence_boundaries():
    bounds = [45, 95, 140, 190]
    chunks = plan_chunks(250, 50, 8, bounds)
    assert chunks[0].end == 45  # cut at the sentence start in the last quarter, not mid-sentence at 50
    assert all(c.size <= 50 for c in chunks)


def test_token_boundaries_maps_chars_to_tokens():
    starts = [0, 4, 9, 15, 20]
    assert token_boundaries(starts, [9, 16, 0, 99]) == [2, 4]


def test_tiny_budget_rejected():
    with pytest.raises(ValueError):
        plan_chunks(10, 4, 0)
