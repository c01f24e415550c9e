"""Altair charts of one chunk's attention (the Explorer), and their PNG/SVG export. No Streamlit here.

An exported chart carries the same audit trail as every other export (export.Audit): as a small grey caption
under its title, so a figure pasted into a report still says which model, layer and head drew it, and as
metadata (a PNG text chunk, an SVG <metadata> element) for tools.

Every chart is built from an `analysis.ChunkAttention` (the full [layers, heads, T, T] attention of one
chunk). Token labels carry their position ("12 · pump") so repeated tokens stay distinct, and every
label and tooltip is markup-free (`chart_text`): a document can contain markup, and labels end up in tooltips
and SVG.
"""
from __future__ import annotations

import html
import json
import struct
import textwrap
import threading
import zlib
from pathlib import Path
from typing import Sequence

import altair as alt
import numpy as np
import pandas as pd

from .analysis import ChunkAttention
from .export import Audit

CJK_FONT_DIRS = (Path("/usr/share/fonts/opentype/noto"), Path("/usr/share/fonts/truetype/noto"),
                 Path("/usr/share/fonts/opentype/noto-cjk"))
# CSS-style family list: the CJK font first (it has Latin glyphs too), then whatever the system has.
EXPORT_FONT = '"Noto Sans CJK JP", "Noto Sans JP", "Hiragino Sans", "Yu Gothic", sans-serif'
HEATMAP_MAX_TOKENS = 64  # default window: 64² cells stay readable and light in a browser
SCHEME = "oranges"
# Pixels a chart may take across the page's main column (wide layout, sidebar open, a 1280–1400 px screen),
# axis labels and legend included. Wider, and Streamlit clips the right-hand side.
PAGE_WIDTH = 860
HEATMAP_DECORATION = 230  # px the heatmap's row labels, axis title and legend take beside its cells
SCORES_DECORATION = 100  # px the score chart's y axis and padding take beside its bars
# Charts are sized here ("pad"): Streamlit's default "fit" squeezes a fixed-size chart into its box, so a
# 14-px row became ~11 px and its theme then dropped every second label that no longer fitted.
PAD = alt.AutoSizeParams(type="pad", contains="padding")


# ----------------------------------------------------------------------------------------------- helpers
def chart_text(token: str) -> str:
    """A token as chart text: angle brackets become ‹ › so no label can ever form markup, whatever renders it.

    Vega draws labels and tooltips as text, so an HTML-escaped label showed "&lt;s&gt;" to the reader (e5's
    first token is <s>); without angle brackets there is nothing to escape, and "<b>" still reads as ‹b›."""
    return token.replace("<", "‹").replace(">", "›")


def token_labels(ca: ChunkAttention) -> list[str]:
    """'position · token' (chart_text): duplicates stay distinct and markup in a token stays text."""
    return [f"{i} · {chart_text(t)}" for i, t in enumerate(ca.tokens)]


def _window(n: int, window: tuple[int, int] | None) -> tuple[int, int]:
    """Clamp a [start, stop) token window to the chunk."""
    if window is None:
        return 0, n
    lo, hi = int(window[0]), int(window[1])
    lo = max(0, min(lo, n - 1)) if n else 0
    hi = max(lo + 1, min(hi, n))
    return lo, hi


def _head_matrix(ca: ChunkAttention, layer: int, head: int | str) -> np.ndarray:
    """[T, T] attention of one layer and head ("mean"/"max" reduce over heads)."""
    a = ca.attentions[int(layer)]
    if head == "mean":
        return a.mean(0)
    if head == "max":
        return a.max(0)
    return a[int(head)]


# ------------------------------------------------------------------------------------------------ charts
def heatmap_data(ca: ChunkAttention, layer: int, head: int | str = "mean",
                 window: tuple[int, int] | None = None) -> pd.DataFrame:
    """Long-form token×token weights of one layer/head inside a token window (queries and keys both)."""
    lo, hi = _window(len(ca.tokens), window)
    a = _head_matrix(ca, layer, head)[lo:hi, lo:hi]
    labels = token_labels(ca)[lo:hi]
    n = hi - lo
    q, k = np.divmod(np.arange(n * n), n)
    return pd.DataFrame({
        "q": q + lo, "k": k + lo,
        "query": np.asarray(labels, dtype=object)[q], "key": np.asarray(labels, dtype=object)[k],
        "weight": a.reshape(-1).astype(np.float64),
    })


