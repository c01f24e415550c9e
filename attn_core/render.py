"""Highlighted HTML: every character of the document escaped, scores as background gradients."""
from __future__ import annotations

import html
import re
from typing import Sequence

from .results import AnalysisResult, Passage, WordScore
from .segment import display_width

HIGHLIGHT_RGB = (255, 128, 0)  # amber: readable under black text at any alpha
MIN_ALPHA, MAX_ALPHA = 0.10, 0.85
DEFAULT_TOP_PERCENT = 10.0  # share of words shaded: enough to scan, few enough that "the" rarely shows

STYLE = """
.chumoku-doc { font-family: "Noto Sans CJK JP", "Noto Sans JP", "Hiragino Sans", "Yu Gothic", system-ui, sans-serif;
  line-height: 1.75; white-space: pre-wrap; word-break: break-word; font-size: 1rem; color: #1f2328; }
.chumoku-doc .passage { padding: 2px 6px; margin: 0 0 2px 0; border-left: 3px solid transparent; scroll-margin-top: 5rem; }
.chumoku-doc .passage.top { border-left-color: #d9480f; }
.chumoku-doc .passage:target { outline: 2px solid #1c7ed6; background: #e7f5ff; }
.chumoku-doc .plabel { color: #868e96; font-size: 0.8em; margin-right: 0.4em; user-select: none; }
.attn-hl { border-radius: 3px; padding: 0 1px; }
.chumoku-doc mark { background: #74c0fc; outline: 1px solid #1c7ed6; }
.chumoku-legend { display: flex; align-items: center; gap: 0.5em; font-size: 0.85em; color: #495057; }
.chumoku-legend .bar { width: 180px; height: 12px; border-radius: 3px;
  background: linear-gradient(to right, rgba(255,128,0,0.10), rgba(255,128,0,0.85)); }
.chumoku-minimap { display: flex; height: 18px; border: 1px solid #dee2e6; border-radius: 3px; overflow: hidden; }
.chumoku-minimap a { flex: 1 1 0; display: block; }
.chumoku-readfirst { margin: 0; padding-left: 1.6em; }
.chumoku-readfirst li { margin-bottom: 0.35em; }
.chumoku-readfirst a, .chumoku-find a { color: inherit; text-decoration: none; }
.chumoku-readfirst a:hover, .chumoku-find a:hover { text-decoration: underline; color: #1c7ed6; }
.chumoku-readfirst .score { color: #d9480f; font-variant-numeric: tabular-nums; margin-right: 0.4em; }
.chumoku-readfirst .tag { display: block; color: #5c7cfa; font-size: 0.8em; }
"""

STYLE_TAG = f"<style>{' '.join(STYLE.split())}</style>"


def score_color(score: float, top_percent: float = 100.0) -> str | None:
    """Background for a word with percentile `score`; None below the shown top-`top_percent`."""
    cutoff = 1.0 - top_percent / 100.0
    if score < cutoff or top_percent <= 0:
        return None
    span = max(1e-9, 1.0 - cutoff)
    t = (score - cutoff) / span
    alpha = MIN_ALPHA + (MAX_ALPHA - MIN_ALPHA) * t
    r, g, b = HIGHLIGHT_RGB
    return f"rgba({r},{g},{b},{alpha:.2f})"


def _find_ranges(text: str, needle: str | None) -> list[tuple[int, int]]:
    if not needle or not needle.strip():
        return []
    return [m.span() for m in re.finditer(re.escape(needle.strip()), text, flags=re.IGNORECASE)]


def _marked(text: str, start: int, end: int, finds: Sequence[tuple[int, int]]) -> str:
    """Escape text[start:end], wrapping find matches in <mark>."""
    out, pos = [], start
    for fs, fe in finds:
        if fe <= start or fs >= end:
            continue
        fs, fe = max(fs, start), min(fe, end)
        if fs > pos:
            out.append(html.escape(text[pos:fs]))
        out.append(f"<mark>{html.escape(text[fs:fe])}</mark>")
        pos = fe
    if pos < end:
        out.append(html.escape(text[pos:end]))
    return "".join(out)


