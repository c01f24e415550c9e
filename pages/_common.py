"""Streamlit glue shared by every page: named session keys, the shared model, analysis with progress.

Everything here is thin: computing lives in attn_core. Plain session-state keys (not widget keys)
hold what must survive a page switch: the session's documents, the open document and the settings.
"""
from __future__ import annotations

import enum
import functools
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import streamlit as st

import attn_core as ac
from attn_core import render
from attn_core.ingest_worker import ingest_isolated
from attn_core.library import SINGLE_USER, Library, default_library, normalise_identity
from attn_core.models import AUTO_MODEL_ID, Availability, availability, resolve_model_id
from attn_core.render import escape_markdown
from attn_core.results import Runtime
from attn_core.runtime import runtime_label
from attn_core.sharing import default_share_links

ROUTE_PARAM = "page"  # set while a link that reached a page before the entry script is routed through it


def ensure_navigation() -> None:
    """Run every page through dashboard.py, even when a share link is a fresh server's first request.

    With a `pages/` folder beside the main script, Streamlit starts in its old "pages folder" mode until a
    run calls `st.navigation`; a first request for /screen then runs pages/screen.py alone (no session
    defaults, no sidebar). Such a run detours through dashboard.py, which sends it on to the page the link
    named, with the link's query params.
    """
    if state().started:
        return
    page = st.context.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] if st.context.url else ""
    st.switch_page("dashboard.py", query_params={**st.query_params.to_dict(), ROUTE_PARAM: page})


# ---- session state: one typed object ------------------------------------------------------------------
@dataclass
class SessionState:
    """Everything this reviewer's session keeps across reruns and pages (widget values live in their keys)."""

    docs: list[str] = field(default_factory=list)  # SHA-256 of the documents this session lists: its workspace's
    # (sync_workspace, every run) and its own uploads, in order
    names: dict[str, str] = field(default_factory=dict)  # sha -> the file name *this* session uploaded it as
    lang_override: dict[str, str] = field(default_factory=dict)  # sha -> "ja" | "en" chosen by the reviewer
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file name, message) of the last upload batch
    batch_errors: list[tuple[str, str]] = field(default_factory=list)
    selected: str | None = None  # sha of the document open in Screen / Explorer
    model_id: str = AUTO_MODEL_ID
    method: str = str(ac.Settings().method)
    layer: str | int = "last"
    head: str | int = "mean"
    runtime: str = ""  # "": the server's default runtime (Models & cache page); else a Runtime value
    top_percent: int = int(render.DEFAULT_TOP_PERCENT)
    seen_uploads: set = field(default_factory=set)  # file_id of uploads already ingested
    queries: dict[str, ac.Query] = field(default_factory=dict)  # page -> the claim or query entered there
    focus: tuple[str, int] | None = None  # (sha, character offset): a passage to bring into view on Screen
    approved: set = field(default_factory=set)  # long claim readings the reviewer asked to run
    stopped: set = field(default_factory=set)  # (page, sha) runs the reviewer stopped; resumed on request
    started: bool = False
    # per run, not per session: the model slot in the sidebar and the Readers loaded in this run
    readers: dict[str, ac.Reader | None] = field(default_factory=dict)
    model_slot: object | None = None


STATE = "chumoku"
SHARED_PARAMS = {"model": "model_id", "method": "method", "layer": "layer", "head": "head", "top": "top_percent"}
SHARE_PARAM = "share"  # an unguessable token naming a shared view (sharing.py); documents are never named by hash
UPLOAD_TYPES = sorted(ext.lstrip(".") for ext in ac.SUPPORTED_EXTENSIONS)
SESSION_MAX_BYTES = 200 * 1024 * 1024  # all uploads of one session together


def state() -> SessionState:
    """This session's state (created on first use)."""
    if STATE not in st.session_state:
        st.session_state[STATE] = SessionState()
    return st.session_state[STATE]


def parse_param(field_name: str, raw: str):
    """A share-link value for a state field: numbers bounded and finite, everything else as text."""
    if field_name in ("layer", "head"):
        raw = raw.strip()[:12]
        return int(raw) if raw.lstrip("-").isdigit() else raw
    if field_name == "top_percent":
        try:
            value = float(raw[:12])
        except ValueError:
            return SessionState.top_percent
        return min(100, max(1, int(value))) if math.isfinite(value) else SessionState.top_percent
    return raw[:300]


