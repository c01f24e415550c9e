"""Hybrid relevance: reciprocal-rank fusion of BM25 and cosine, per claim element, on hand-made cases and
on the real offline model."""
from __future__ import annotations

import numpy as np
import pytest

import attn_core as ac
from attn_core.relevance import RRF_K, RelevanceMethod, combine_units, fuse, passage_relevance, rrf_ranks


def test_ranks_share_ties_and_zero_lexical_scores_share_the_last_rank():
    assert rrf_ranks(np.array([0.5, 2.0, 0.5, 1.0])).tolist() == [3, 1, 3, 2]
    assert rrf_ranks(np.array([0.0, 3.0, 0.0, 1.0]), floor_zero=True).tolist() == [3, 1, 3, 2]
    assert rrf_ranks(np.zeros(3), floor_zero=True).tolist() == [1, 1, 1]
    assert rrf_ranks(np.zeros(0)).tolist() == []


def test_fusion_prefers_agreement_and_needs_no_common_scale():
    lexical = np.array([[12.0, 0.0, 3.0, 0.0]])  # BM25: passage 0 by far
    cosine = np.array([[0.61, 0.62, 0.60, 0.10]])  # cosine: 0 and 1 almost tied
    fused = fuse(lexical, cosine)[0]
    assert int(np.argmax(fused)) == 0  # first and second: agreement wins
    assert fused[1] > fused[3]  # meaning alone still beats nothing
    scaled = fuse(lexical * 1000, cosine / 7)[0]  # any monotone rescaling gives the same fusion
    np.testing.assert_allclose(fused, scaled)
    assert fused[0] == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 2))


def test_one_element_answered_well_reaches_the_top():
    # whole claim: passages 0..3 equally mediocre; element 2 is answered only, and strongly, by passage 3
    whole = np.full(4, 1 / (RRF_K + 2))
    e1 = np.array([1 / (RRF_K + 1), 1 / (RRF_K + 2), 1 / (RRF_K + 3), 1 / (RRF_K + 4)]) * 2
    e2 = np.array([1 / (RRF_K + 4), 1 / (RRF_K + 3), 1 / (RRF_K + 2), 1 / (RRF_K + 1)]) * 2
    scores, element = combine_units(np.stack([whole, e1, e2]))
    assert {int(np.argmax(scores))} <= {0, 3} and scores[0] == pytest.approx(scores[3])
    assert element.tolist() == [0, 0, 1, 1]
    assert 0.0 <= scores.min() and scores.max() <= 1.0


def test_baselines_are_the_same_rule_on_one_signal():
    lexical = np.array([[0.0, 5.0, 1.0, 0.5, 0.2]] * 2)
    cosine = np.array([[0.9, 0.1, 0.5, 0.3, 0.2]] * 2)
    assert passage_relevance(lexical, cosine, RelevanceMethod.BM25).order().tolist() == [1, 2, 3, 4, 0]
    assert passage_relevance(lexical, cosine, RelevanceMethod.EMBEDDING).order().tolist() == [0, 2, 3, 4, 1]
    assert passage_relevance(lexical, cosine).order()[0] == 2  # second in both beats first in one, last in other


PATENT = """US 1,234,567 B2
Title: Balloon catheter

DESCRIPTION
[0001] The present invention relates to medical devices.
[0002] FIG. 1 is a side view of the device.
[0003] The balloon is inflated through a lumen of the catheter shaft by a pressurised saline solution.
[0004] A radiopaque marker band is crimped onto the shaft so the physician can see the tip under X-ray.
[0005] Packaging and sterilisation follow the usual hospital practice.
"""


def test_reader_ranks_passages_by_relevance_per_element(minilm, tmp_path):
    reader = ac.Reader(minilm, store=ac.ResultStore(tmp_path / "r.sqlite"))
    doc = ac.document_from_text(PATENT, "p.txt", "en")
    query = ac.make_query("A catheter comprising: a balloon inflated through a lumen; and a marker visible in X-ray")
    query = query.with_elements(["a balloon inflated through a lumen", "a marker visible in X-ray"])
    result = reader.read(doc, query)
    assert result.query.ranking == "relevance"
    top = [doc.text[p.start:p.end] for p in result.read_first(2)]
    assert any("[0003]" in t for t in top) and any("[0004]" in t for t in top)
    by_label = {p.label: p for p in result.passages}
    assert by_label["[0003]"].element == 0 and by_label["[0004]"].element == 1  # the element each answers
    ranks = sorted(p.rank for p in result.passages)
    assert ranks == list(range(1, len(result.passages) + 1))
    by_rank = sorted(result.passages, key=lambda p: p.rank)
    assert all(a.score >= b.score for a, b in zip(by_rank, by_rank[1:]))  # the JSON contract's order
    one = reader.read(doc, query, element=1)
    assert "[0004]" in doc.text[one.read_first(1)[0].start:one.read_first(1)[0].end]


def test_passages_are_embedded_alone_unless_the_server_asks_for_in_window_pooling(monkeypatch):
    from attn_core.pooling import IN_WINDOW_ENV, pools_in_context

    monkeypatch.delenv(IN_WINDOW_ENV, raising=False)
    assert not pools_in_context("")  # the measured default (relevance quality, pooling.py)
    monkeypatch.setenv(IN_WINDOW_ENV, "in-window")
    assert pools_in_context("") and not pools_in_context("passage: ")


def test_topic_relevance_finds_the_passages_about_what_the_document_keeps_returning_to():
    """Without claims, a document's own salient terms stand for its topic: the passages using most of them
    score highest; a heading's words, numbers and one-character terms are not the topic."""
    from attn_core.relevance import topic_relevance
    from attn_core.sections import Section

    passages = [
        "Software Licence Terms",
        "The licensee may copy, modify and distribute the software, provided the source code is included.",
        "Each distribution of the software must include the source code and this licence.",
        "The weather was fine on the day of signing.",
        "Modified versions of the software must carry a notice and make their source code available.",
        "Schedule 2024 2024 2024 2024 2024 2024 2024",
    ]
    text = "\n\n".join(passages)
    spans, at = [], 0
    for p in passages:
        spans.append((at, at + len(p)))
        at += len(p) + 2
    doc = ac.document_from_text(text, "licence.txt")
    sections = [Section.HEADING] + [Section.BODY] * 5
    scores = topic_relevance(doc, spans, sections)
    assert scores is not None and len(scores) == 6
    about = min(scores[1], scores[2], scores[4])
    assert scores[3] < about  # the passage off the topic
    assert scores[5] < about  # "2024" seven times is not what the document is about
    none = ac.document_from_text("1 2 3", "n.txt")
    assert topic_relevance(none, [(0, 5)], [Section.BODY]) is None