def heatmap(ca: ChunkAttention, layer: int, head: int | str = "mean", window: tuple[int, int] | None = None,
            cell: int | None = None) -> alt.Chart:
    """Token×token heatmap (rows: queries, columns: keys) of one layer and head, within `window`.

    The full chunk (up to 512 tokens) works but gets dense; pass a window such as (0, 64) to read labels.
    """
    df = heatmap_data(ca, layer, head, window)
    order = list(dict.fromkeys(df["key"]))
    n = len(order)
    cell = cell or max(3, min(14, (PAGE_WIDTH - HEATMAP_DECORATION) // max(1, n)))
    show_labels = cell >= 8
    # labelOverlap=False: every token gets its label (Streamlit's theme turns overlap thinning on)
    axis = alt.Axis(labels=show_labels, ticks=show_labels, labelLimit=120, labelFontSize=min(11, cell - 1),
                    labelOverlap=False, labelSeparation=0)
    head_txt = head if isinstance(head, str) else f"head {head}"
    return alt.Chart(df, title=f"Layer {layer} · {head_txt}: who attends to whom").mark_rect().encode(
        x=alt.X("key:N", sort=order, title="key (attended to)", axis=axis),
        y=alt.Y("query:N", sort=order, title="query (attending)", axis=axis),
        color=alt.Color("weight:Q", scale=alt.Scale(scheme=SCHEME), title="weight"),
        tooltip=[alt.Tooltip("query:N", title="query"), alt.Tooltip("key:N", title="key"),
                 alt.Tooltip("weight:Q", format=".4f")],
    ).properties(width=cell * n, height=cell * n, autosize=PAD)


def _pool(a: np.ndarray, bins: int) -> np.ndarray:
    """Block-mean a [..., T, T] array down to [..., b, b] with b = min(bins, T)."""
    t = a.shape[-1]
    if t <= bins:
        return a
    edges = np.linspace(0, t, bins + 1).astype(int)[:-1]
    counts = np.diff(np.r_[edges, t]).astype(a.dtype)
    s = np.add.reduceat(np.add.reduceat(a, edges, axis=-1), edges, axis=-2)
    return s / counts[:, None] / counts[None, :]


def model_view_data(ca: ChunkAttention, bins: int = 16) -> pd.DataFrame:
    """Every layer and head, pooled to at most bins×bins cells, each panel scaled to its own maximum."""
    att = ca.attentions.astype(np.float64)
    pooled = _pool(att, bins)  # [L, H, b, b]
    peak = pooled.max(axis=(-1, -2), keepdims=True)
    rel = pooled / np.where(peak > 0, peak, 1.0)
    L, H, b, _ = pooled.shape
    t = att.shape[-1]
    edges = np.linspace(0, t, b + 1).astype(int)
    li, hi, qi, ki = np.meshgrid(np.arange(L), np.arange(H), np.arange(b), np.arange(b), indexing="ij")
    span = [f"{edges[i]}–{edges[i + 1] - 1}" if edges[i + 1] - 1 > edges[i] else f"{edges[i]}" for i in range(b)]
    return pd.DataFrame({
        "layer": li.ravel(), "head": hi.ravel(), "qb": qi.ravel(), "kb": ki.ravel(),
        "queries": np.asarray(span, dtype=object)[qi.ravel()], "keys": np.asarray(span, dtype=object)[ki.ravel()],
        "weight": pooled.ravel(), "relative": rel.ravel(),
    })


def model_view(ca: ChunkAttention, bins: int = 16, size: int = 56) -> alt.FacetChart:
    """Small multiples like BertViz's model view: one thumbnail per layer (rows) and head (columns)."""
    df = model_view_data(ca, bins)
    base = alt.Chart(df).mark_rect().encode(
        x=alt.X("kb:O", axis=None), y=alt.Y("qb:O", axis=None),
        color=alt.Color("relative:Q", scale=alt.Scale(scheme=SCHEME, domain=[0, 1]),
                        title="share of panel max"),
        tooltip=["layer:O", "head:O", alt.Tooltip("queries:N", title="query tokens"),
                 alt.Tooltip("keys:N", title="key tokens"), alt.Tooltip("weight:Q", format=".4f")],
    ).properties(width=size, height=size)
    return base.facet(row=alt.Row("layer:O", title="layer"), column=alt.Column("head:O", title="head"),
                      title="Model view: every layer × head (queries ↓, keys →)"
                      ).configure_facet(spacing=4).configure_view(stroke="#dee2e6")


def token_scores_data(ca: ChunkAttention, layer: int | str = "last", head: int | str = "mean",
                      causal: bool = False, window: tuple[int, int] | None = None) -> pd.DataFrame:
    """Per content token: the engine's [CLS]-row reduction next to its column-mean ("received") one."""
    cls = ca.reduce("cls", layer, head, causal)
    col = ca.reduce("received", layer, head, causal)
    labels = token_labels(ca)
    lo, hi = _window(len(ca.tokens), window)
    first = "last token row" if causal else f"{chart_text(ca.tokens[0])} row"  # the row the "cls" method reads
    rows = []
    for i in range(lo, hi):
        if ca.special[i]:
            continue
        rows.append({"position": i, "token": labels[i], "measure": first, "score": float(cls[i])})
        rows.append({"position": i, "token": labels[i], "measure": "column mean", "score": float(col[i])})
    return pd.DataFrame(rows, columns=["position", "token", "measure", "score"])


def token_scores_chart(ca: ChunkAttention, layer: int | str = "last", head: int | str = "mean",
                       causal: bool = False, window: tuple[int, int] | None = None) -> alt.Chart:
    """Grouped bars per token: what [CLS] attends to vs. what all queries attend to on average."""
    df = token_scores_data(ca, layer, head, causal, window)
    order = list(dict.fromkeys(df["token"]))
    # A fixed width in pixels, not a step per bar: two bars per token at a readable step made a 64-token
    # window ~3,500 px wide, and Streamlit clipped everything past the page's edge.
    width = max(120, min(PAGE_WIDTH - SCORES_DECORATION, 24 * len(order)))
    band = width / max(1, len(order))
    axis = alt.Axis(labelAngle=-60 if band >= 18 else -90, labelLimit=100, labels=band >= 8,
                    labelFontSize=min(11, max(6, int(band) - 1)), labelOverlap=False, labelSeparation=0)
    return alt.Chart(df, title=f"Reduced scores per token (layer {layer}, head {head})").mark_bar().encode(
        x=alt.X("token:N", sort=order, title=None, axis=axis),
        xOffset=alt.XOffset("measure:N"),
        y=alt.Y("score:Q", title="share of the chunk's attention"),
        color=alt.Color("measure:N", title=None, legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip("token:N", title="token"), alt.Tooltip("measure:N", title="measure"),
                 alt.Tooltip("score:Q", title="score", format=".4f")],
    ).properties(width=width, height=260, autosize=PAD)


def token_table(ca: ChunkAttention, method: str = "received", layer: int | str = "last",
                head: int | str = "mean", causal: bool = False) -> pd.DataFrame:
    """Content tokens ranked by the engine's reduction: position, token (raw text), rank, weight, relative.

    `weight` is the token's share of the chunk's attention (content tokens sum to 1); `relative` is
    weight / max weight (1.0 = the chunk's strongest token). Rows are in rank order (1 = most attended).
    """
    s = ca.reduce(method, layer, head, causal)
    idx = [i for i, sp in enumerate(ca.special) if not sp]
    w = np.asarray([float(s[i]) for i in idx], dtype=np.float64)
    total = w.sum()
    w = w / total if total > 0 else w
    peak = w.max() if len(w) else 0.0
    df = pd.DataFrame({"position": idx, "token": [ca.tokens[i] for i in idx], "weight": w,
                       "relative": w / peak if peak > 0 else w})
    df["rank"] = df["weight"].rank(ascending=False, method="min").astype(int)
    return df.sort_values(["rank", "position"]).reset_index(drop=True)[
        ["rank", "position", "token", "weight", "relative"]]


def styled_token_table(df: pd.DataFrame) -> "pd.io.formats.style.Styler":
    """The token table shaded by weight (Styler.background_gradient). Streamlit's grid draws the formatted text
    as text, so an HTML-escaped token showed "&amp;" and "&lt;b&gt;"; tokens go through `chart_text` instead
    (no angle brackets, nothing to escape)."""
    return (df.style.background_gradient(cmap="Oranges", subset=["weight", "relative"], vmin=0.0)
            .format({"weight": "{:.4f}", "relative": "{:.2f}"})
            .format(chart_text, subset=["token"])
            .hide(axis="index"))


# ------------------------------------------------------------------------------------------------ export
_font_lock = threading.Lock()
_fonts_registered: bool | None = None


def register_cjk_fonts(dirs: Sequence[Path] = CJK_FONT_DIRS) -> bool:
    """Make the CJK fonts known to vl-convert (once per process). False if no font folder exists.

    vl-convert also reads the system font folders, so this mostly matters for fonts installed in
    non-standard places; a missing folder is not an error (labels fall back to the default font).
    """
    global _fonts_registered
    with _font_lock:
        if _fonts_registered is None:
            import vl_convert as vlc

            found = False
            for d in dirs:
                if Path(d).is_dir():
                    try:
                        vlc.register_font_directory(str(d))
                        found = True
                    except Exception:  # noqa: BLE001 - a broken font folder must not break exports
                        pass
            _fonts_registered = found
        return _fonts_registered


def audit_caption(audit: Audit, width: int = 100) -> list[str]:
    """The audit trail as short caption lines (every field that applies, labelled), broken between fields so a
    label never parts from its value; a field longer than a line is wrapped on its own."""
    lines: list[str] = []
    for field in (f"{label}: {value}" for label, value in audit.rows() if value):
        if lines and len(lines[-1]) + 3 + len(field) <= width:
            lines[-1] += " · " + field
        else:
            lines.extend(textwrap.wrap(field, width) or [field])
    return lines or [""]


def chart_spec(chart: alt.TopLevelMixin, audit: Audit | None = None) -> dict:
    """The chart's Vega-Lite spec with data inlined (no row limit), the CJK font as default and, with an
    audit, its caption under the chart's title."""
    with alt.data_transformers.enable("default", max_rows=None):
        spec = chart.to_dict()
    config = spec.setdefault("config", {})
    config.setdefault("font", EXPORT_FONT)
    config.setdefault("background", "white")
    if audit is not None:
        title = spec.get("title") or ""
        title = dict(title) if isinstance(title, dict) else {"text": title}
        title.update(subtitle=audit_caption(audit), subtitleColor="#666666", subtitleFontSize=9, anchor="start")
        spec["title"] = title
    return json.loads(json.dumps(spec))  # plain JSON types only


def _png_text_chunk(keyword: str, text: str) -> bytes:
    """A PNG iTXt chunk (UTF-8 text: a Japanese file name or reviewer stays readable)."""
    data = keyword.encode("latin-1") + b"\0\0\0" + b"\0" + b"\0" + text.encode("utf-8")
    return struct.pack(">I", len(data)) + b"iTXt" + data + struct.pack(">I", zlib.crc32(b"iTXt" + data))


def chart_png(chart: alt.TopLevelMixin, scale: float = 2.0, audit: Audit | None = None) -> bytes:
    """PNG bytes rendered offline by vl-convert (Japanese labels need the Noto CJK fonts); with an audit, its
    caption drawn and the trail kept as a text chunk ("chumoku:audit", JSON) after the header."""
    import vl_convert as vlc

    register_cjk_fonts()
    png = vlc.vegalite_to_png(chart_spec(chart, audit), scale=scale)
    if audit is None:
        return png
    header_end = 8 + 8 + 13 + 4  # signature, then the IHDR chunk (length, type, 13 bytes, CRC)
    chunk = _png_text_chunk("chumoku:audit", json.dumps(audit.to_json(), ensure_ascii=False))
    return png[:header_end] + chunk + png[header_end:]


def chart_svg(chart: alt.TopLevelMixin, audit: Audit | None = None) -> bytes:
    """SVG bytes (UTF-8) rendered offline by vl-convert; text stays text, so labels remain searchable. With
    an audit: its caption drawn, and the trail (JSON, escaped) in a <metadata> element."""
    import vl_convert as vlc

    register_cjk_fonts()
    svg = vlc.vegalite_to_svg(chart_spec(chart, audit))
    if audit is not None:
        start = svg.index(">", svg.index("<svg")) + 1
        meta = html.escape(json.dumps(audit.to_json(), ensure_ascii=False), quote=False)
        svg = f'{svg[:start]}<metadata id="chumoku-audit">{meta}</metadata>{svg[start:]}'
    return svg.encode("utf-8")