def offered_models() -> list[str]:
    """The models this server offers in its sidebar: a link may pick one of these, never an arbitrary
    folder or hub id (that would let anyone make the server load any path and learn which exist)."""
    return [AUTO_MODEL_ID] + [m.id for m in ac.RECOMMENDED_MODELS]


def apply_params(params: dict[str, str]) -> None:
    s = state()
    for param, name in SHARED_PARAMS.items():
        if param not in params:
            continue
        value = parse_param(name, params[param])
        if name == "model_id" and value not in offered_models():
            continue
        setattr(s, name, value)


@functools.cache
def favicon() -> bytes:
    """The tab icon, a 32×32 PNG: lines of text on a page, one of them shaded orange (where to read first).
    Drawn once per process, not on every rerun."""
    import io

    from PIL import Image  # Pillow comes with matplotlib (requirements.txt)

    img = np.full((32, 32, 3), 255, dtype=np.uint8)
    for top, width, rgb in ((6, 24, (173, 181, 189)), (13, 20, (253, 126, 20)), (20, 24, (173, 181, 189)),
                            (26, 14, (173, 181, 189))):
        img[top:top + 4, 4:4 + width] = rgb
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def init_state() -> None:
    """Defaults once per session; a share link's view wins on the first run (its token, then its params)."""
    s = state()
    if not s.started:
        s.started = True
        apply_params(st.query_params.to_dict())
        token = st.query_params.get(SHARE_PARAM)
        view = default_share_links().resolve(token) if token else None
        if view is not None:
            apply_params(view.params)
            s.selected = view.sha256
            open_shared(view.sha256)


def share_params() -> dict[str, str]:
    """The query params that reopen the current view (document by hash, settings)."""
    s, defaults, out = state(), SessionState(), {}
    for param, name in SHARED_PARAMS.items():
        value = getattr(s, name)
        if value is not None and value != getattr(defaults, name):
            out[param] = str(value)
    return out


def sync_query_params() -> None:
    params = share_params()
    if dict(st.query_params) != params:
        st.query_params.from_dict(params)


def share_url(page: str = "screen") -> str:
    """The full link to this view on this server (relative when the server's address is unknown): the
    settings, and the open document by an unguessable token made for this link."""
    from urllib.parse import urlencode, urlsplit

    params = share_params()
    s = state()
    if s.selected:
        params[SHARE_PARAM] = default_share_links().create(s.selected, dict(params), reviewer())
    query = urlencode(params)
    try:
        parts = urlsplit(st.context.url or "")
        base = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
        prefix = parts.path.rsplit("/", 1)[0] if parts.path else ""
    except Exception:  # noqa: BLE001 - no request context (tests, bare mode)
        base, prefix = "", ""
    return f"{base}{prefix}/{page}" + (f"?{query}" if query else "")


# ---- the shared Reader ---------------------------------------------------------------------------------
def get_reader(model_id: str, runtime: str = "") -> ac.Reader:
    """One Reader (model, store, memo) per model and runtime for every session (read-only use; captures are
    per thread). `runtime` "": the server's ($CHUMOKU_RUNTIME, else auto), which builds a missing ONNX export
    in the background."""
    return _shared_reader(model_id, runtime)  # one cache key however the caller passed the arguments


@st.cache_resource(show_spinner=False, max_entries=4)
def _shared_reader(model_id: str, runtime: str) -> ac.Reader:
    return ac.Reader.load(model_id, runtime=Runtime.chosen(runtime), background=True)


def server_runtime() -> Runtime:
    """This server's default runtime ($CHUMOKU_RUNTIME, else auto); auto when the variable names no runtime
    (loading a model then shows why in the sidebar)."""
    try:
        return Runtime.default()
    except ac.SettingsError:
        return Runtime.AUTO


def current_reader(languages: Sequence[str] = ()) -> ac.Reader | None:
    """The Reader for the sidebar's model — with "Automatic", the default for these languages (Japanese:
    the multilingual model, English: MiniLM; one model for a set that mixes them). Loaded when a page first
    needs it, so the page's widgets are already on screen while a cold model loads; its status (or error)
    goes to the sidebar."""
    s = state()
    model_id = resolve_model_id(s.model_id, list(languages))
    if model_id in s.readers:
        return s.readers[model_id]
    reader = None
    with s.model_slot or st.sidebar.container():  # appended: with "Automatic" each language shows its model
        try:
            with st.spinner(f"Loading {escape_markdown(model_id)}…"):
                reader = get_reader(model_id, s.runtime)
        except ac.ChumokuError as exc:
            st.error(escape_markdown(exc.message))
        if reader is not None:
            _check_settings(reader)
            st.caption(model_status(reader.model) + (" · chosen for " + "/".join(sorted(set(languages)))
                                                     if s.model_id == AUTO_MODEL_ID and languages else ""))
            if reader.model.info.fallback_reason:
                st.warning(f"Using the offline default: {escape_markdown(reader.model.info.fallback_reason)}")
    s.readers[model_id] = reader
    return reader


