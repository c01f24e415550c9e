"""Streamlit glue shared by every page: named session keys, the shared model, analysis with progress.

Everything here is thin: computing lives in attn_core. Plain session-state keys (not widget keys)
hold what must survive a page switch: the session's documents, the open document and the settings.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import replace

import streamlit as st

import attn_core as ac
from attn_core.library import Library, default_library
from attn_core import render
from attn_core.render import escape_markdown

ROUTE_PARAM = "page"  # set while a link that reached a page before the entry script is routed through it


def ensure_navigation() -> None:
    """Run every page through dashboard.py, even when a share link is a fresh server's first request.

    With a `pages/` folder beside the main script, Streamlit starts in its old "pages folder" mode until a
    run calls `st.navigation`; a first request for /screen then runs pages/screen.py alone (no session
    defaults, no sidebar). Such a run detours through dashboard.py, which sends it on to the page the link
    named, with the link's query params.
    """
    if "chumoku.started" in st.session_state:
        return
    page = st.context.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] if st.context.url else ""
    st.switch_page("dashboard.py", query_params={**st.query_params.to_dict(), ROUTE_PARAM: page})


# ---- session keys ---------------------------------------------------------------------------------
DOCS = "chumoku.docs"  # list[str]: SHA-256 of the documents this session uploaded, in order
LANG_OVERRIDE = "chumoku.lang"  # dict[sha, "ja"|"en"]: the reviewer's manual language choice
ERRORS = "chumoku.errors"  # list[tuple[file name, message]]: rejected uploads of the last batch
SELECTED = "chumoku.selected"  # sha of the document open in Screen/Explorer
MODEL_ID = "chumoku.model_id"
METHOD = "chumoku.method"
LAYER = "chumoku.layer"
HEAD = "chumoku.head"
TOP_PERCENT = "chumoku.top_percent"
SEEN_UPLOADS = "chumoku.seen_uploads"  # file_id of uploads already ingested (reruns do not redo them)
MODEL = "chumoku.model"  # the LoadedModel the sidebar picked, once loaded in this run (None when it failed)
MODEL_LOADED = "chumoku.model_loaded"  # whether this run has loaded (or tried to load) the model
MODEL_SLOT = "chumoku.model_slot"  # the sidebar placeholder for the model status

DEFAULTS = {
    DOCS: [], LANG_OVERRIDE: {}, ERRORS: [], SELECTED: None, MODEL_ID: ac.DEFAULT_MODEL_ID,
    METHOD: ac.Settings().method, LAYER: "last", HEAD: "mean", TOP_PERCENT: int(render.DEFAULT_TOP_PERCENT), SEEN_UPLOADS: set(),
}
SHARED_PARAMS = {"doc": SELECTED, "model": MODEL_ID, "method": METHOD, "layer": LAYER, "head": HEAD,
                 "top": TOP_PERCENT}
UPLOAD_TYPES = sorted(ext.lstrip(".") for ext in ac.SUPPORTED_EXTENSIONS)
SESSION_MAX_BYTES = 200 * 1024 * 1024  # all uploads of one session together


def parse_param(key: str, raw: str):
    if key in (LAYER, HEAD):
        return int(raw) if raw.lstrip("-").isdigit() else raw
    if key == TOP_PERCENT:
        try:
            return min(100, max(1, int(float(raw))))
        except ValueError:
            return DEFAULTS[TOP_PERCENT]
    return raw


def init_state() -> None:
    """Defaults once per session; a share link's query params win on the first run."""
    first = "chumoku.started" not in st.session_state
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = value.copy() if hasattr(value, "copy") else value
    if first:
        st.session_state["chumoku.started"] = True
        for param, key in SHARED_PARAMS.items():
            if param in st.query_params:
                st.session_state[key] = parse_param(key, st.query_params[param])
        if key_doc := st.session_state[SELECTED]:
            open_shared(key_doc)


def share_params() -> dict[str, str]:
    """The query params that reopen the current view (document by hash, settings)."""
    out = {}
    for param, key in SHARED_PARAMS.items():
        value = st.session_state.get(key)
        if value is not None and value != DEFAULTS[key]:
            out[param] = str(value)
    if st.session_state.get(SELECTED):
        out["doc"] = st.session_state[SELECTED]
    return out


def sync_query_params() -> None:
    params = share_params()
    if dict(st.query_params) != params:
        st.query_params.from_dict(params)


