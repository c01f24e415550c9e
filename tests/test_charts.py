"""Explorer charts built from a real ChunkAttention of the tiny test models."""
from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from conftest import EN_TEXT, JA_TEXT

from attn_core import charts
from attn_core.analysis import chunk_attention
from attn_core.document import document_from_text

MARKUP_TEXT = EN_TEXT


@pytest.fixture(scope="module")
def en_ca(en_bert):
    doc = document_from_text(MARKUP_TEXT, "markup.txt", language="en")
    return chunk_attention(doc, en_bert, 0)


@pytest.fixture(scope="module")
def ja_ca(ja_bert):
    doc = document_from_text(JA_TEXT, "ja.txt", language="ja")
    return chunk_attention(doc, ja_bert, 0)


def test_heatmap_data_is_token_by_token(en_ca):
    n = len(en_ca.tokens)
    df = charts.heatmap_data(en_ca, 1, 2)
    assert len(df) == n * n
    # row q, column k holds attention[layer, head, q, k]; each query row sums to 1
    row = df[df.q == 3].sort_values("k")["weight"].to_numpy()
    assert np.allclose(row, en_ca.attentions[1, 2, 3])
    assert df.groupby("q")["weight"].sum().between(0.999, 1.001).all()
    mean = charts.heatmap_data(en_ca, 0, "mean")
    assert np.allclose(mean[mean.q == 0].sort_values("k")["weight"], en_ca.attentions[0].mean(0)[0])


def test_heatmap_window_and_encodings(en_ca):
    chart = charts.heatmap(en_ca, 0, 1, window=(2, 12))
    spec = chart.to_dict()
    enc = spec["encoding"]
    assert enc["x"]["field"] == "key" and enc["y"]["field"] == "query" and enc["color"]["field"] == "weight"
    assert {t["field"] for t in enc["tooltip"]} == {"query", "key", "weight"}
    data = chart.data
    assert len(data) == 100 and data.q.min() == 2 and data.q.max() == 11
    # labels carry their position, so repeated tokens ("the") stay distinct in the sort order
    assert len(enc["x"]["sort"]) == 10 and len(set(enc["x"]["sort"])) == 10


def _with_markup(ca):
    """The same attention with markup-like token texts (a tokenizer with '<' in its vocab would give these)."""
    tokens = list(ca.tokens)
    tokens[2], tokens[3], tokens[4] = "<b>", "&", '"x"'
    return dataclasses.replace(ca, tokens=tokens)


def test_labels_are_positioned_and_escaped(en_ca):
    labels = charts.token_labels(en_ca)
    assert len(set(labels)) == len(labels) and labels[0] == "0 · [CLS]"
    ca = _with_markup(en_ca)
    labels = charts.token_labels(ca)
    # Vega draws text as text: no markup character reaches a chart, and nothing shows as "&lt;" to the reader
    assert labels[2:5] == ["2 · ‹b›", "3 · &", '4 · "x"']
    for data in (charts.heatmap_data(ca, 0, 0), charts.token_scores_data(ca)):
        text = " ".join(data.select_dtypes(object).astype(str).stack())
        assert "<" not in text and ">" not in text and "&lt;" not in text and "‹b›" in text
    svg = charts.chart_svg(charts.heatmap(ca, 0, 0, window=(0, 10))).decode()
    assert "<b>" not in svg and "&lt;b&gt;" not in svg and "‹b›" in svg
    e5_like = dataclasses.replace(en_ca, tokens=["<s>", *en_ca.tokens[1:]])  # e5's first token is <s>, not [CLS]
    assert set(charts.token_scores_data(e5_like).measure) == {"‹s› row", "column mean"}


def test_model_view_small_multiples(en_ca):
    n = len(en_ca.tokens)
    df = charts.model_view_data(en_ca, bins=8)
    L, H = en_ca.attentions.shape[:2]
    assert len(df) == L * H * 8 * 8 and n > 8
    assert set(df.layer) == set(range(L)) and set(df["head"]) == set(range(H))
    assert np.allclose(df.groupby(["layer", "head"])["relative"].max(), 1.0)
    # the block mean of layer 0 head 0's first block is the mean of that corner of the matrix
    edges = np.linspace(0, n, 9).astype(int)
    corner = en_ca.attentions[0, 0, : edges[1], : edges[1]].mean()
    got = df[(df.layer == 0) & (df["head"] == 0) & (df.qb == 0) & (df.kb == 0)]["weight"].item()
    assert got == pytest.approx(corner, rel=1e-5)
    spec = charts.model_view(en_ca, bins=8).to_dict()
    assert spec["facet"]["row"]["field"] == "layer" and spec["facet"]["column"]["field"] == "head"


