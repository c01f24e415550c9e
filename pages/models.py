"""Models & cache: which model to use and how to get it offline; where results live; clearing the cache."""
from __future__ import annotations

import html

import streamlit as st

import attn_core as ac
from attn_core.cache import models_dir
from attn_core.models import MULTILINGUAL_MODEL_ID, Availability, availability, licence_text, pick_device
from attn_core.multilingual import multilingual_folder
from attn_core.results import Runtime
from pages import _common as ui

ui.ensure_navigation()  # a share link may be a fresh server's first request

CONFIRM = "chumoku.models.confirm_clear"
CLEARED = "chumoku.models.cleared"  # message of the last clear, shown once


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def clear_cache() -> None:
    """Every cache: stored chunk results, embeddings and badges, every Reader's memo, Streamlit's caches.
    The library (documents, marks) stays."""
    counts = ui.clear_all_caches()
    st.session_state[CONFIRM] = False
    st.session_state[CLEARED] = (f"Cleared {counts['stored']} stored results and {counts['memo']} in-memory "
                                 f"readings. Documents and reviewer marks are kept.")


st.title("Models & cache")

# ---- models in use ------------------------------------------------------------------------------------
st.subheader("Models in use")
# the sidebar's model first, then any other this session has read with ("Automatic" reads Japanese with e5)
readers = [r for r in dict.fromkeys([ui.current_reader(), *ui.state().readers.values()]) if r is not None]
device = pick_device()
if not readers:
    st.error("No model is loaded: the sidebar shows why. Pick another one there.")
for reader in readers:
    model = reader.model
    with st.container(border=len(readers) > 1):
        st.markdown(ui.model_status(model))
        if model.info.fallback_reason:
            st.warning(f"Fallback in use: {ui.escape_markdown(model.info.fallback_reason)}")
        st.caption(f"Weights: `{model.path}` · {model.num_layers} layers × {model.num_heads} heads · "
                   f"identity `{model.info.identity}`")
        if model.passage_prefix or model.query_prefix:
            st.caption(f"Read as the model was trained: documents as `{model.passage_prefix}…`, queries as "
                       f"`{model.query_prefix}…` (the prefix is never shaded).")
        if model.attribution:
            st.info(f"**Attribution and licence.** {ui.escape_markdown(model.attribution)}", icon=":material/license:")
        if (licence := licence_text(model)) is not None:
            with st.expander("Licence text of these weights"):
                st.code(licence, language=None)
st.markdown(f"**Device:** {'CUDA GPU' if device.startswith('cuda') else 'CPU'} (`{device}`)"
            + ("" if device.startswith("cuda") else " — a GPU makes long documents several times faster."))

RUNTIMES = {
    Runtime.AUTO: "auto — ONNX Runtime once verified against torch (same scores, faster), else torch",
    Runtime.TORCH: "torch — PyTorch",
    Runtime.ONNX: "onnx — ONNX Runtime fp32, exported on first use",
    Runtime.ONNX_INT8: "onnx-int8 — faster still, but the shading differs",
}
server_default = ui.server_runtime()


def runtime_picked() -> None:
    """Before the rerun, so that the page's Reader is the new runtime's in the same run."""
    picked = st.session_state["models.runtime"]
    ui.state().runtime = "" if picked == server_default else str(picked)
    ui.state().readers = {}  # the Readers this run already holds are the old runtime's


st.selectbox("Runtime of the analysis", list(RUNTIMES), key="models.runtime", on_change=runtime_picked,
             index=list(RUNTIMES).index(Runtime(ui.state().runtime or server_default)),
             format_func=lambda r: RUNTIMES[r] + (" (this server's default)" if r == server_default else ""),
             help="What runs the forward pass that shades the words, for this session. **auto** uses ONNX Runtime "
                  "(fp32) once its export of the model has been built (in the background, once) and verified "
                  "against torch: the same scores, ≈ 1.4× faster on a CPU. **onnx-int8** is ≈ 2× faster but moved "
                  "the faithfulness figure by up to 14% over the corpus. On a GPU, and for models other than "
                  "encoders, every runtime is torch; guided readings and the faithfulness badge always run torch.")

# ---- recommended models ---------------------------------------------------------------------------------
st.subheader("Recommended models")
st.markdown("The dashboard never needs the network: two models come with Python packages — the English default "
            "and, for Japanese (and about 100 other languages), multilingual-e5-small, converted once on first use "
            f"into `{multilingual_folder(models_dir()).parent}`. For the others, "
            "download them once on a machine with network access, copy the folder next to the app, then in the "
            "sidebar pick **Other (hub id or local folder)…** and type the folder (e.g. `models/bert-base-japanese-v3`). "
            "A model already in the Hugging Face cache (`hf download <id>` without `--local-dir`) also loads offline "
            "by its hub id.")
BADGE = {Availability.OFFLINE: ":green-badge[offline]", Availability.CACHED: ":blue-badge[in the local cache]",
         Availability.DOWNLOAD: ":gray-badge[needs a download]", Availability.MISSING: ":red-badge[package missing]"}
for m in ac.RECOMMENDED_MODELS:
    with st.container(border=True):
        lang = {"ja": "Japanese", "en": "English"}.get(m.language, m.language)
        if m.id == MULTILINGUAL_MODEL_ID:
            lang = "Japanese, English and ~100 more"
        st.markdown(f"**{html.escape(m.id)}** · {lang} {BADGE[availability(m.id)]}")
        st.caption(m.note)
        if m.offline:
            st.code(f"{m.install}   # already in requirements.txt", language="bash")
        else:
            folder = m.download_command.rsplit(" ", 1)[-1]
            st.code(f"{m.download_command}\n# then: sidebar → Other (hub id or local folder)… → {folder}\n"
                    f"# or on the command line: python -m attn_core analyze --model {folder} FILE", language="bash")

# ---- cache -------------------------------------------------------------------------------------------------
st.subheader("Results and cache")
store = ac.default_store()
lib = ui.library()
st.markdown(f"Results, documents and marks are stored under `{ac.data_dir()}` (set `CHUMOKU_DATA_DIR` to move "
            f"them); converted models, ONNX exports and tokenizer checks under `{models_dir()}` "
            f"(`CHUMOKU_MODELS_DIR`).")
c1, c2, c3 = st.columns(3)
c1.metric("Result cache", human(store.size_bytes()), help=f"{store.path}: per-chunk attention scores, keyed by "
                                                          f"model, settings and chunk text; bounded, oldest dropped")
c2.metric("Cached chunks", f"{store.count():,}")
c3.metric("Library", human(lib.size_bytes()), help=f"{lib.path}: uploaded documents and reviewer marks; never "
                                                   f"evicted and not touched by clearing the cache")
st.caption(f"Library: {lib.count():,} documents · {len(lib.reviews()):,} reviewer marks. "
           f"Result cache file: `{store.path}`.")

if msg := st.session_state.pop(CLEARED, None):
    st.success(msg)
if not st.session_state.get(CONFIRM):
    if st.button("Clear the result cache…", key="models.clear", icon="🗑️"):
        st.session_state[CONFIRM] = True
        st.rerun()
else:
    st.warning("Clear every cached chunk result (for all users of this server)? Documents will be analysed again "
               "on their next view. Uploaded documents and reviewer marks are kept.")
    yes, no, _ = st.columns([1, 1, 4])
    yes.button("Yes, clear it", type="primary", key="models.clear.yes", on_click=clear_cache)
    if no.button("Cancel", key="models.clear.no"):
        st.session_state[CONFIRM] = False
        st.rerun()