def _check_settings(reader: ac.Reader) -> None:
    """A layer/head from a share link or the sidebar that this model lacks is reset, with the reason."""
    s = state()
    for name, default in (("method", str(ac.Settings().method)), ("layer", "last"), ("head", "mean")):
        try:
            reader.check(ac.Settings(**{name: getattr(s, name)}))
        except ac.SettingsError as exc:
            st.error(f"{escape_markdown(exc.message)}; using {default}.")
            setattr(s, name, default)


def settings() -> ac.Settings:
    s = state()
    return ac.Settings(method=s.method, layer=s.layer, head=s.head)


def library() -> Library:
    return default_library()


# ---- identity and workspace ----------------------------------------------------------------------------
class Mode(enum.StrEnum):
    """How this server is run: one shared workspace, or reviewers who sign in (OpenID Connect)."""

    SINGLE_USER = "single-user"
    TEAM = "team"


SINGLE_USER_NOTICE = "Single-user mode: everyone who opens this server shares one workspace."
NOBODY = "\x00nobody"  # the viewer before sign-in on a team server: an identity no provider issues, sees nothing


def mode() -> Mode:
    """Team mode exactly when `.streamlit/secrets.toml` has an `[auth]` section, i.e. when `st.login` works:
    a server without a login must not pretend to keep reviewers apart."""
    secrets = st.secrets
    try:
        return Mode.TEAM if secrets.load_if_toml_exists() and "auth" in secrets else Mode.SINGLE_USER
    except Exception:  # noqa: BLE001 - an unreadable secrets file: Streamlit logs it; no login is possible
        return Mode.SINGLE_USER


def reviewer() -> str | None:
    """Who is marking: the single-user workspace's reviewer (SINGLE_USER), the signed-in reviewer's e-mail
    (else their OIDC subject) in team mode, or None on a team server before sign-in."""
    if mode() == Mode.SINGLE_USER:
        return SINGLE_USER
    user = st.user
    if not user.get("is_logged_in"):
        return None
    identity = user.get("email") or user.get("sub")
    return normalise_identity(str(identity)) if identity else None


def viewer() -> str | None:
    """Whose documents this session may see, as the library takes it: None (single-user: everything), the
    signed-in reviewer, or NOBODY before sign-in."""
    if mode() == Mode.SINGLE_USER:
        return None
    return reviewer() or NOBODY


def reviewer_label(identity: str | None) -> str:
    """A reviewer's name as pages show it (escape it for Markdown/HTML where it is rendered)."""
    from attn_core.library import reviewer_label as label

    return label(identity or "")


def may_see(sha: str) -> bool:
    """Whether this session may open the document: share links and the Library page both ask."""
    return isinstance(sha, str) and len(sha) == 64 and library().can_see(viewer(), sha)


def sync_workspace() -> None:
    """Keep this session's document list in step with its workspace, on every run (dashboard.py calls it).

    Single-user mode: every document of the library, so a reload or a new tab finds them all. Team mode:
    the reviewer's own documents and those of their matters; one that was removed, or whose matter the
    reviewer left, drops out. The session's own order and upload names (SessionState.names) are kept."""
    s = state()
    visible = library().document_shas(viewer())
    allowed = set(visible)
    known = [sha for sha in s.docs if sha in allowed]
    seen = set(known)
    s.docs = known + [sha for sha in visible if sha not in seen]
    if s.selected is not None and s.selected not in allowed:
        s.selected = None


def open_document(sha: str) -> bool:
    """Open a stored document in this session (the Library page): no upload, the same access check as a
    share link. False when this reviewer may not see it (or it is gone)."""
    if not may_see(sha):
        return False
    s = state()
    if sha not in s.docs:
        s.docs.append(sha)
    s.selected = sha
    return True


def _remember_reading(result: ac.AnalysisResult) -> None:
    """The Library page lists the model that last read each document."""
    try:
        st_ = result.settings
        library().record_reading(result.document.sha256, result.model.id, result.model.identity, str(st_.method),
                                 st_.layer, st_.head)
    except Exception:  # noqa: BLE001 - bookkeeping never takes a page down
        logging.getLogger("chumoku").exception("could not record the reading of %s", result.document.sha256)