def share_url(page: str = "screen") -> str:
    """The full link to this view on this server (relative when the server's address is unknown)."""
    from urllib.parse import urlencode, urlsplit

    query = urlencode(share_params())
    try:
        parts = urlsplit(st.context.url or "")
        base = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
        prefix = parts.path.rsplit("/", 1)[0] if parts.path else ""
    except Exception:  # noqa: BLE001 - no request context (tests, bare mode)
        base, prefix = "", ""
    return f"{base}{prefix}/{page}" + (f"?{query}" if query else "")


# ---- shared resources -----------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=3)
def get_model(model_id: str) -> ac.LoadedModel:
    """One copy of each model for every session (read-only use; captures are per thread)."""
    return ac.load_model(model_id)


@st.cache_resource(show_spinner=False)
def _memo() -> tuple[OrderedDict, threading.Lock]:
    return OrderedDict(), threading.Lock()


MEMO_ENTRIES = 64


def current_model() -> ac.LoadedModel | None:
    """The sidebar's model, loaded when a page first needs it, so the page's widgets are already on screen
    while a cold model loads. Its status (or error) goes to the sidebar."""
    if st.session_state.get(MODEL_LOADED):
        return st.session_state.get(MODEL)
    st.session_state[MODEL_LOADED] = True
    model_id, model = st.session_state[MODEL_ID], None
    with (st.session_state.get(MODEL_SLOT) or st.sidebar.empty()).container():
        try:
            with st.spinner(f"Loading {model_id}…"):
                model = get_model(model_id)
        except ac.ChumokuError as exc:
            st.error(exc.message)
        if model is not None:
            _check_layer_and_head(model)
            st.caption(model_status(model))
            if model.info.fallback_reason:
                st.warning(f"Using the offline default: {escape_markdown(model.info.fallback_reason)}")
    st.session_state[MODEL] = model
    return model


def _check_layer_and_head(model: ac.LoadedModel) -> None:
    for key, allowed, count, what in ((LAYER, ac.LAYER_CHOICES, model.num_layers, "layers"),
                                      (HEAD, ac.HEAD_CHOICES, model.num_heads, "heads")):
        value = st.session_state[key]
        if (isinstance(value, int) and not -count <= value < count) or (
                not isinstance(value, int) and value not in allowed):
            st.error(f"{escape_markdown(str(value)[:20])} is not one of {', '.join(allowed)} or 0–{count - 1} "
                     f"({count} {what}); using {allowed[0]}.")
            st.session_state[key] = allowed[0]


def library() -> Library:
    return default_library()


def settings() -> ac.Settings:
    return ac.Settings(method=st.session_state[METHOD], layer=st.session_state[LAYER],
                       head=st.session_state[HEAD])


# ---- documents --------------------------------------------------------------------------------------
def session_documents() -> list[ac.Document]:
    """This session's documents (with the reviewer's language override applied), in upload order."""
    lib, overrides, out = library(), st.session_state[LANG_OVERRIDE], []
    for sha in st.session_state[DOCS]:
        doc = lib.get_document(sha)
        if doc is None:
            continue
        if sha in overrides and overrides[sha] != doc.language:
            doc = replace(doc, language=overrides[sha])
        out.append(doc)
    return out


def add_document(doc: ac.Document) -> None:
    library().save_document(doc)
    if doc.sha256 not in st.session_state[DOCS]:
        st.session_state[DOCS].append(doc.sha256)
    if st.session_state[SELECTED] is None:
        st.session_state[SELECTED] = doc.sha256


def open_shared(sha: str) -> bool:
    """A share link names a document by hash: add it to this session if the server has it."""
    if sha in st.session_state[DOCS]:
        return True
    doc = library().get_document(sha)
    if doc is None:
        st.session_state[SELECTED] = None
        return False
    add_document(doc)
    st.session_state[SELECTED] = sha
    return True