def test_token_scores_chart_matches_engine_reductions(en_ca):
    df = charts.token_scores_data(en_ca, "last", "mean")
    content = [i for i, s in enumerate(en_ca.special) if not s]
    assert len(df) == 2 * len(content) and set(df.measure) == {"[CLS] row", "column mean"}
    cls = en_ca.reduce("cls", "last", "mean")
    col = en_ca.reduce("received", "last", "mean")
    got_cls = df[df.measure == "[CLS] row"].sort_values("position")["score"].to_numpy()
    got_col = df[df.measure == "column mean"].sort_values("position")["score"].to_numpy()
    assert np.allclose(got_cls, cls[content]) and np.allclose(got_col, col[content])
    assert not np.allclose(got_cls, got_col)
    spec = charts.token_scores_chart(en_ca).to_dict()
    assert spec["encoding"]["xOffset"]["field"] == "measure"


def test_token_table_rank_weight_and_styler(en_ca):
    df = charts.token_table(en_ca, "received", "last", "mean")
    assert list(df.columns) == ["rank", "position", "token", "weight", "relative"]
    assert len(df) == sum(not s for s in en_ca.special)
    assert df.weight.sum() == pytest.approx(1.0)
    assert df["rank"].iloc[0] == 1 and df.relative.iloc[0] == pytest.approx(1.0)
    assert (np.diff(df.weight.to_numpy()) <= 1e-12).all()
    styled = charts.styled_token_table(df)
    out = styled.to_html()
    assert "background-color" in out  # background_gradient shaded the cells
    marked = charts.styled_token_table(charts.token_table(_with_markup(en_ca)))
    assert "<b>" not in marked.to_html()
    # what Streamlit's grid draws (the display values, as text): readable, never an entity
    shown = {str(c["display_value"]) for row in marked._translate(False, False)["body"] for c in row
             if c.get("type") == "td"}
    assert {"‹b›", "&", '"x"'} <= shown and not any("&lt;" in v or "&amp;" in v for v in shown)
    # the strongest and weakest tokens get different shades
    colors = styled._compute().ctx
    assert len({tuple(v) for v in colors.values()}) > 2


def test_png_and_svg_export(en_ca):
    chart = charts.heatmap(en_ca, 0, 0, window=(0, 12))
    png = charts.chart_png(chart)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    svg = charts.chart_svg(chart)
    assert svg.lstrip().startswith(b"<svg") and b"key (attended to)" in svg


