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

# A drawn image, served by this server: a ":material/…:" icon is fetched from fonts.gstatic.com, which an
# offline machine cannot reach, and "注" or an emoji is a blank box in the tab on machines without the font.
st.set_page_config(page_title="Chumoku · where to read first", page_icon=ui.favicon(), layout="wide")
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
        return st.container()  # one status line per model a page loads (ui.current_reader), e.g. ja and en


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
        samples = sample_documents()
        for doc in samples:
            ui.add_document(doc)
        ui.state().selected = samples[0].sha256  # not docs[0]: the workspace may hold older documents
        st.switch_page(SCREEN)
    st.page_link(SCREEN, label="Screen your own documents", icon=":material/description:")
    st.page_link(BATCH, label="Screen dozens of documents, or rank them against a claim", icon=":material/table_view:")


def auth_providers() -> list[str | None]:
    """The providers named in `[auth]`: `[auth.company]`-style sections, else the one unnamed provider (None)."""
    try:
        section = st.secrets["auth"]
        named = [k for k, v in section.items() if hasattr(v, "keys")]
    except Exception:  # noqa: BLE001 - no [auth]: mode() said single-user already
        named = []
    return named or [None]


def sign_in() -> None:
    """Team mode, before sign-in: nothing of the workspace runs or shows until the reviewer is known."""
    st.title("Chumoku — sign in")
    st.markdown("This server is run for a team: sign in with your company account to see your documents and "
                "your matters. Each reviewer has a private area; matters are shared with their members.")
    for provider in auth_providers():
        label = "Sign in" if provider is None else f"Sign in with {ui.escape_markdown(provider)}"
        if st.button(label, type="primary", key=f"account.login.{provider or 'default'}", icon=":material/login:"):
            if provider is None:
                st.login()  # the unnamed provider configured directly under [auth]
            else:
                st.login(provider)
    st.caption("Opened a share link? Sign in, then open the link again: the document opens if it is yours or "
               "belongs to one of your matters.")


def account() -> None:
    """Who is signed in (team mode) or that the workspace is shared (single-user mode), in the sidebar."""
    with st.sidebar:
        who = ui.reviewer()
        if ui.mode() == ui.Mode.TEAM and who is not None:
            st.caption(f"Signed in as **{ui.escape_markdown(who)}**")
            if st.button("Sign out", key="account.logout", icon=":material/logout:"):
                st.logout()
        else:
            st.caption(ui.SINGLE_USER_NOTICE)


LIBRARY = st.Page("pages/library.py", title="Library", icon=":material/folder_open:", url_path="library")
SCREEN = st.Page("pages/screen.py", title="Screen", icon=":material/description:", url_path="screen")
EXPLORER = st.Page("pages/explorer.py", title="Explorer", icon=":material/biotech:", url_path="explorer")
BATCH = st.Page("pages/batch.py", title="Batch & claims", icon=":material/table_view:", url_path="batch")
MODELS = st.Page("pages/models.py", title="Models & cache", icon=":material/settings:", url_path="models")
HOME = st.Page(home, title="Home", icon=":material/home:", default=True)

PAGES = [HOME, LIBRARY, SCREEN, EXPLORER, BATCH, MODELS]
if ui.mode() == ui.Mode.TEAM and ui.reviewer() is None:
    ui.state().docs, ui.state().selected = [], None
    st.navigation([st.Page(sign_in, title="Sign in", icon=":material/login:", default=True)]).run()
    st.stop()
ui.sync_workspace()  # a reload, a new tab or another reviewer's change: the session lists its workspace
ui.state().model_slot = sidebar()
account()
ui.state().readers = {}  # this run has not asked for a model yet
navigation = st.navigation(PAGES)
if (route := st.query_params.get(ui.ROUTE_PARAM)) is not None:  # finish ui.ensure_navigation's detour
    params = {k: v for k, v in st.query_params.to_dict().items() if k != ui.ROUTE_PARAM}
    st.switch_page(next((p for p in PAGES if p.url_path == route), HOME), query_params=params)
navigation.run()
ui.current_reader()  # the sidebar shows the model status on every page, also where the page did not need it
for notice in (ac.default_store().notice, ui.library().notice):  # a repaired cache or library: said, never a crash
    if notice:
        st.sidebar.warning(ui.escape_markdown(notice), icon=":material/database:")
