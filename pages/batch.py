"""Batch: screen dozens of documents at once, mark them, export the marks."""
from __future__ import annotations

import pandas as pd
import streamlit as st

import attn_core as ac
from attn_core import export
from attn_core.library import REVIEW_STATUSES, MarkConflict, format_time
from attn_core.render import escape_markdown as md_escape
from attn_core.screening import screening_table
from pages import _common as ui

ui.ensure_navigation()  # a share link may be a fresh server's first request


# ---- the reviewer's mark form: loaded at a version, saved only on top of that version ----------------------------
def _mark_keys(sha: str) -> tuple[str, str, str, str]:
    return f"batch.status.{sha}", f"batch.note.{sha}", f"batch.version.{sha}", f"batch.conflict.{sha}"


def load_mark_form(sha: str, reviewer: str, force: bool = False) -> None:
    """Fill the form from the reviewer's current mark and remember its version. Only when the form is (re)shown
    or the reviewer asks: a form kept across reruns keeps the version it was loaded at, which is what makes a
    save on top of someone else's newer mark a conflict instead of a silent overwrite."""
    status_key, note_key, version_key, conflict_key = _mark_keys(sha)
    if force or status_key not in st.session_state or version_key not in st.session_state:
        mine = ui.library().mark(sha, reviewer)
        st.session_state[status_key] = str(mine.status) if mine else REVIEW_STATUSES[0]
        st.session_state[note_key] = mine.note if mine else ""
        st.session_state[version_key] = mine.version if mine else 0
        st.session_state.pop(conflict_key, None)


def save_mark(sha: str, name: str, reviewer: str, overwrite: bool = False) -> None:
    """The form's Save (and the conflict's "save mine anyway"): a new version of this reviewer's mark."""
    status_key, note_key, version_key, conflict_key = _mark_keys(sha)
    conflict = st.session_state.get(conflict_key)
    expected = conflict.version if overwrite and conflict is not None else st.session_state.get(version_key, 0)
    try:
        saved = ui.library().set_mark(sha, reviewer, st.session_state.get(status_key, REVIEW_STATUSES[0]),
                                      st.session_state.get(note_key, ""), expected_version=expected, name=name)
    except MarkConflict as exc:
        st.session_state[conflict_key] = exc.current
        return
    st.session_state[version_key] = saved.version
    st.session_state.pop(conflict_key, None)
    st.session_state["batch.saved"] = f"Saved: {saved.status} (version {saved.version}, {format_time(saved.time)})."


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
        rank_reader = ui.current_reader([*languages, query.language])  # one embedding space for the stack
        stack = [r.document for r in results]
        estimate = rank_reader.estimate_rank_seconds(query, stack) if rank_reader is not None else 0.0
        run = ("batch", query.text, tuple(query.elements), tuple(d.sha256 for d in stack))
        if rank_reader is None:
            pass
        elif estimate > ui.AUTO_RUN_SECONDS and run not in state.approved:
            st.info(f"Ranking {len(stack)} documents against this claim takes about {estimate:.0f} s the first "
                    f"time (every passage is embedded once; later queries take seconds).", icon=":material/schedule:")
            if st.button(f"Rank (≈ {estimate:.0f} s)", key="batch.run", type="primary", icon=":material/play_arrow:"):
                state.approved.add(run)
                st.rerun()
        else:
            ranked = ui.rank(query, stack, rank_reader)
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
    # What the audit needs is taken now: a download's callable runs later, outside this script run (no st.*).
    rank_model = ui.current_reader([*languages, query.language]).model.info  # the model that ranked them
    chart_results, chart_settings, chart_by = list(results), ui.settings(), ui.reviewer_label(ui.reviewer())

    def chart_audit() -> tuple[export.Audit, dict[str, str]]:
        """Built when a download is clicked: faithfulness figures are looked up (never measured) then."""
        faith = {r.document.sha256: export.faithfulness_text(export.cached_faithfulness(r)) for r in chart_results}
        summary = "; ".join(f"{r.document.name}: {faith.get(r.document.sha256, export.NOT_MEASURED)}" for r in ranked)
        return export.Audit.now(rank_model, chart_settings, query=query.text, faithfulness=summary,
                                exported_by=chart_by), faith

    c_chart_csv, c_chart_xlsx, _ = st.columns([1, 1, 3])
    c_chart_csv.download_button("Claim chart (CSV)", lambda: export.claim_chart_csv(ranked, chart_audit()[0])
                                .encode("utf-8"), file_name="chumoku-claim-chart.csv", mime="text/csv",
                                key="batch.chartcsv", on_click="ignore", icon=":material/download:",
                                help="UTF-8 with BOM (opens in Excel); the audit columns say how it was made")
    c_chart_xlsx.download_button("Claim chart (XLSX)", lambda: export.claim_chart_xlsx(ranked, *chart_audit()),
                                 file_name="chumoku-claim-chart.xlsx", mime=export.XLSX_MIME, key="batch.chartxlsx",
                                 on_click="ignore", icon=":material/download:",
                                 help="Each cell: the answering paragraph's number and snippet; sheets for every "
                                      "cell's score and span, and the audit trail")