# ---- documents --------------------------------------------------------------------------------------
def session_documents() -> list[ac.Document]:
    """This session's documents under the names this session gave them (with its language overrides)."""
    lib, s, out = library(), state(), []
    for sha in s.docs:
        doc = lib.get_document(sha)
        if doc is None:
            continue
        name = s.names.get(sha, doc.name)
        lang = s.lang_override.get(sha, doc.language)
        if name != doc.name or lang != doc.language:
            doc = replace(doc, name=name, language=lang)
        out.append(doc)
    return out


def add_document(doc: ac.Document) -> None:
    """Store an upload in the reviewer's area (single-user: the one workspace) and list it in this session."""
    library().save_document(doc, owner=reviewer() or SINGLE_USER)
    s = state()
    if doc.sha256 not in s.docs:
        s.docs.append(doc.sha256)
        s.names[doc.sha256] = doc.name
    if s.selected is None:
        s.selected = doc.sha256


def open_shared(sha: str) -> bool:
    """A share link names a document by hash: add it to this session if the server has it."""
    s = state()
    if sha in s.docs:
        return True
    if not may_see(sha):  # team mode: knowing a hash is not enough, the reviewer must be allowed to see it
        s.selected = None
        return False
    return open_document(sha)


def ingest_uploads(files) -> tuple[list[ac.Document], list[tuple[str, str]]]:
    """Ingest new uploads; a bad file becomes (name, message) and never stops the others."""
    docs, errors, fresh = [], [], False
    s = state()
    budget: int | None = None  # counted on the first new file: every rerun passes here, few bring one
    for f in files or []:
        if f.file_id in s.seen_uploads:
            continue
        s.seen_uploads.add(f.file_id)
        fresh = True
        if budget is None:  # this session's uploads, not the whole workspace
            budget = SESSION_MAX_BYTES - sum(len(d.text.encode("utf-8")) for d in session_documents()
                                             if d.sha256 in s.names)
        size = f.size
        if size > budget:
            errors.append((f.name, f"this session's upload limit ({SESSION_MAX_BYTES // 2**20} MB) is reached; "
                                   f"start a new session to screen more documents"))
            continue
        budget -= size  # counted whether or not the file can be read: failing uploads use the budget too
        try:
            doc = ingest_isolated(f.getvalue(), f.name)  # a worker process: a hostile file fails only itself
        except ac.ChumokuError as exc:
            errors.append((f.name, exc.message))
            continue
        except Exception as exc:  # noqa: BLE001 - a reviewer sees a message, never a stack trace
            errors.append((f.name, f"could not be read ({type(exc).__name__})"))
            continue
        add_document(doc)
        state().names[doc.sha256] = doc.name
        docs.append(doc)
    if fresh:  # the errors of the last batch stay in view until the next upload (reruns keep them)
        s.errors = errors
    return docs, errors


