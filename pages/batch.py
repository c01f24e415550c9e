"""Batch: screen dozens of documents at once, mark them, export the marks."""
from __future__ import annotations

import pandas as pd
import streamlit as st

import attn_core as ac
from attn_core.library import REVIEW_STATUSES
from attn_core.render import escape_markdown as md_escape
from attn_core.screening import screening_table
from pages import _common as ui

ui.ensure_navigation()  # a share link may be a fresh server's first request

def save_mark(sha: str, name: str) -> None:
    """on_change of the status and note widgets: write the mark to the library at once."""
    status = st.session_state.get(f"batch.status.{sha}", "unread")
    note = st.session_state.get(f"batch.note.{sha}", "")
    ui.library().set_review(sha, name, status, note)


state = ui.state()
st.title("Batch screening")
st.caption("Upload a stack of documents: each is analysed, scored for how sharply its attention focuses, and listed "
           "with its read-first passages. Mark what you have read; marks are kept on this server.")

# ---- widgets ------------------------------------------------------------------------------------------
files = st.file_uploader("Documents (txt, md, html, pdf, docx, xml…)", accept_multiple_files=True,
                         key="batch_uploader", help="Dozens at once are fine; a file that cannot be read is "
                                                    "reported and the others are still screened.")
if files:
    new_docs, errors = ui.ingest_uploads(files)
    if new_docs or errors:
        state.batch_errors = errors
for name, message in state.batch_errors:
    st.error(f"**{md_escape(name)}**: {md_escape(message)}")

docs = ui.session_documents()
languages = sorted({d.language for d in docs}) or ["en"]
reader = ui.current_reader(languages)  # one model for the whole stack: rankings share one embedding space
if not docs:
    st.info("No documents yet: upload some above (or open the demo documents on Home).")
    st.stop()
if reader is None:
    st.warning("No model is loaded: pick one in the sidebar.")
    st.stop()

# ---- analysis (one call into attn_core per document; cached in memory and on disk) ---------------------
results: list[ac.AnalysisResult] = []
readers = {d.sha256: ui.current_reader([d.language]) or reader for d in docs}  # each read with its own model
todo = [d for d in docs if ui.cached_result(d, readers[d.sha256]) is None]
overall = st.progress(0.0, text=f"Analysing {len(todo)} of {len(docs)} documents…") if todo else None
per_doc = st.container()
for i, doc in enumerate(docs):
    try:
        results.append(ui.read(doc, readers[doc.sha256], container=per_doc))
    except ac.ChumokuError as exc:
        st.error(f"**{md_escape(doc.name)}**: {md_escape(exc.message)}")
    except Exception as exc:  # noqa: BLE001 - one bad document must not stop the batch
        st.error(f"**{md_escape(doc.name)}**: could not be analysed ({type(exc).__name__})")
    if overall is not None:
        overall.progress((i + 1) / len(docs), text=f"{i + 1}/{len(docs)} documents analysed")
if overall is not None:
    overall.empty()

# ---- ranking against a claim or query ---------------------------------------------------------------------
ranked = []
with st.expander("Rank against a claim or query", expanded="batch" in state.queries):
    query = ui.query_editor(docs, page="batch", open_sha=state.selected)
    if query is not None:
        ranked = ui.rank(query, [r.document for r in results],
                         ui.current_reader([*languages, query.language]))  # one embedding space