def _segment_html(text: str, start: int, end: int, words: Sequence[WordScore], top_percent: float,
                  finds: Sequence[tuple[int, int]]) -> str:
    out, pos = [], start
    for w in words:
        color = score_color(w.score, top_percent)
        if color is None:
            continue
        if w.start > pos:
            out.append(_marked(text, pos, w.start, finds))
        out.append(f'<span class="attn-hl" style="background-color:{color}" '
                   f'title="score {w.score:.2f}">{_marked(text, w.start, w.end, finds)}</span>')
        pos = w.end
    if pos < end:
        out.append(_marked(text, pos, end, finds))
    return "".join(out)


def render_document_html(result: AnalysisResult, *, top_percent: float = DEFAULT_TOP_PERCENT, find: str | None = None,
                         top_passages: int = 5) -> str:
    """The whole document as one escaped fragment; each passage is a <div id="passage-N"> link target."""
    text = result.document.text
    finds = _find_ranges(text, find)
    words = result.words
    parts = ['<div class="chumoku-doc">']
    wi = 0
    pos = 0
    passages = result.passages
    for i, p in enumerate(passages):
        if p.start > pos and text[pos:p.start].strip():
            seg = [w for w in words if pos <= w.start < p.start]
            parts.append(f'<div class="gap">{_segment_html(text, pos, p.start, seg, top_percent, finds)}</div>')
        while wi < len(words) and words[wi].start < p.start:
            wi += 1
        wj = wi
        while wj < len(words) and words[wj].start < p.end:
            wj += 1
        cls = "passage top" if p.rank <= top_passages else "passage"
        label = f'<span class="plabel" title="read-first rank {p.rank} of {len(passages)}">#{p.rank}</span>'
        body = _segment_html(text, p.start, p.end, words[wi:wj], top_percent, finds)
        parts.append(f'<div class="{cls}" id="passage-{i}" data-rank="{p.rank}">{label}{body}</div>')
        wi, pos = wj, p.end
    if pos < len(text) and text[pos:].strip():
        seg = [w for w in words if w.start >= pos]
        parts.append(f'<div class="gap">{_segment_html(text, pos, len(text), seg, top_percent, finds)}</div>')
    parts.append("</div>")
    return "".join(parts)


def legend_html(top_percent: float = DEFAULT_TOP_PERCENT) -> str:
    return ('<div class="chumoku-legend"><span>lower</span><span class="bar"></span><span>higher attention</span>'
            f'<span>· shading the top {top_percent:g}% of content words (not stop words, particles or numbers)'
            '</span><span>· #N: the passage\'s place in the read-first order</span></div>')


def minimap_html(result: AnalysisResult, bins: int = 120) -> str:
    """A heat strip along the document: each cell is the hottest passage in that stretch, linked to it."""
    n = max(1, len(result.document.text))
    passages = result.passages
    if not passages:
        return '<div class="chumoku-minimap"></div>'
    cells = []
    bins = max(1, min(bins, len(passages)))
    pi = 0
    for b in range(bins):
        lo, hi = b * n / bins, (b + 1) * n / bins
        best, best_i = None, None
        while pi < len(passages) and passages[pi].end <= lo:
            pi += 1
        j = pi
        while j < len(passages) and passages[j].start < hi:
            if best is None or passages[j].score > best.score:
                best, best_i = passages[j], j
            j += 1
        if best is None:
            cells.append('<a style="background:#f8f9fa"></a>')
            continue
        pct = 1.0 - (best.rank - 1) / max(1, len(passages) - 1)
        color = score_color(pct) or "#f8f9fa"
        cells.append(f'<a href="#passage-{best_i}" style="background:{color}" '
                     f'title="passage #{best.rank}"></a>')
    return f'<div class="chumoku-minimap">{"".join(cells)}</div>'


SECTION_NAMES = {"independent_claim": "independent claim", "dependent_claim": "dependent claim",
                 "summary": "summary", "abstract": "abstract", "title": "title", "meta": "bibliographic data",
                 "drawings": "drawing list", "legal": "legal boilerplate", "background": "background",
                 "field": "technical field", "cross_reference": "cross-reference", "heading": "heading",
                 "supplementary": "supplementary provisions"}


