"""Downloads and CLI outputs: JSON (the engine contract), CSV (one row per word), a self-contained HTML report."""
from __future__ import annotations

import csv
import html
import io
import json

from .render import DEFAULT_TOP_PERCENT, STYLE, legend_html, minimap_html, read_first_html, render_document_html
from .results import AnalysisResult


def to_json(result: AnalysisResult) -> str:
    return json.dumps(result.to_json(), ensure_ascii=False)


def to_csv(result: AnalysisResult) -> str:
    """One row per word, with the rank of the passage it sits in."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["document", "word", "start", "end", "score", "raw", "passage_rank"])
    ps = result.passages
    pi = 0
    for word in result.words:
        while pi < len(ps) and ps[pi].end <= word.start:
            pi += 1
        rank = ps[pi].rank if pi < len(ps) and ps[pi].start <= word.start else ""
        w.writerow([result.document.name, word.text, word.start, word.end, f"{word.score:.6f}",
                    f"{word.raw:.6g}", rank])
    return buf.getvalue()


def report_html(result: AnalysisResult, top_percent: float = DEFAULT_TOP_PERCENT) -> str:
    """One file, no external URL: opens offline and can be mailed to a colleague."""
    d, m = result.document, result.model
    title = html.escape(d.name)
    meta = (f"{html.escape(d.language)} · {d.chars:,} characters · model {html.escape(m.id)} · "
            f"method {html.escape(result.settings.method)} · {len(result.chunks)} chunks · "
            f"[UNK] rate {result.unk_rate:.1%}")
    if result.label is not None:
        meta += f" · predicted {html.escape(result.label)} ({result.probability:.0%})"
    if m.attribution:
        meta += f"<br><small>{html.escape(m.attribution)}</small>"
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
        f"<title>Chumoku · {title}</title><style>{STYLE}"
        "body{max-width:60rem;margin:2rem auto;padding:0 1rem;font-family:system-ui,sans-serif}"
        ".nav{position:sticky;top:0;background:#fff;padding:.5rem 0;z-index:1}</style></head><body>"
        f"<h1>{title}</h1><p>{meta}</p>"
        f"<div class=\"nav\">{minimap_html(result)}{legend_html(top_percent)}</div>"
        f"<h2>Read first</h2>{read_first_html(result, 10)}<h2>Document</h2>"
        f"{render_document_html(result, top_percent=top_percent)}</body></html>"
    )