# ---- reading ----------------------------------------------------------------------------------------
def read(doc: ac.Document, reader: ac.Reader, query: ac.Query | None = None, element: int | None = None,
         container=None, what: str = "chunks") -> ac.AnalysisResult:
    """A reading with a progress bar; the Reader's memo and the disk cache make repeats instant."""
    hit = reader.cached(doc, query, element, settings())
    if hit is not None:
        _remember_reading(hit)
        return hit
    where = container or st
    name = escape_markdown(doc.name)  # progress text is Markdown: a file name must stay literal
    bar = where.progress(0.0, text=f"{name}: preparing…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(1, total), text=f"{name}: {done}/{total} {what}")

    result = reader.read(doc, query, element, settings=settings(), progress=progress)
    bar.empty()
    _remember_reading(result)
    return result


AUTO_RUN_SECONDS = 15.0  # a longer reading waits for the reviewer's Run (with its estimate) and offers Stop


def read_when_asked(doc: ac.Document, reader: ac.Reader, query: ac.Query, element: int | None, where,
                    page: str) -> ac.AnalysisResult | None:
    """A claim/query reading: at once when it is short or cached, else after the reviewer clicks Run (the
    button shows the estimate); Stop interrupts it (finished chunks stay cached). None until then."""
    s = state()
    run = (page, doc.sha256, query.text, tuple(query.elements), element)
    estimate = reader.estimate_seconds(doc, query, element, settings())
    if estimate > AUTO_RUN_SECONDS and run not in s.approved:
        where.info(f"Reading **{escape_markdown(doc.name)}** for this claim takes about {estimate:.0f} s on this "
                   f"machine ({reader.model.info.device}). Until then the passages are ranked without the claim.",
                   icon=":material/schedule:")
        if where.button(f"Run (≈ {estimate:.0f} s)", key=f"{page}.run", type="primary",
                        icon=":material/play_arrow:"):
            s.approved.add(run)
            st.rerun()
        return None
    stop = where.empty()
    if estimate > 0:
        stop.button("Stop", key=f"{page}.query.stop", icon=":material/stop_circle:",
                    on_click=s.approved.discard, args=(run,), help="Finished chunks stay cached.")
    result = read(doc, reader, query, element, container=where, what="query × chunk passes")
    stop.empty()
    return result


def cached_result(doc: ac.Document, reader: ac.Reader) -> ac.AnalysisResult | None:
    return reader.cached(doc, settings=settings())


def model_status(model: ac.LoadedModel) -> str:
    info = model.info
    where = "offline (bundled weights)" if availability(info.id) == Availability.OFFLINE else "local/hub"
    return (f"**{escape_markdown(info.id)}** · {info.kind} · {info.device} · {where} · "
            f"{info.max_tokens} tokens per chunk · {escape_markdown(runtime_label(model))}")


def unk_warning(result: ac.AnalysisResult) -> str | None:
    """The reviewer-facing warning when the model does not fit the document's language."""
    if result.unk_rate <= 0.05:
        return None
    rec = ac.recommended_for(result.document.language)
    return (f"{result.unk_rate:.0%} of this document's tokens are unknown to **{escape_markdown(result.model.id)}** "
            f"(\\[UNK\\]): "
            f"it does not fit this language, so the shading is unreliable. Use **{rec.id}** instead "
            f"(to get it for offline use: `{rec.download_command}`, then pick it in the sidebar).")


def clear_all_caches() -> dict[str, int]:
    """"Clear cache": every Reader's memo, the result store, the tokenisation memo and Streamlit's caches.
    The library (documents and reviewer marks) is never touched."""
    totals = {"memo": 0, "stored": 0}
    cleared_store = False
    for model_id in list(_loaded_model_ids()):
        try:
            reader = get_reader(model_id, state().runtime)
        except ac.ChumokuError:
            continue
        counts = reader.clear()
        totals["memo"] += counts["memo"]
        if not cleared_store:
            totals["stored"] += counts["stored"]
            cleared_store = True
    if not cleared_store:
        store = ac.default_store()
        totals["stored"] = store.count()
        store.clear()
    st.cache_data.clear()
    return totals


def _loaded_model_ids() -> set[str]:
    """Model ids whose Reader this session has used (for clearing every memo)."""
    s = state()
    return {resolve_model_id(s.model_id, ["en"]), resolve_model_id(s.model_id, ["ja"]), *s.readers}


# ---- the reviewer's claim or query (Screen and Batch each hold their own) ----------------------------------
QUERY_SOURCES = ("Type or paste", "A claim of a document", "A text file")


def query_editor(docs: list[ac.Document], page: str, open_sha: str | None = None,
                 languages: Sequence[str] | None = None) -> ac.Query | None:
    """Claim/query input: pasted, one of a patent's claims (the open document's first), or a file; its
    elements editable one per row. Each page keeps its own query: nothing is carried silently elsewhere.
    The query is checked by the model that will read it with these documents (a Japanese claim against
    English documents: the multilingual model)."""
    s = state()
    current: ac.Query | None = s.queries.get(page)
    source = st.radio("Query from", QUERY_SOURCES, horizontal=True, key=f"{page}.qsource")
    text = ""
    if source == QUERY_SOURCES[0]:
        text = st.text_area("Claim or query", value=current.text if current else "", height=110, key=f"{page}.qtext",
                            placeholder="1. A system for …, comprising: a …; and a … wherein …  /  "
                                        "【請求項１】…と、…とを備える…")
    elif source == QUERY_SOURCES[1]:
        with_claims = [(d, ac.extract_claims(d)) for d in docs]
        with_claims = [(d, c) for d, c in with_claims if c]
        if not with_claims:
            st.info("None of these documents has claims Chumoku can find "
                    "(US 'CLAIMS' section / USPTO XML, or 【請求項１】).")
        else:
            shas = [d.sha256 for d, _ in with_claims]
            if st.session_state.get(f"{page}.qdoc.open") != open_sha:  # the open document's claims by default
                st.session_state[f"{page}.qdoc.open"] = open_sha
                st.session_state[f"{page}.qdoc"] = shas.index(open_sha) if open_sha in shas else 0
            pick = st.selectbox("Patent", range(len(with_claims)), key=f"{page}.qdoc",
                                format_func=lambda i: with_claims[i][0].name)
            claims = with_claims[pick][1]
            n = st.selectbox("Claim", range(len(claims)), key=f"{page}.qclaim",
                             format_func=lambda i: f"claim {claims[i].number}: {claims[i].text[:80]}…")
            text = claims[n].text
    else:
        f = st.file_uploader("Query file", type=["txt", "md"], key=f"{page}.qfile")
        if f is not None:
            try:
                text = ingest_isolated(f.getvalue(), f.name).text
            except ac.ChumokuError as exc:
                st.error(f"{escape_markdown(f.name)}: {escape_markdown(exc.message)}")
    if not text.strip():
        s.queries.pop(page, None)
        return None
    try:
        query = ac.make_query(text)
    except ac.QueryError as exc:
        st.error(escape_markdown(exc.message))
        return None
    if current is not None and current.text == query.text:
        query = query.with_elements(current.elements)  # keep the reviewer's edits across reruns
    st.caption("Claim elements: edit, add or delete rows; each is matched and charted on its own.")
    edited = st.data_editor({"element": list(query.elements)}, num_rows="dynamic", width="stretch",
                            key=f"{page}.elements.{hash(query.text) & 0xffffffff:x}")
    query = query.with_elements([str(e) for e in edited["element"] if e is not None])
    reader = current_reader([*(languages or {d.language for d in docs}), query.language])
    if reader is None:
        return None
    try:
        query = reader.check_query(query)
    except ac.QueryError as exc:
        st.error(escape_markdown(exc.message))
        return None
    s.queries[page] = query
    return query


def rank(query: ac.Query, docs: list[ac.Document], reader: ac.Reader) -> list:
    """Documents ranked against the query; passage embeddings come from the disk cache after the first time."""
    bar = st.progress(0.0, text="Embedding passages…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(1, total), text=f"Embedding passages: {done}/{total}")

    ranked = reader.rank(query, docs, progress=progress)
    bar.empty()
    return ranked


def faithfulness_badge(result: ac.AnalysisResult, reader: ac.Reader) -> None:
    """The measured badge: how much the model's output moves when the shaded words are deleted. Below the
    word-length baseline it says so plainly: the shading then tells the reviewer nothing the text did not."""
    try:
        with st.spinner("Measuring how much the model relies on the shaded words…"):
            f = reader.faithfulness(result)
    except Exception:  # noqa: BLE001 - the badge is a bonus: never take the document down with it
        logging.getLogger("chumoku").exception("faithfulness failed for %s", result.document.sha256)
        st.caption("Faithfulness could not be measured for this document.")
        return
    if f.ratio_random is None:
        st.caption(f"Faithfulness: not measurable on this document ({f.windows} windows with enough words).")
        return
    explanation = escape_markdown(f.explanation)
    if (f.ratio_baseline or 0) < 1.0 or f.ratio_random < 2.0:
        next_step = ("Go by the passage ranking (it ranks passages by relevance to the claim, not by this "
                     "shading) and read the passages themselves." if result.query is not None else
                     "Go by the read-first list and the text; another model or reduction (sidebar) may shade "
                     "more faithfully.")
        st.warning(f"The shading is weak evidence here: deleting the shaded words moves the model "
                   f"{f.badge}. {explanation} {next_step}", icon=":material/warning:")
        return
    st.markdown(f":green-badge[faithfulness {f.badge}] "
                f"<small>{explanation}</small>", unsafe_allow_html=True)


def scroll_to(element_id: str) -> None:
    """Bring an element of the page into view and outline it (a claim-chart click lands on its passage).

    Streamlit's HTML is not allowed to run scripts, so a zero-height component (same origin) does it; it
    retries for a few seconds because the document may still be rendering."""
    import json

    import streamlit.components.v1 as components

    target = json.dumps(element_id)
    components.html(f"""<script>
    let tries = 0;
    const timer = setInterval(() => {{
      const el = window.parent.document.getElementById({target});
      if (el || ++tries > 50) {{ clearInterval(timer); }}
      if (el) {{ el.scrollIntoView({{block: "start"}}); el.style.outline = "3px solid #fd7e14"; }}
    }}, 100);
    </script>""", height=0)

