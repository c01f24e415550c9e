"""The page helpers in attn_core.render (pure: no model, no Streamlit)."""
from __future__ import annotations

import re

from attn_core.document import document_from_text
from attn_core.render import (
    STYLE_TAG,
    download_name,
    escape_markdown,
    find_hits,
    find_links_html,
    legend_html,
    read_first_html,
    render_document_html,
)
from attn_core.results import AnalysisResult, ModelInfo, Passage, Settings, WordScore

TEXT = "[0001] Alpha tunnel packet.\n\n[0002] Beta <script>alert(1)</script> tunnel.\n\n[0003] Gamma TUNNEL end."


def _result() -> AnalysisResult:
    doc = document_from_text(TEXT, "x.txt", "en")
    spans = [(m.start(), m.end()) for m in re.finditer(r"\[\d+\][^\n]*", TEXT)]
    passages = [Passage(s, e, score, rank, label=TEXT[s:s + 6])
                for (s, e), score, rank in zip(spans, (0.2, 0.9, 0.5), (3, 1, 2))]
    words = [WordScore(m.group(), m.start(), m.end(), (i % 10) / 10, 0.1)
             for i, m in enumerate(re.finditer(r"\w+", TEXT))]
    return AnalysisResult(doc, ModelInfo("m", "m@1", "encoder", "cpu"), Settings(), [], words, passages, [], 0.0)


def test_escape_markdown_leaves_only_literal_text():
    name = "<img src=x onerror=alert(2)>_**b**_[l](javascript:x) $x$ :red[y].txt"
    out = escape_markdown(name)
    assert re.sub(r"\\(.)", r"\1", out) == name  # unescaping gives the name back
    for ch in "<>*_[]()$:":
        assert re.search(rf"(?<!\\){re.escape(ch)}", out) is None, ch  # every one is escaped


def test_download_name_is_safe():
    assert download_name("US08930553B2.txt", "html") == "US08930553B2.chumoku.html"
    assert download_name("特許法 第29条.pdf", "csv") == "特許法_第29条.chumoku.csv"
    assert download_name("../../etc/passwd", "json") == "passwd.chumoku.json"
    assert download_name('<img src=x onerror="alert(2)">.txt', ".json") == "img_src_x_onerror_alert_2.chumoku.json"
    assert download_name("...", "json") == "document.chumoku.json"
    assert len(download_name("a" * 500 + ".txt", "csv")) < 100


def test_read_first_links_in_rank_order_and_escaped():
    r = _result()
    out = read_first_html(r, 3)
    assert re.findall(r'href="#passage-(\d+)"', out) == ["1", "2", "0"]  # ranks 1, 2, 3
    assert re.findall(r'data-rank="(\d+)"', out) == ["1", "2", "3"]
    assert "<script" not in out and "&lt;script&gt;" in out
    assert out.count("[0002]") == 1  # the label is not repeated before a preview that starts with it
    doc = render_document_html(r, top_percent=50)
    for i in range(3):
        assert f'id="passage-{i}"' in doc
    # the #N badge says what N is (a newcomer read "#97" as a section number)
    assert re.findall(r'<span class="plabel" title="read-first rank (\d) of 3">#(\d)</span>', doc) == \
        [("3", "3"), ("1", "1"), ("2", "2")]
    legend = legend_html(10)
    assert "top 10% of content words" in legend and "#N: the passage's place in the read-first order" in legend


def test_find_hits_and_links():
    r = _result()
    assert find_hits(r, "tunnel") == [(0, 1), (1, 1), (2, 1)]  # case-insensitive
    assert find_hits(r, "  ") == [] and find_hits(r, None) == []
    assert find_hits(r, "<script>") == [(1, 1)]
    links = find_links_html(r, find_hits(r, "tunnel"), k=2)
    assert re.findall(r'href="#passage-(\d+)"', links) == ["0", "1"] and "1 more" in links
    assert "<mark>&lt;script&gt;</mark>" in render_document_html(r, find="<script>")


def test_style_tag_is_one_line():
    assert STYLE_TAG.startswith("<style>") and "\n" not in STYLE_TAG and ".attn-hl" in STYLE_TAG


def test_previews_are_cut_by_columns_so_japanese_is_not_twice_as_long():
    from attn_core.render import passage_preview

    ja = "特許権の存続期間は、特許出願の日から二十年をもつて終了する。" * 10
    en = "The term of the patent ends twenty years after the filing date. " * 10
    for text, n in ((ja, 59), (en, 119)):
        doc = document_from_text(text, "x.txt")
        r = AnalysisResult(doc, ModelInfo("m", "m@1", "encoder", "cpu"), Settings(), [], [],
                           [Passage(0, len(text), 1.0, 1)], [], 0.0)
        out = passage_preview(r, r.passages[0], 120)
        assert out.endswith("…") and len(out) == n + 1  # 59 wide characters + "…", or 119 narrow ones + "…"
        assert out[:-1] == " ".join(text.split())[:n]
    short = document_from_text("短い。", "s.txt")
    r = AnalysisResult(short, ModelInfo("m", "m@1", "encoder", "cpu"), Settings(), [], [], [Passage(0, 3, 1.0, 1)],
                       [], 0.0)
    assert passage_preview(r, r.passages[0], 120) == "短い。"