def test_export_works_beyond_altair_row_limit(en_ca):
    big = charts.heatmap(en_ca, 0, 0)
    assert len(big.data) > 0
    # Altair refuses > 5000 rows by default; the exporter inlines any size (256×256 = 65,536 cells)
    rows = [{"a": i % 256, "b": i // 256, "w": float(i)} for i in range(256 * 256)]
    import altair as alt
    import pandas as pd

    huge = alt.Chart(pd.DataFrame(rows)).mark_rect().encode(x="a:O", y="b:O", color="w:Q")
    assert len(charts.chart_spec(huge)["datasets"].popitem()[1]) == 256 * 256


def _png_pixels(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    return imread(io.BytesIO(png))


def test_japanese_labels_render(ja_ca):
    """Real glyphs, not tofu: two different kanji labels must rasterise differently."""
    labels = charts.token_labels(ja_ca)
    assert any("カ" in lab or "発" in lab or "本" in lab for lab in labels)
    chart = charts.token_scores_chart(ja_ca)
    svg = charts.chart_svg(chart).decode("utf-8")
    assert any(t in svg for t in ja_ca.tokens if not t.startswith("[") and ord(t[0]) > 0x3000)

    import altair as alt
    import pandas as pd

    def render(word: str) -> np.ndarray:
        c = alt.Chart(pd.DataFrame({"t": [word], "v": [1]})).mark_bar().encode(y="t:N", x="v:Q").properties(
            width=60, height=30)
        return _png_pixels(charts.chart_png(c, scale=1))

    a, b, same = render("注目"), render("東京"), render("注目")
    assert a.shape == b.shape
    assert np.array_equal(a, same)  # rendering is deterministic…
    assert not np.array_equal(a, b)  # …and missing glyphs would draw both words as the same two boxes


def test_font_registration_degrades_gracefully(tmp_path, monkeypatch):
    monkeypatch.setattr(charts, "_fonts_registered", None)
    assert charts.register_cjk_fonts([tmp_path / "no-such-dir"]) is False
    monkeypatch.setattr(charts, "_fonts_registered", None)
    assert charts.register_cjk_fonts(charts.CJK_FONT_DIRS) is any(d.is_dir() for d in charts.CJK_FONT_DIRS)


def test_charts_fit_the_page_and_label_every_token(en_ca):
    """Streamlit's theme thins overlapping labels (every second token vanished) and clips what is wider than
    the page: the charts size themselves ("pad") within charts.PAGE_WIDTH and never thin their labels."""
    n = len(en_ca.tokens)
    heat = charts.heatmap(en_ca, 0, "mean").to_dict()
    assert heat["autosize"]["type"] == "pad"
    for axis in ("x", "y"):
        spec = heat["encoding"][axis]["axis"]
        assert spec["labelOverlap"] is False and spec["labels"] is (heat["width"] // n >= 8)
    assert heat["width"] + charts.HEATMAP_DECORATION <= charts.PAGE_WIDTH
    window = charts.heatmap(en_ca, 0, "mean", window=(0, 40)).to_dict()
    assert window["encoding"]["x"]["axis"]["labels"] is True and len(window["encoding"]["x"]["sort"]) == 40
    scores = charts.token_scores_chart(en_ca).to_dict()
    assert isinstance(scores["width"], int) and scores["width"] + charts.SCORES_DECORATION <= charts.PAGE_WIDTH
    assert scores["autosize"]["type"] == "pad" and scores["encoding"]["x"]["axis"]["labelOverlap"] is False


def _png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, each CRC checked: a broken chunk would make viewers refuse the file."""
    import struct
    import zlib

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at:at + 4])
        kind, data = png[at + 4:at + 8], png[at + 8:at + 8 + length]
        assert struct.unpack(">I", png[at + 8 + length:at + 12 + length])[0] == zlib.crc32(kind + data)
        chunks.append((kind, data))
        at += 12 + length
    return chunks


@pytest.mark.parametrize("which", ["heatmap", "model view"])
def test_exported_charts_carry_the_audit_trail(en_ca, which):
    """Like every other export, a PNG or SVG says which model, layer and head drew it: as a caption a reader
    sees and as metadata a tool reads (escaped: a reviewer's name or a model id is text, never markup)."""
    import html
    import json
    import re

    from attn_core.export import Audit

    audit = Audit(model="<b>m</b>", model_identity="tiny@0123abcd", method="raw attention", layer="0", head="1",
                  chumoku_version="0.3.0", exported_utc="2026-12-01T19:00:00Z", exported_by="審査官 田中")
    chart = charts.heatmap(en_ca, 0, 1, window=(0, 10)) if which == "heatmap" else charts.model_view(en_ca)
    svg = charts.chart_svg(chart, audit=audit).decode("utf-8")
    meta = re.search(r'<metadata id="chumoku-audit">(.*?)</metadata>', svg, re.S)
    assert meta and json.loads(html.unescape(meta.group(1))) == audit.to_json()
    drawn = svg.replace(meta.group(0), "")
    caption = " ".join(html.unescape(t) for t in re.findall(r"<(?:text|tspan)[^>]*>([^<]*)(?=<)", drawn))
    assert "tiny@0123abcd" in caption and "審査官 田中" in caption and "Layer: 0" in caption
    assert "<b>m</b>" not in svg and "&lt;b&gt;m&lt;/b&gt;" in drawn
    if which == "heatmap":
        assert "who attends to whom" in caption  # the chart's own title stays, the caption goes under it

    png = charts.chart_png(chart, scale=1, audit=audit)
    texts = [data for kind, data in _png_chunks(png) if kind == b"iTXt"]
    assert len(texts) == 1 and texts[0].startswith(b"chumoku:audit\0")
    assert json.loads(texts[0].split(b"\0", 5)[5].decode("utf-8")) == audit.to_json()
    plain = _png_pixels(charts.chart_png(chart, scale=1))
    assert _png_pixels(png).shape[0] > plain.shape[0]  # the caption takes rows of its own


def test_the_audit_caption_never_parts_a_label_from_its_value():
    from attn_core.export import Audit

    audit = Audit(model="all-MiniLM-L6-v2 (offline)", model_identity="all-MiniLM-L6-v2 (offline)@359a34afa36aa899",
                  method="raw attention", layer="5", head="mean", chumoku_version="0.3.0",
                  exported_utc="2026-12-01T19:00:00Z", exported_by="reviewer")
    lines = charts.audit_caption(audit)  # 100 characters a line: every field fits on one
    assert all(len(line) <= 100 for line in lines) and len(lines) >= 3
    fields = [f for line in lines for f in line.split(" · ")]
    assert fields == [f"{label}: {value}" for label, value in audit.rows() if value]
