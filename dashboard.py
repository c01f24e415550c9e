"""Chumoku (注目): where to read first in a long Japanese or English document.

Entry point: shared state and the sidebar (model and method) live here, so they persist across pages.
Run with `streamlit run dashboard.py` (or ./run.sh).
"""
from __future__ import annotations

import streamlit as st

import attn_core as ac
from attn_core.models import AUTO_MODEL_ID
from attn_core.samples import SAMPLES, sample_documents
from pages import _common as ui

st.set_page_config(page_title="Chumoku · where to read first", page_icon="注", layout="wide")
ui.init_state()

MODEL_CHOICES = [AUTO_MODEL_ID] + [m.id for m in ac.RECOMMENDED_MODELS]
CUSTOM = "Other (hub id or local folder)…"


def sidebar():
    """The model and method pickers; the model itself loads when a page first needs it (ui.current_reader)."""
    with st.sidebar:
        st.markdown("### 注目 Chumoku")
        state = ui.state()
        current = state.model_id
        options = MODEL_CHOICES + [CUSTOM]
        choice = st.selectbox("Model", options, index=options.index(current) if current in options else len(options) - 1, key="sidebar.model",
                              help="Automatic: Japanese documents are read with multilingual-e5-small and English "
                                   "ones with all-MiniLM-L6-v2 (both offline; e5 is converted on first use, a few "
                                   "seconds); a ranking that mixes languages uses the multilingual one. Hub "
                                   "models need the network or a local copy (see Models & cache).")
        if choice == CUSTOM:
            typed = st.text_input("Hub id or local folder", value="" if current in MODEL_CHOICES else current,
                                  key="sidebar.custom_model")
            choice = typed.strip() or current
        state.model_id = choice
        methods = list(ac.METHODS)
        state.method = st.selectbox(
            "Attention reduction", methods, index=methods.index(state.method)
            if state.method in methods else 0, key="sidebar.method",
            format_func=lambda m: f"{m} — {ac.METHODS[m].split(':')[0]}", help="\n\n".join(
                f"**{k}**: {v}" for k, v in ac.METHODS.items()))
        with st.expander("Layer and head"):
            layer = st.text_input("Layer (last, all, or an index)", value=str(state.layer), key="sidebar.layer")
            head = st.text_input("Head (mean, max, or an index)", value=str(state.head), key="sidebar.head")
            state.layer = ui.parse_param("layer", layer.strip() or "last")
            state.head = ui.parse_param("head", head.strip() or "mean")
        return st.empty()  # the model status, filled by ui.current_reader() once the model is loaded


def home() -> None:
    st.title("注目 Chumoku — where to read first")
    st.markdown(
        "Drop in long Japanese or English documents (patents, statutes, reports): a transformer reads every "
        "chunk, the words it attends to most are shaded in the text, and the passages are ranked so you know "
        "where to read first. Hold a claim? Rank a whole stack of documents against it and see which passage "
        "answers each element.")
    reader = ui.current_reader()
    if reader is not None:
        st.info(ui.model_status(reader.model))
    st.subheader("Try it")
    st.caption(" · ".join(f"{s.title} — {s.licence}" for s in SAMPLES))
    if st.button("Open the demo documents", type="primary", key="demo"):
        for doc in sample_documents():
            ui.add_document(doc)
        ui.state().selected = ui.state().docs[0]
        st.switch_page(SCREEN)
    st.page_link(SCREEN, label="Screen your own documents", icon=":material/description:")
    st.page_link(BATCH, label="Screen dozens of documents, or rank them against a claim", icon=":material/table_view:")


SCREEN = st.Page("pages/screen.py", title="Screen", icon=":material/description:", url_path="screen")
EXPLORER = st.Page("pages/explorer.py", title="Explorer", icon=":material/biotech:", url_path="explorer")
BATCH = st.Page("pages/batch.py", title="Batch & claims", icon=":material/table_view:", url_path="batch")
MODELS = st.Page("pages/models.py", title="Models & cache", icon=":material/settings:", url_path="models")
HOME = st.Page(home, title="Home", icon=":material/home:", default=True)

PAGES = [HOME, SCREEN, EXPLORER, BATCH, MODELS]
ui.state().model_slot = sidebar()
ui.state().readers = {}  # this run has not asked for a model yet
navigation = st.navigation(PAGES)
if (route := st.query_params.get(ui.ROUTE_PARAM)) is not None:  # finish ui.ensure_navigation's detour
    params = {k: v for k, v in st.query_params.to_dict().items() if k != ui.ROUTE_PARAM}
    st.switch_page(next((p for p in PAGES if p.url_path == route), HOME), query_params=params)
navigation.run()
ui.current_reader()  # the sidebar shows the model status on every page, also where the page did not need it
if notice := ac.default_store().notice:  # a damaged or unwritable result cache: said once, never a crash
    st.sidebar.warning(ui.escape_markdown(notice), icon=":material/database:")
