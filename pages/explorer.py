"""Explorer: the full attention of one chunk of one document — heatmap, model view, scores, token table."""
from __future__ import annotations

import html
from dataclasses import replace

import streamlit as st

import attn_core as ac
from attn_core import charts, export
from pages import _common as ui

ui.ensure_navigation()  # a share link may be a fresh server's first request


def downloads(chart, stem: str, key: str, audit: export.Audit) -> None:
    """PNG and SVG buttons, each file with its audit trail; the bytes are rendered only when a button is clicked."""
    left, right, _ = st.columns([1, 1, 4])
    left.download_button("PNG", data=lambda: charts.chart_png(chart, audit=audit), file_name=f"{stem}.png",
                         mime="image/png", key=f"{key}.png", on_click="ignore", icon=":material/download:")
    right.download_button("SVG", data=lambda: charts.chart_svg(chart, audit=audit), file_name=f"{stem}.svg",
                          mime="image/svg+xml", key=f"{key}.svg", on_click="ignore", icon=":material/download:")


state = ui.state()
st.title("Explorer")
st.caption("The full attention of one chunk: every layer and head, and how the engine reduces it to one "
           "score per token.")

docs = ui.session_documents()
if not docs:
    st.info("No documents yet. Upload one in **Screen** (or open the demo documents on Home), then come back.")
    st.page_link("pages/screen.py", label="Go to Screen", icon=":material/description:")
    st.stop()

# ---- widgets ------------------------------------------------------------------------------------------
by_sha = {d.sha256: d for d in docs}
shas = list(by_sha)
selected = state.selected
doc_sha = st.selectbox("Document", shas, index=shas.index(selected) if selected in by_sha else 0,
                       format_func=lambda s: by_sha[s].name, key="explorer.doc")
state.selected = doc_sha
doc = by_sha[doc_sha]
reader = ui.current_reader([doc.language])  # "Automatic" reads each language with its own model
if reader is None:
    st.warning("No model is loaded: pick one in the sidebar.")
    st.stop()
model = reader.model
s = ui.settings()
spans = reader.chunk_spans(doc)
if len(spans) > 1:
    chunk = st.slider("Chunk", 0, len(spans) - 1, 0, key=f"explorer.chunk.{doc_sha}",
                      help="The document is read in overlapping windows of the model's token budget.")
else:
    chunk = 0
start, end = spans[chunk]
preview = " ".join(doc.text[start:end].split())
st.markdown(f'<div style="color:#495057;font-size:0.85em;max-height:5.5em;overflow:auto">'
            f'<b>Chunk {chunk + 1} of {len(spans)}</b> · characters {start:,}–{end:,}: '
            f'{html.escape(preview[:400])}{"…" if len(preview) > 400 else ""}</div>', unsafe_allow_html=True)

c1, c2, c3 = st.columns(3)
layer = c1.selectbox("Layer", list(range(model.num_layers)), index=model.num_layers - 1, key="explorer.layer")
head = c2.selectbox("Head", ["mean", "max"] + list(range(model.num_heads)), key="explorer.head")
method = c3.selectbox("Token table reduction", list(ac.METHODS), key="explorer.method",
                      index=list(ac.METHODS).index(s.method) if s.method in ac.METHODS else 0,
                      help="\n\n".join(f"**{k}**: {v}" for k, v in ac.METHODS.items()))

# ---- one call into attn_core ----------------------------------------------------------------------------
with st.spinner("Running the model on this chunk…"):
    ca = reader.chunk_attention(doc, chunk)

# ---- display ---------------------------------------------------------------------------------------------
n = len(ca.tokens)
causal = model.kind == ac.ModelKind.CAUSAL
window = (0, n)
if n > charts.HEATMAP_MAX_TOKENS:
    window = st.slider("Tokens shown in the heatmap and score chart", 0, n, (0, charts.HEATMAP_MAX_TOKENS),
                       key=f"explorer.window.{doc_sha}.{chunk}",
                       help=f"This chunk has {n} tokens; a window keeps the labels readable.")
stem = f"chumoku-{doc.sha256[:8]}-chunk{chunk}"
chart_audit = replace(export.Audit.now(model.info, exported_by=ui.reviewer_label(ui.reviewer())), faithfulness="",
                      method="raw attention")

heat_tab, model_tab, scores_tab, table_tab = st.tabs(["Heatmap", "Model view", "Token scores", "Token table"])
with heat_tab:
    chart = charts.heatmap(ca, layer, head, window=window)
    st.altair_chart(chart, width="content")
    downloads(chart, f"{stem}-heatmap-L{layer}-H{head}", "explorer.dl.heatmap",
              replace(chart_audit, layer=str(layer), head=str(head)))
with model_tab:
    st.caption("Each thumbnail is one head (columns) of one layer (rows), pooled to 16×16 blocks and scaled to its "
               "own maximum. Diagonals: heads that look at neighbours; vertical stripes: heads that all look at one "
               "token (often [CLS] or [SEP], an attention sink).")
    chart = charts.model_view(ca)
    st.altair_chart(chart, width="content")
    downloads(chart, f"{stem}-model-view", "explorer.dl.model", replace(chart_audit, layer="all", head="all"))
with scores_tab:
    first = "the last token" if causal else f"the first token ({charts.chart_text(ca.tokens[0])})"
    st.caption(f"Per token: what {first} attends to, next to the mean attention it receives from all "
               f"queries (layer {layer}, head {head}). Special tokens are excluded and each series sums to 1.")
    chart = charts.token_scores_chart(ca, layer, head, causal=causal, window=window)
    st.altair_chart(chart, width="content")
    downloads(chart, f"{stem}-token-scores-L{layer}-H{head}", "explorer.dl.scores",
              replace(chart_audit, method="cls and received", layer=str(layer), head=str(head)))
with table_tab:
    st.caption(f"Tokens ranked by the **{method}** reduction (layer {layer}, head {head}); `weight` is the "
               f"token's share of the chunk, `relative` its weight over the strongest token's. This is the "
               f"chunk's raw attention: Screen leaves stop words, particles, reference numerals and a patent's "
               f"bibliographic lines and bare headings unshaded.")
    table = charts.token_table(ca, method, layer, head, causal=causal)
    st.dataframe(charts.styled_token_table(table), hide_index=True, width="stretch", height=420)
    audit = export.Audit.now(model.info, ac.Settings(method=method, layer=layer, head=head),
                             exported_by=ui.reviewer_label(ui.reviewer()))
    st.download_button("CSV", export.table_csv(list(table.columns), table.itertuples(index=False), audit)
                       .encode("utf-8"), file_name=f"{stem}-tokens-{method}.csv", mime="text/csv",
                       key="explorer.dl.table", on_click="ignore")