def ingest_uploads(files) -> tuple[list[ac.Document], list[tuple[str, str]]]:
    """Ingest new uploads; a bad file becomes (name, message) and never stops the others."""
    docs, errors, fresh = [], [], False
    seen: set = st.session_state[SEEN_UPLOADS]
    budget = SESSION_MAX_BYTES - sum(len(d.text.encode("utf-8")) for d in session_documents())
    for f in files or []:
        if f.file_id in seen:
            continue
        seen.add(f.file_id)
        fresh = True
        size = f.size
        if size > budget:
            errors.append((f.name, f"this session's upload limit ({SESSION_MAX_BYTES // 2**20} MB) is reached; "
                                   f"start a new session to screen more documents"))
            continue
        try:
            doc = ac.ingest_bytes(f.getvalue(), f.name)
        except ac.ChumokuError as exc:
            errors.append((f.name, exc.message))
            continue
        except Exception as exc:  # noqa: BLE001 - a reviewer sees a message, never a stack trace
            errors.append((f.name, f"could not be read ({type(exc).__name__})"))
            continue
        budget -= size
        add_document(doc)
        docs.append(doc)
    if fresh:  # the errors of the last batch stay in view until the next upload (reruns keep them)
        st.session_state[ERRORS] = errors
    return docs, errors


# ---- analysis ---------------------------------------------------------------------------------------
def _memo_key(doc: ac.Document, model: ac.LoadedModel, s: ac.Settings) -> tuple:
    return (doc.sha256, doc.language, model.info.identity, s.key())


def _memo_get(key: tuple) -> ac.AnalysisResult | None:
    memo, lock = _memo()
    with lock:
        if key in memo:
            memo.move_to_end(key)
            return memo[key]
    return None


def _memo_put(key: tuple, result: ac.AnalysisResult) -> None:
    memo, lock = _memo()
    with lock:
        memo[key] = result
        while len(memo) > MEMO_ENTRIES:
            memo.popitem(last=False)


def cached_result(doc: ac.Document, model: ac.LoadedModel, s: ac.Settings) -> ac.AnalysisResult | None:
    return _memo_get(_memo_key(doc, model, s))