if ranked:
    st.subheader("Ranked against the query")
    st.dataframe(
        [{"rank": r.rank, "document": r.document.name, "score": round(r.score, 4),
          "best passage": " ".join(r.document.text[r.passages[0].start:r.passages[0].end].split())[:200]
          if r.passages else ""} for r in ranked],
        hide_index=True, width="stretch", key="batch.ranking",
        column_config={"score": st.column_config.ProgressColumn(
            "Score", min_value=0.0, max_value=1.0, format="%.3f",
            help="½ · mean cosine of the 3 best passages + ½ · mean over claim elements of their best passage")})
    st.markdown("**Claim chart** — for each claim element, the passage of each document that answers it best "
                "(paragraph number and opening words; darker = more relevant). Click a cell to open that passage.")
    cells = pd.DataFrame(ac.claim_chart_cells(ranked)).set_index("#")
    scores = pd.DataFrame(ac.claim_chart_rows(ranked)).set_index("#")
    columns = [c for c in cells.columns if c != "element"]
    shading = scores[columns].map(lambda v: f"background-color: rgba(253, 126, 20, {0.08 + 0.6 * float(v):.2f})")
    event = st.dataframe(cells.style.apply(lambda _: shading, axis=None, subset=columns), width="stretch",
                         key="batch.claimchart", on_select="rerun", selection_mode="single-cell",
                         column_config={"element": st.column_config.TextColumn("Element", width="medium"),
                                        **{c: st.column_config.TextColumn(c, width="medium") for c in columns}})
    picked_cells = event.selection.cells if event is not None else []
    if picked_cells and picked_cells[0][1] in columns:
        row, column = picked_cells[0]
        target = ranked[columns.index(column)]
        match = target.elements[row]
        if match.start is not None:
            state.selected = target.document.sha256
            state.focus = (target.document.sha256, match.start)
            st.switch_page("pages/screen.py")
    st.download_button("Claim chart (CSV)", ac.claim_chart_csv(ranked).encode("utf-8"),
                       file_name="chumoku-claim-chart.csv", mime="text/csv", key="batch.chartcsv",
                       on_click="ignore", icon=":material/download:")

# ---- the screening table ---------------------------------------------------------------------------------
lib = ui.library()
shas = [d.sha256 for d in docs]
table = screening_table(results, {r.sha256: r for r in lib.reviews(shas)})
st.subheader(f"{len(table)} documents")
st.dataframe(
    table, hide_index=True, width="stretch", key="batch.table",
    column_order=["document", "focus", "status", "note", "top passages", "language", "chars", "chunks", "unk_rate"],
    column_config={
        "document": st.column_config.TextColumn("Document", width="medium"),
        "focus": st.column_config.NumberColumn(
            "Focus", format="%.2f", help="Attention lift of the top 3 passages: how many times more attention an "
                                         "average token there gets than an average token of the document "
                                         "(1.0 = spread evenly). Comparable across documents."),
        "status": st.column_config.TextColumn("Mark"),
        "note": st.column_config.TextColumn("Note"),
        "top passages": st.column_config.TextColumn("Read first", width="large"),
        "language": st.column_config.TextColumn("Lang", width="small"),
        "chars": st.column_config.NumberColumn("Chars", format="%d"),
        "chunks": st.column_config.NumberColumn("Chunks", format="%d"),
        "unk_rate": st.column_config.NumberColumn("[UNK]", format="percent",
                                                  help="Share of unknown tokens: above ~5% the model does not fit "
                                                       "this language and its focus is unreliable."),
    })

# ---- marks and opening ------------------------------------------------------------------------------------
st.subheader("Review")
names = {d.sha256: d.name for d in docs}
first = [r.document.sha256 for r in ranked] or list(table["sha256"])
order = first + [sha for sha in shas if sha not in set(first)]
current = state.selected
pick = st.selectbox("Document", order, index=order.index(current) if current in order else 0,
                    format_func=lambda sha: names[sha], key="batch.pick")
mark = lib.review(pick)
left, right = st.columns([2, 3])
with left:
    st.radio("Mark", REVIEW_STATUSES, index=REVIEW_STATUSES.index(mark.status) if mark else 0, horizontal=True,
             key=f"batch.status.{pick}", on_change=save_mark, args=(pick, names[pick]))
    if st.button("Open in Screen", type="primary", key="batch.open", icon=":material/description:"):
        state.selected = pick
        st.switch_page("pages/screen.py")
with right:
    st.text_area("Note", value=mark.note if mark else "", key=f"batch.note.{pick}", height=90,
                 on_change=save_mark, args=(pick, names[pick]), placeholder="Why it matters, where to look…")

marks_csv = lib.reviews_csv(shas)
st.download_button("Export marks (CSV)", marks_csv.encode("utf-8"), file_name="chumoku-marks.csv", mime="text/csv",
                   key="batch.csv", on_click="ignore", icon=":material/download:",
                   help="This session's documents only.")