# ---- the screening table ---------------------------------------------------------------------------------
lib = ui.library()
shas = [d.sha256 for d in docs]
who = ui.reviewer() or ""
team = ui.mode() == ui.Mode.TEAM
visible_marks = lib.marks(shas, ui.viewer())  # every reviewer's current verdict this reviewer may read
verdicts: dict[str, list] = {}
for m in sorted(visible_marks, key=lambda m: m.reviewer):
    verdicts.setdefault(m.sha256, []).append(m)
table = screening_table(results, {m.sha256: m for m in visible_marks if m.reviewer == who})
table["verdicts"] = [" · ".join(f"{ui.reviewer_label(m.reviewer) + ': ' if team else ''}{m.status} "
                                f"({format_time(m.time)})" for m in verdicts.get(sha, [])) for sha in table["sha256"]]
st.subheader(f"{len(table)} documents")
st.dataframe(
    table, hide_index=True, width="stretch", key="batch.table",
    column_order=["document", "focus", "status", "note", "verdicts", "top passages", "language", "chars", "chunks",
                  "unk_rate"],
    column_config={
        "document": st.column_config.TextColumn("Document", width="medium"),
        "focus": st.column_config.NumberColumn(
            "Focus", format="%.2f", help="Attention lift of the top 3 passages: how many times more attention an "
                                         "average token there gets than an average token of the document "
                                         "(1.0 = spread evenly). Comparable across documents."),
        "status": st.column_config.TextColumn("Your mark" if team else "Mark"),
        "note": st.column_config.TextColumn("Note"),
        "verdicts": st.column_config.TextColumn("Verdicts", width="medium",
                                                help="Every reviewer's current mark with the time it was saved "
                                                     "(UTC); earlier marks are kept as history (Library page)."),
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
load_mark_form(pick, who)
status_key, note_key, version_key, conflict_key = _mark_keys(pick)
with st.form(f"batch.markform.{pick}", border=False):
    left, right = st.columns([2, 3])
    left.radio("Your mark" if team else "Mark", REVIEW_STATUSES, horizontal=True, key=status_key)
    right.text_area("Note", key=note_key, height=90, placeholder="Why it matters, where to look…")
    st.form_submit_button("Save mark", type="primary", icon=":material/save:", key=f"batch.save.{pick}",
                          on_click=save_mark, args=(pick, names[pick], who))
if saved_msg := st.session_state.pop("batch.saved", None):
    st.success(md_escape(saved_msg), icon=":material/check:")
conflict = st.session_state.get(conflict_key)
if conflict is not None:
    note = f" — “{md_escape(conflict.note)}”" if conflict.note else ""
    # marks are per reviewer: a newer one of the same reviewer comes from another tab (or, in single-user mode,
    # from anyone who shares the workspace)
    saver = "You, in another tab," if team else "Someone in another tab or session"
    st.error(f"**Not saved: this mark changed while you were editing.** {saver}"
             f" saved **{md_escape(str(conflict.status))}**{note} at {format_time(conflict.time)} (version "
             f"{conflict.version}; your form was loaded at version {st.session_state.get(version_key, 0)}).",
             icon=":material/sync_problem:")
    keep, reload, _ = st.columns([1, 1, 3])
    keep.button("Save mine anyway", key=f"batch.overwrite.{pick}", on_click=save_mark,
                args=(pick, names[pick], who, True), help="Your mark becomes the newest version; theirs stays "
                                                          "in the history.")
    reload.button("Load the newer mark", key=f"batch.reload.{pick}", on_click=load_mark_form, args=(pick, who, True))
others = [m for m in verdicts.get(pick, []) if m.reviewer != who]
if others:
    st.markdown("**Other reviewers:** " + " · ".join(
        f"{md_escape(ui.reviewer_label(m.reviewer))}: {md_escape(str(m.status))} ({format_time(m.time)})"
        + (f" — {md_escape(m.note)}" if m.note else "") for m in others))
st.caption(f"Saved marks are never replaced: each save is a new version and the earlier ones stay as history "
           f"(Library page). This form shows version {st.session_state.get(version_key, 0)}.")
if st.button("Open in Screen", type="primary", key="batch.open", icon=":material/description:"):
    state.selected = pick
    st.switch_page("pages/screen.py")


viewer, exported_by = ui.viewer(), ui.reviewer_label(who)  # taken now: the download callables run outside the script


def marks_audit() -> export.Audit:
    return export.Audit.now(exported_by=exported_by)


c_csv, c_xlsx, _ = st.columns([1, 1, 3])
c_csv.download_button("Export marks (CSV)", lambda: export.marks_csv(lib.marks(shas, viewer), names,
                                                                     marks_audit()).encode("utf-8"),
                      file_name="chumoku-marks.csv", mime="text/csv", key="batch.csv", on_click="ignore",
                      icon=":material/download:", help="This session's documents, every reviewer's current mark; "
                                                       "UTF-8 with BOM so Excel opens it as it is.")
c_xlsx.download_button("Export marks (XLSX)", lambda: export.marks_xlsx(lib.marks(shas, viewer),
                                                                        lib.marks(shas, viewer, history=True),
                                                                        names, marks_audit()),
                       file_name="chumoku-marks.xlsx", mime=export.XLSX_MIME, key="batch.xlsx", on_click="ignore",
                       icon=":material/download:", help="Current marks, every earlier version, and the audit sheet.")
