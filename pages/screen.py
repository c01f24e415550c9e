"""Screen: upload documents, see where to read first, read the shaded text.

Reads top to bottom: widgets → analysis (selected document first, with progress) → the selected document
→ downloads and share link → the session's other documents analysed in the background of the run.
All computing is in attn_core; this page only arranges widgets and shows what the engine returns.
"""
from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

import attn_core as ac
from attn_core import export, render
from pages import _common as ui

log = logging.getLogger("chumoku.screen")
md = render.escape_markdown  # file names and engine messages shown through Markdown stay literal text

READ_FIRST_K = 10
SALIENT, FOR_QUERY = "salient (no query)", "for this query"
DOC_HEIGHT = 760  # px: the document scrolls inside its own box, so the read-first list stays in view
LANGUAGES = {"auto": "auto", "ja": "Japanese (ja)", "en": "English (en)"}

ui.ensure_navigation()  # a share link may be a fresh server's first request
st.title("Screen")

# ---- widgets --------------------------------------------------------------------------------------------
# No `type=` filter: Streamlit rejects a whole upload when one file has another extension. Every file
# reaches ingestion instead, and an unsupported one gets its own typed error beside the others.
uploads = st.file_uploader(
    "Documents", accept_multiple_files=True, key="uploader",
    help=f"Several files at once: {', '.join('.' + t for t in ui.UPLOAD_TYPES)}. "
         "A file that cannot be read is reported here and never stops the others.")
state = ui.state()
listed = set(state.docs)
new_docs, _ = ui.ingest_uploads(uploads)
if new_docs:  # open the first upload not already listed (else the first); the others stay in the picker
    state.selected = next((d for d in new_docs if d.sha256 not in listed), new_docs[0]).sha256
for name, message in state.errors:
    st.error(f"**{md(name)}** — {md(message)}", icon=":material/error:")

documents = ui.session_documents()
if not documents:
    st.info("Upload one or more documents (Japanese or English), or open the demo documents from Home.")
    ui.sync_query_params()
    ui.current_reader(["en"])  # load it now, while the reviewer picks files (the page above is already shown)
    st.stop()

by_sha = {d.sha256: d for d in documents}
shas = list(by_sha)
if state.selected not in by_sha:
    state.selected = shas[-1]
# state.selected is the truth (Batch's "Open in Screen", the claim chart and share links set it)
st.session_state["screen.picker"] = state.selected


def picked() -> None:
    state.selected = st.session_state["screen.picker"]


c_pick, c_lang, c_top, c_find = st.columns([4, 2, 2, 3])
selected = c_pick.selectbox(
    "Document", shas, key="screen.picker", on_change=picked,
    format_func=lambda sha: f"{by_sha[sha].name} · {by_sha[sha].chars:,} chars")

detected = (ui.library().get_document(selected) or by_sha[selected]).language
overrides: dict = state.lang_override
lang_key = f"screen.lang.{selected}"
if lang_key not in st.session_state:
    st.session_state[lang_key] = overrides.get(selected, "auto")
lang = c_lang.selectbox("Language", list(LANGUAGES), key=lang_key,
                        format_func=lambda k: f"auto (detected: {detected})" if k == "auto" else LANGUAGES[k],
                        help="Detected from the script; override it when the detection is wrong. "
                             "It decides the word segmentation and the recommended model.")
if lang == "auto":
    overrides.pop(selected, None)
else:
    overrides[selected] = lang

if "screen.top" not in st.session_state:
    st.session_state["screen.top"] = int(state.top_percent)
state.top_percent = c_top.slider(
    "Shade the top % of words", 1, 100, key="screen.top",
    help="Words above this percentile of attention are shaded; darker means more attention.")
top_percent = state.top_percent
find = c_find.text_input("Find in document", key="screen.find", placeholder="word or phrase")

documents = ui.session_documents()  # again: the language override may have changed one
by_sha = {d.sha256: d for d in documents}
doc = by_sha[selected]
reader = ui.current_reader([doc.language])
model = reader.model if reader is not None else None

