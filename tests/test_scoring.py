from __future__ import annotations

import numpy as np

from attn_core.chunking import Chunk
from attn_core.results import WordScore
from attn_core.scoring import passage_score, percentile_ranks, rank_passages, stitch, word_raw_scores


def test_percentiles_spread_flat_scores_and_share_ties():
    p = percentile_ranks(np.array([0.10, 0.11, 0.10, 0.12]))
    assert p.tolist() == [1 / 6, 2 / 3, 1 / 6, 1.0]
    assert percentile_ranks(np.array([5.0])).tolist() == [1.0]


def test_word_takes_max_of_its_tokens():
    words = [(0, 7), (8, 10)]
    tokens = [(0, 3), (3, 7), (8, 10)]
    raw = word_raw_scores(words, tokens, np.array([0.2, 0.5, 0.1]))
    assert raw.tolist() == [0.5, 0.1]


def test_stitch_takes_core_ranges_and_rescales():
    chunks = [Chunk(0, 0, 4, 0, 3), Chunk(1, 2, 6, 3, 6)]
    s, owner = stitch(6, chunks, [np.array([0.25] * 4), np.array([0.1, 0.2, 0.3, 0.4])])
    assert owner.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(s, [1.0, 1.0, 1.0, 0.8, 1.2, 1.6])


def test_passage_score_neither_rewards_length_nor_shortness():
    mu = 0.5
    hot_short = passage_score(np.array([1.0]), mu)
    hot_long = passage_score(np.array([0.9] * 40), mu)
    avg_long = passage_score(np.array([0.5] * 200), mu)
    assert hot_long > hot_short > mu  # one hot word is weak evidence; consistently hot text wins
    assert abs(avg_long - mu) < 1e-9  # length alone adds nothing


def test_rank_passages_orders_by_score():
    words = [WordScore("a", 0, 1, 0.1, 0), WordScore("b", 2, 3, 0.9, 0), WordScore("c", 4, 5, 0.95, 0)]
    ps = rank_passages([(0, 1, None, None), (2, 5, "[0001]", 2)], words)
    assert [p.rank for p in ps] == [2, 1]
    assert ps[1].label == "[0001]" and ps[1].page == 2