def passage_preview(result: AnalysisResult, p: Passage, chars: int = 160) -> str:
    """Plain (unescaped) one-line preview of a passage, at most `chars` columns wide.

    Columns, not characters: a Japanese character is as wide as two Latin ones, so 120 Japanese characters
    wrapped to about ten lines in the read-first column where 120 English ones take four."""
    s = " ".join(result.document.text[p.start:p.end].split())
    if display_width(s) <= chars:
        return s
    used, cut = 0, 0
    for cut, ch in enumerate(s):
        used += display_width(ch)
        if used > chars - 1:
            break
    return s[:cut] + "…"


def read_first_html(result: AnalysisResult, k: int = 10, chars: int = 120) -> str:
    """The top-k passages, best first; each whole item links to its `#passage-N` in the document."""
    index = {id(p): i for i, p in enumerate(result.passages)}
    items = []
    elements = result.query.elements if result.query is not None else ()
    for p in result.read_first(k):
        where = f" · p.{p.page}" if p.page else ""
        preview = passage_preview(result, p, chars)
        label = f"{html.escape(p.label)} " if p.label and not preview.startswith(p.label) else ""
        tags = []
        if p.element is not None and len(elements) > 1 and p.element < len(elements):
            tags.append(f'answers element {p.element + 1}: {elements[p.element][:40]}')
        if p.section and p.section not in ("detailed", "body"):
            tags.append(SECTION_NAMES.get(p.section, p.section))
        tag = f'<span class="tag">{html.escape(" · ".join(tags))}</span>' if tags else ""
        items.append(f'<li data-rank="{p.rank}"><a href="#passage-{index[id(p)]}"><span class="score">{p.score:.2f}</span>'
                     f'{label}{html.escape(preview)}{where}{tag}</a></li>')
    return f'<ol class="chumoku-readfirst">{"".join(items)}</ol>'


# ---- helpers for showing the HTML inside a Streamlit page ---------------------------------------------
_MD_PUNCT = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")


def escape_markdown(text: str) -> str:
    """Backslash-escape every ASCII punctuation character, so a file name shown through Markdown
    (st.error, st.subheader, progress text) is literal text: no links, emphasis, HTML, math or directives."""
    return _MD_PUNCT.sub(r"\\\1", " ".join(str(text).split()))


def find_hits(result: AnalysisResult, needle: str | None) -> list[tuple[int, int]]:
    """(passage index, matches in it) for every passage containing `needle` (case-insensitive), in text order."""
    ranges = _find_ranges(result.document.text, needle)
    out: list[tuple[int, int]] = []
    pi, passages = 0, result.passages
    for fs, _fe in ranges:
        while pi < len(passages) and passages[pi].end <= fs:
            pi += 1
        if pi < len(passages) and passages[pi].start <= fs:
            if out and out[-1][0] == pi:
                out[-1] = (pi, out[-1][1] + 1)
            else:
                out.append((pi, 1))
    return out


def find_links_html(result: AnalysisResult, hits: Sequence[tuple[int, int]], k: int = 30) -> str:
    """Links to the first `k` passages holding find matches."""
    ps = result.passages
    links = [f'<a href="#passage-{i}" title="{n} match{"es" if n > 1 else ""}">'
             f'#{ps[i].rank}{" " + html.escape(ps[i].label) if ps[i].label else ""}</a>' for i, n in hits[:k]]
    more = f" … and {len(hits) - k} more" if len(hits) > k else ""
    return f'<div class="chumoku-find">{" · ".join(links)}{more}</div>'


_UNSAFE_FILENAME = re.compile(r"[^\w.\-]+", re.UNICODE)


def download_name(document_name: str, suffix: str) -> str:
    """A safe download file name from a document name: `stem.chumoku.<suffix>`, no path, no odd characters."""
    base = re.split(r"[\\/]", document_name or "")[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.strip(".") else base
    stem = _UNSAFE_FILENAME.sub("_", stem).strip("._-")[:80] or "document"
    return f"{stem}.chumoku.{suffix.lstrip('.')}"