query, element = None, None
if reader is not None:
    with st.expander("Read for a claim or query", expanded="screen" in state.queries,
                     icon=":material/manage_search:"):
        query = ui.query_editor(documents, page="screen", open_sha=selected, languages=[doc.language])
        if query is not None:
            views = [SALIENT, FOR_QUERY] + [f"element {i + 1}: {md(e[:60])}" for i, e in enumerate(query.elements)]
            view = st.radio("Highlight", range(len(views)), format_func=lambda i: views[i], horizontal=True,
                            index=1, key="screen.view",
                            help="Salient: what the model attends to in the document on its own. For this query: "
                                 "the attention the query's tokens pay to each word (element by element for "
                                 "long claims). An element: only that part of the claim.")
            if view == 0:
                query = None
            elif view >= 2:
                element = view - 2

# ---- analysis -------------------------------------------------------------------------------------------
progress_area = st.container()  # analysis progress shows here, above the document


def analyse(d: ac.Document, where) -> ac.AnalysisResult | None:
    """Read `d` with its own model ("Automatic" picks one per language), showing an error, never a trace."""
    try:
        d_reader = ui.current_reader([d.language])
        if d_reader is None:
            return None
        return ui.read(d, d_reader, container=where)
    except ac.ChumokuError as exc:
        where.error(f"**{md(d.name)}** — {md(exc.message)}", icon=":material/error:")
    except Exception:  # noqa: BLE001 - logged for the operator; the reviewer sees a sentence
        log.exception("analysis failed for %s", d.sha256)
        where.error(f"**{md(d.name)}** could not be analysed (an internal error; it is in the server log).",
                    icon=":material/error:")
    return None


def html_block(fragment: str) -> None:
    """Show escaped engine HTML. `st.html` (DOMPurify, then innerHTML) rather than `st.markdown`: the same ids,
    classes and inline styles survive, a second sanitiser stands behind our escaping, and a 100-page document
    (1 MB of HTML, 10k spans) appears in a fraction of the time Markdown-to-React takes to rebuild it."""
    st.html(render.STYLE_TAG + fragment)


result = None
run_key = ("screen", doc.sha256)
if reader is None:
    st.error("No model is loaded: pick another one in the sidebar.", icon=":material/error:")
elif (result := ui.cached_result(doc, reader)) is None:
    if run_key in state.stopped:
        progress_area.info(f"You stopped the analysis of {md(doc.name)}. Finished chunks are kept: resuming "
                           f"continues from there.", icon=":material/pause_circle:")
        if progress_area.button("Resume the analysis", key="screen.resume", icon=":material/play_arrow:"):
            state.stopped.discard(run_key)
            st.rerun()
    else:
        stop_slot = progress_area.empty()  # Stop exists only while the analysis runs
        stop_slot.button("Stop the analysis", key="screen.stop", icon=":material/stop_circle:",
                         on_click=state.stopped.add, args=(run_key,),
                         help="Stops after the current batch; finished chunks stay cached, so Resume continues.")
        with progress_area.status(f"Analysing {md(doc.name)}…", expanded=True) as status:
            result = analyse(doc, status)
            if result is not None:
                n = len(result.chunks)
                status.update(label=f"Analysed {md(doc.name)}: {n} chunk{'s' * (n != 1)} in {result.seconds:.1f} s "
                                    f"({result.cached_chunks} from the cache)", state="complete", expanded=False)
            else:
                status.update(label=f"{md(doc.name)} could not be analysed", state="error")
        stop_slot.empty()
if result is not None and query is not None:
    salient, result = result, None
    reader = ui.current_reader([doc.language, query.language])  # a cross-lingual query: the multilingual model
    try:
        result = ui.read_when_asked(doc, reader, query, element, progress_area, page="screen")
    except ac.ChumokuError as exc:
        st.error(md(exc.message), icon=":material/error:")
    if result is None:
        result, query = salient, None  # until the reviewer runs it (or after Stop), the salient view stays

