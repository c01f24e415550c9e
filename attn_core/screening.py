"""Batch screening: one row per analysed document, with a document score comparable across documents.

No Streamlit here; the Batch page shows `screening_table` in a sortable grid.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .library import Review
from .render import passage_preview
from .results import AnalysisResult

TOP_PASSAGES = 3
COLUMNS = ["document", "language", "chars", "chunks", "focus", "top passages", "status", "note", "unk_rate",
           "sha256"]


def focus_score(result: AnalysisResult, top_k: int = TOP_PASSAGES) -> float:
    """How strongly the document's attention concentrates on its read-first passages ("focus").

    Word and passage scores are percentiles *within* a document, so comparing them across documents is
    meaningless: every document has a 100th-percentile word. Raw token attention is comparable: the
    engine renormalises each chunk's scores to sum to 1 and multiplies them by the chunk's length
    (`scoring.stitch`), so a token's raw score is "times an average token's share" (1.0 = average),
    whatever the document's length or number of chunks.

        focus = mean raw score of the tokens inside the top-`top_k` ranked passages
                / mean raw score of all the document's tokens

    i.e. the attention lift of the passages the reviewer is told to read first. 1.0 means the model
    spreads its attention evenly (no passage stands out, or the whole document is the top passages);
    2.0 means an average token in the read-first passages gets twice the attention of an average token
    of the document. Returns NaN when the document has no tokens or passages.
    """
    tokens = result.tokens
    passages = result.read_first(top_k)
    if not tokens or not passages:
        return float("nan")
    starts = np.fromiter((t.start for t in tokens), dtype=np.int64, count=len(tokens))
    raw = np.fromiter((t.score for t in tokens), dtype=np.float64, count=len(tokens))
    overall = raw.mean()
    if overall <= 0:
        return float("nan")
    inside = np.zeros(len(tokens), dtype=bool)
    for p in passages:
        lo, hi = np.searchsorted(starts, p.start), np.searchsorted(starts, p.end)
        inside[lo:hi] = True
    if not inside.any():
        return float("nan")
    return float(raw[inside].mean() / overall)


def _reviews_by_sha(reviews: Mapping[str, Review] | Iterable[Review] | None) -> dict[str, Review]:
    if reviews is None:
        return {}
    if isinstance(reviews, Mapping):
        return dict(reviews)
    return {r.sha256: r for r in reviews}


def screening_table(results: Sequence[AnalysisResult],
                    reviews: Mapping[str, Review] | Iterable[Review] | None = None,
                    top_k: int = TOP_PASSAGES, preview_chars: int = 120) -> pd.DataFrame:
    """One row per document, highest focus first.

    Columns: document (file name), language, chars, chunks, focus (see `focus_score`), top passages
    (previews of the top-`top_k` passages, "#1 … ⏎ #2 …"), status and note (the reviewer's mark;
    "unread" and "" when there is none), unk_rate (share of [UNK] tokens: a high rate means the model does
    not fit the language and its focus is unreliable), sha256 (to open the document). Text is raw, not
    escaped: escape it where it is rendered as HTML.
    """
    marks = _reviews_by_sha(reviews)
    rows = []
    for r in results:
        d = r.document
        mark = marks.get(d.sha256)
        previews = [f"#{p.rank} {passage_preview(r, p, preview_chars)}" for p in r.read_first(top_k)]
        rows.append({
            "document": d.name, "language": d.language, "chars": d.chars, "chunks": len(r.chunks),
            "focus": round(focus_score(r, top_k), 4), "top passages": "\n".join(previews),
            "status": mark.status if mark else "unread", "note": mark.note if mark else "",
            "unk_rate": round(float(r.unk_rate), 4), "sha256": d.sha256,
        })
    df = pd.DataFrame(rows, columns=COLUMNS)
    if len(df):
        df = df.sort_values("focus", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    return df