def analyze(doc: ac.Document, model: ac.LoadedModel, s: ac.Settings | None = None,
            container=None) -> ac.AnalysisResult:
    """Analyse with a progress bar (chunks done/total); in-memory and on-disk caches make repeats instant."""
    s = s or settings()
    hit = cached_result(doc, model, s)
    if hit is not None:
        return hit
    where = container or st
    name = escape_markdown(doc.name)  # progress text is Markdown: a file name must stay literal
    bar = where.progress(0.0, text=f"{name}: preparing…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(1, total), text=f"{name}: {done}/{total} chunks")

    result = ac.analyze(doc, model, s, progress=progress)
    bar.empty()
    _memo_put(_memo_key(doc, model, s), result)
    return result


def model_status(model: ac.LoadedModel) -> str:
    info = model.info
    where = "offline (bundled weights)" if info.id == ac.DEFAULT_MODEL_ID else "local/hub"
    return f"**{info.id}** · {info.kind} · {info.device} · {where} · {info.max_tokens} tokens per chunk"


def unk_warning(result: ac.AnalysisResult) -> str | None:
    """The reviewer-facing warning when the model does not fit the document's language."""
    if result.unk_rate <= 0.05:
        return None
    rec = ac.recommended_for(result.document.language)
    return (f"{result.unk_rate:.0%} of this document's tokens are unknown to **{escape_markdown(result.model.id)}** "
            f"(\\[UNK\\]): "
            f"it does not fit this language, so the shading is unreliable. Use **{rec.id}** instead "
            f"(to get it for offline use: `{rec.download_command}`, then pick it in the sidebar).")


def clear_memo() -> int:
    """Forget every in-memory analysis result (all sessions); returns how many were dropped."""
    memo, lock = _memo()
    with lock:
        n = len(memo)
        memo.clear()
    return n



# ---- the reviewer's claim or query (shared by Screen and Batch) -------------------------------------------
QUERY = "chumoku.query"  # attn_core Query the reviewer holds, or None
RANKINGS = "chumoku.rankings"  # dict[key, list[RankedDocument]]: rankings this session already computed
QUERY_SOURCES = ("Type or paste", "A claim of an uploaded patent", "A text file")


def query_editor(docs: list[ac.Document], model: ac.LoadedModel, key: str) -> ac.Query | None:
    """Claim/query input: pasted, one of a patent's claims, or a file; its elements editable one per row."""
    current: ac.Query | None = st.session_state.get(QUERY)
    source = st.radio("Query from", QUERY_SOURCES, horizontal=True, key=f"{key}.qsource")
    text = ""
    if source == QUERY_SOURCES[0]:
        text = st.text_area("Claim or query", value=current.text if current else "", height=110, key=f"{key}.qtext",
                            placeholder="1. A system for …, comprising: a …; and a … wherein …  /  "
                                        "【請求項１】…と、…とを備える…")
    elif source == QUERY_SOURCES[1]:
        with_claims = [(d, ac.extract_claims(d)) for d in docs]
        with_claims = [(d, c) for d, c in with_claims if c]
        if not with_claims:
            st.info("None of this session's documents has claims Chumoku can find "
                    "(US 'CLAIMS' section / USPTO XML, or 【請求項１】).")
        else:
            pick = st.selectbox("Patent", range(len(with_claims)), key=f"{key}.qdoc",
                                format_func=lambda i: with_claims[i][0].name)
            claims = with_claims[pick][1]
            n = st.selectbox("Claim", range(len(claims)), key=f"{key}.qclaim",
                             format_func=lambda i: f"claim {claims[i].number}: {claims[i].text[:80]}…")
            text = claims[n].text
    else:
        f = st.file_uploader("Query file", type=["txt", "md"], key=f"{key}.qfile")
        if f is not None:
            try:
                text = ac.ingest_bytes(f.getvalue(), f.name).text
            except ac.ChumokuError as exc:
                st.error(f"{f.name}: {exc.message}")
    if not text.strip():
        st.session_state[QUERY] = None
        return None
    try:
        query = ac.make_query(text)
    except ac.QueryError as exc:
        st.error(exc.message)
        return None
    if current is not None and current.text == query.text:
        query = query.with_elements(current.elements)  # keep the reviewer's edits across reruns and pages
    st.caption("Claim elements: edit, add or delete rows; each is matched and charted on its own.")
    edited = st.data_editor({"element": list(query.elements)}, num_rows="dynamic", width="stretch",
                            key=f"{key}.elements.{hash(query.text) & 0xffffffff:x}")
    query = query.with_elements([str(e) for e in edited["element"] if e is not None])
    try:
        from attn_core.retrieval import check_query

        query = check_query(model, query)
    except ac.QueryError as exc:
        st.error(exc.message)
        return None
    st.session_state[QUERY] = query
    return query


def rank(query: ac.Query, docs: list[ac.Document], model: ac.LoadedModel) -> list:
    """Documents ranked against the query; passage embeddings come from the disk cache after the first time."""
    from attn_core.retrieval import rank_documents

    key = (query.text, query.elements, tuple(d.sha256 + d.language for d in docs), model.info.identity)
    memo = st.session_state.setdefault(RANKINGS, {})
    if key not in memo:
        bar = st.progress(0.0, text="Embedding passages…")

        def progress(done: int, total: int) -> None:
            bar.progress(done / max(1, total), text=f"Embedding passages: {done}/{total}")

        memo[key] = rank_documents(query, docs, model, progress=progress)
        bar.empty()
        while len(memo) > 8:
            memo.pop(next(iter(memo)))
    return memo[key]


def guided(doc: ac.Document, model: ac.LoadedModel, query: ac.Query, element: int | None,
           container=None) -> ac.AnalysisResult:
    """Query-guided scores (whole query or one element), with progress; memoised like `analyze`."""
    key = (doc.sha256, doc.language, model.info.identity, "query", query.text, query.elements, element)
    if (hit := _memo_get(key)) is not None:
        return hit
    name = escape_markdown(doc.name)
    bar = (container or st).progress(0.0, text=f"{name}: reading for the query…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(1, total), text=f"{name}: {done}/{total} query × chunk passes")

    result = ac.guided_analyze(doc, model, query, element=element, progress=progress)
    bar.empty()
    _memo_put(key, result)
    return result


def faithfulness_badge(result: ac.AnalysisResult, model: ac.LoadedModel) -> None:
    """The measured badge: how much the model's output moves when the shaded words are deleted."""
    try:
        with st.spinner("Measuring how much the model relies on the shaded words…"):
            f = ac.measure_faithfulness(result, model)
    except Exception:  # noqa: BLE001 - the badge is a bonus: never take the document down with it
        logging.getLogger("chumoku").exception("faithfulness failed for %s", result.document.sha256)
        st.caption("Faithfulness could not be measured for this document.")
        return
    if f.ratio_random is None:
        st.caption(f"Faithfulness: not measurable on this document ({f.windows} windows with enough words).")
        return
    good = f.ratio_random >= 2.0 and (f.ratio_baseline or 0) >= 1.0
    st.markdown(f":{'green' if good else 'orange'}-badge[:material/verified: faithfulness {f.badge}] "
                f"<small>{escape_markdown(f.explanation)}</small>", unsafe_allow_html=True)