# ---- the selected document ------------------------------------------------------------------------------
if result is not None:
    st.subheader(md(doc.name), anchor=False)
    st.caption(f"{doc.language} · {doc.chars:,} characters · {md(doc.source_format)} · {len(result.chunks)} "
               f"chunk{'s' * (len(result.chunks) != 1)} · "
               f"{len(result.passages)} passages · [UNK] rate {result.unk_rate:.1%} · model {md(result.model.id)} · "
               f"method {md(result.settings.method)}")
    for note in doc.notes:
        st.caption(md(note))
    if result.model.fallback_reason:
        st.warning(f"Analysed with the offline default model: {md(result.model.fallback_reason)}")
    if warning := ui.unk_warning(result):
        st.warning(warning, icon=":material/warning:")
    if result.label is not None:
        c_label, c_chunks = st.columns([1, 3])
        c_label.metric("Predicted label", result.label, f"{result.probability:.0%} probability", delta_color="off")
        with c_chunks.expander(f"Label per chunk ({len(result.chunks)} chunks)"):
            st.dataframe(pd.DataFrame([{"chunk": c.index, "characters": f"{c.core_start:,}–{c.core_end:,}",
                                        "label": c.label, "probability": c.probability} for c in result.chunks]),
                         hide_index=True, column_config={"probability": st.column_config.ProgressColumn(
                             "probability", min_value=0.0, max_value=1.0, format="%.2f")})

    if query is not None:
        what = "the whole query" if element is None else f"element {element + 1} ({md(query.elements[element][:80])})"
        ranking = ("by relevance to it (keywords and meaning, per claim element)"
                   if result.query is not None and result.query.ranking == "relevance" else "by the query's attention")
        st.info(f"Passages are ranked **for {what}** {ranking}. Words are shaded by the attention the query pays "
                f"them, relative to the attention the document's own tokens pay them (last layer, heads averaged).",
                icon=":material/manage_search:")
    badge = st.empty()  # filled after the document is on screen: the deletion test takes a few seconds

    html_block(render.legend_html(top_percent) + render.minimap_html(result))
    c_first, c_doc = st.columns([2, 5], gap="medium")
    with c_first:
        st.markdown("**Read first**")
        html_block(render.read_first_html(result, READ_FIRST_K))
        if find and find.strip():
            hits = render.find_hits(result, find)
            total = sum(n for _, n in hits)
            st.markdown(f"**Find:** {total} match{'es' if total != 1 else ''} in {len(hits)} passage"
                        f"{'s' if len(hits) != 1 else ''}")
            if hits:
                html_block(render.find_links_html(result, hits))
    with c_doc, st.container(height=DOC_HEIGHT, key="screen-doc"):
        html_block(render.render_document_html(result, top_percent=top_percent, find=find))
    if state.focus is not None and state.focus[0] == doc.sha256:  # opened from a claim-chart cell
        target = next((i for i, p in enumerate(result.passages) if p.start <= state.focus[1] < p.end), None)
        state.focus = None
        if target is not None:
            p = result.passages[target]
            st.info(f"Opened from the claim chart: {md(p.label or render.passage_preview(result, p, 60))}",
                    icon=":material/table_view:")
            ui.scroll_to(f"passage-{target}")

    c_html, c_csv, c_json, _ = st.columns([1, 1, 1, 3])
    shown = result  # the callables run when clicked, so a 100-page report costs nothing until asked for
    c_html.download_button("HTML report", lambda: export.report_html(shown, top_percent),
                           file_name=render.download_name(doc.name, "html"), mime="text/html",
                           on_click="ignore", key="screen.dl.html", icon=":material/download:")
    c_csv.download_button("CSV of word scores", lambda: export.to_csv(shown),
                          file_name=render.download_name(doc.name, "csv"), mime="text/csv",
                          on_click="ignore", key="screen.dl.csv", icon=":material/download:")
    c_json.download_button("JSON", lambda: export.to_json(shown),
                           file_name=render.download_name(doc.name, "json"), mime="application/json",
                           on_click="ignore", key="screen.dl.json", icon=":material/download:")

    with badge.container():
        ui.faithfulness_badge(result, reader)

# ---- share link -----------------------------------------------------------------------------------------
ui.sync_query_params()
with st.expander("Share this view"):
    st.caption("A teammate on this server opens the same document and settings with this link "
               "(the link carries a random token, not the document or its hash; nobody sees it without the link).")
    st.code(ui.share_url(), language=None)

# ---- the session's other documents ----------------------------------------------------------------------
if reader is not None:
    pending = [d for d in documents if d.sha256 != selected and ("screen", d.sha256) not in state.stopped
               and (r := ui.current_reader([d.language])) is not None and ui.cached_result(d, r) is None]
    if pending:
        with progress_area.status(f"Analysing {len(pending)} more document{'s' if len(pending) > 1 else ''}…",
                                  expanded=True) as status:
            done = sum(analyse(d, status) is not None for d in pending)
            status.update(label=f"Analysed {done} of {len(pending)} more documents; pick one above to read it",
                          state="complete" if done == len(pending) else "error", expanded=False)
