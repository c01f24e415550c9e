"""Library: every document of the workspace — language, size, model, marks and notes — filterable, opened in
Screen / Explorer / Batch without uploading again, removable after a confirmation. In team mode also the
reviewer's matters: members, documents and claims.

Everything shown is user text (file names, notes, matter names, e-mails): Markdown goes through
escape_markdown; tables and select boxes show plain text.
"""
from __future__ import annotations

from typing import Any, Callable

import pandas as pd
import streamlit as st

import attn_core as ac
from attn_core import export
from attn_core.library import REVIEW_STATUSES, AccessDenied, LibraryError, format_time
from attn_core.render import escape_markdown as md
from pages import _common as ui

ui.ensure_navigation()  # a share link may be a fresh server's first request

ANY = "any"
PRIVATE = "my private area"
FLASH = "library.flash"
CONFIRM = "library.confirm"
OPEN_TARGETS = {"screen": ("Open in Screen", "pages/screen.py", ":material/description:"),
                "explorer": ("Explorer", "pages/explorer.py", ":material/biotech:"),
                "batch": ("Batch", "pages/batch.py", ":material/table_view:")}

state = ui.state()
lib = ui.library()
team = ui.mode() == ui.Mode.TEAM
who = ui.reviewer() or ""
viewer = ui.viewer()

st.title("Library")
if team:
    st.caption(f"Signed in as **{md(who)}**. You see the documents you uploaded (your private area) and those of "
               f"the matters you are a member of; nobody else sees your private documents.")
else:
    st.info(f"{ui.SINGLE_USER_NOTICE} Every document uploaded on this server is listed here and in Screen, Explorer "
            f"and Batch of every session, with everyone's marks. To give each reviewer a private area, configure a "
            f"sign-in provider (README: Running it for a team).", icon=":material/group:")
if msg := st.session_state.pop(FLASH, None):
    st.success(md(msg))  # flash messages quote file, matter and member names

with st.expander("Add documents", icon=":material/upload_file:"):
    uploads = st.file_uploader("Documents", accept_multiple_files=True, key="library_uploader",
                               help="They join " + ("your private area." if team else "the shared workspace."))
    _, errors = ui.ingest_uploads(uploads)
    for name, message in errors:
        st.error(f"**{md(name)}**: {md(message)}")

# ---- what this reviewer may see -------------------------------------------------------------------------------
infos = lib.documents(viewer)
shas = [d.sha256 for d in infos]
readings = lib.readings(shas)
current = lib.marks(shas, viewer)
by_doc: dict[str, list] = {}
for m in current:
    by_doc.setdefault(m.sha256, []).append(m)
matters = lib.matters(who) if team else []
matter_names = {m.id: m.name for m in matters}


def change_library(change: Callable[[], Any], done: str | Callable[[Any], str], clear: str | None = None) -> None:
    """Run one change to the library and redraw the page: `done` (or the message made from the change's
    result), or why the library refused the change, flashes above the page; on success the change's input box
    (`clear`) is emptied for the next one."""
    try:
        result = change()
        st.session_state[FLASH] = done(result) if callable(done) else done
        if clear:
            st.session_state.pop(clear, None)
    except LibraryError as exc:
        st.session_state[FLASH] = exc.message
    st.rerun()


def display_name(info) -> str:
    return state.names.get(info.sha256, info.name)  # this session's upload name wins, as on every page


def verdict_label(m) -> str:
    return f"{ui.reviewer_label(m.reviewer)}: " if team else ""


rows = []
for d in infos:
    marks = sorted(by_doc.get(d.sha256, []), key=lambda m: m.reviewer)
    reading = readings.get(d.sha256)
    areas = ([PRIVATE] if who in d.owners else []) + [matter_names[i] for i in d.matters if i in matter_names]
    rows.append({
        "document": display_name(d), "language": d.language, "characters": d.chars,
        "model": reading.model_id if reading else "",
        "marks": " · ".join(f"{verdict_label(m)}{m.status}" for m in marks) or "unread",
        "notes": " · ".join(f"{verdict_label(m)}{m.note}" for m in marks if m.note),
        "area": ", ".join(areas),
        "added": format_time(d.added), "sha256": d.sha256,
        "_statuses": {str(m.status) for m in marks} or {"unread"}, "_areas": set(areas),
    })

# ---- filters --------------------------------------------------------------------------------------------------
cols = st.columns([3, 1, 1, 2] if team else [3, 1, 1])
text = cols[0].text_input("Filter", key="library.filter", placeholder="name, note or model",
                          help="Case-insensitive; matches the document's name, the notes, the model and the hash.")
languages = sorted({d.language for d in infos})
language = cols[1].selectbox("Language", [ANY, *languages], key="library.language")
mark = cols[2].selectbox("Mark", [ANY, *REVIEW_STATUSES], key="library.mark",
                         help="Documents that any reviewer you can see gave this verdict (unread: no verdict yet).")
area = cols[3].selectbox("Area", [ANY, PRIVATE, *matter_names.values()], key="library.area") if team else ANY

needle = text.strip().lower()
shown = [r for r in rows
         if (not needle or any(needle in str(r[k]).lower() for k in ("document", "notes", "model", "sha256")))
         and (language == ANY or r["language"] == language)
         and (mark == ANY or mark in r["_statuses"])
         and (area == ANY or area in r["_areas"])]

st.subheader(f"{len(shown)} of {len(rows)} documents")
if not rows:
    st.info("No documents yet: add some above, upload them in Screen or Batch, or open the demo documents on Home.")
    st.stop()
table = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in shown],
                     columns=["document", "language", "characters", "model", "marks", "notes", "area", "added",
                              "sha256"])
st.dataframe(table, hide_index=True, width="stretch", key="library.table",
             column_order=["document", "language", "characters", "model", "marks", "notes"]
             + (["area"] if team else []) + ["added"],
             column_config={"document": st.column_config.TextColumn("Document", width="medium"),
                            "language": st.column_config.TextColumn("Lang", width="small"),
                            "characters": st.column_config.NumberColumn("Characters", format="%d"),
                            "model": st.column_config.TextColumn("Model", help="The model that last read it"),
                            "marks": st.column_config.TextColumn("Marks", width="medium"),
                            "notes": st.column_config.TextColumn("Notes", width="large"),
                            "area": st.column_config.TextColumn("Area"),
                            "added": st.column_config.TextColumn("Added (UTC)")})
if not shown:
    st.stop()

# ---- one document: open, history, matter, remove ----------------------------------------------------------------
names = {r["sha256"]: r["document"] for r in rows}
pick_options = [r["sha256"] for r in shown]
if st.session_state.get("library.pick") not in pick_options:
    st.session_state["library.pick"] = state.selected if state.selected in pick_options else pick_options[0]
pick = st.selectbox("Document", pick_options, key="library.pick",
                    format_func=lambda sha: f"{names[sha]} · {sha[:12]}")
info = next(d for d in infos if d.sha256 == pick)

buttons = st.columns([1, 1, 1, 1, 2])
for col, (target, (label, path, icon)) in zip(buttons, OPEN_TARGETS.items()):
    if col.button(label, key=f"library.open.{target}", icon=icon, type="primary" if target == "screen" else "secondary"):
        if ui.open_document(pick):
            st.switch_page(path)
        st.error("This document is no longer in your workspace.")
owned = not team or who in info.owners
if owned and buttons[3].button("Remove…", key="library.remove", icon=":material/delete:"):
    st.session_state[CONFIRM] = pick
if not owned:
    buttons[3].caption("Shared with you through a matter")

if st.session_state.get(CONFIRM) == pick:
    n_marks = len(lib.mark_history(pick, viewer))
    if not team:
        consequence = (f"It disappears from every session of this server, with its {n_marks} saved mark(s) and their "
                       f"history. Uploading the file again brings the document back, not the marks.")
    elif info.matters:
        consequence = "It leaves your private area and stays in its matters."
    else:
        consequence = "It leaves your private area; if nobody else holds it, it is deleted with its marks."
    st.warning(f"Remove **{md(names[pick])}**? {consequence}", icon=":material/warning:")
    yes, no, _ = st.columns([1, 1, 4])
    if yes.button("Remove", type="primary", key="library.remove.yes"):
        try:
            deleted = lib.remove_document(pick, viewer)
        except AccessDenied as exc:
            st.session_state[FLASH] = exc.message
        else:
            state.docs = [s for s in state.docs if s != pick]
            state.names.pop(pick, None)
            if state.selected == pick:
                state.selected = None
            st.session_state[FLASH] = (f"Removed {names[pick]}" + ("." if deleted else " from your private area."))
        st.session_state.pop(CONFIRM, None)
        st.rerun()
    if no.button("Cancel", key="library.remove.no"):
        st.session_state.pop(CONFIRM, None)
        st.rerun()

with st.expander("Marks and their history", icon=":material/history:"):
    history = lib.mark_history(pick, viewer)
    if history:
        st.dataframe(pd.DataFrame([{"reviewer": ui.reviewer_label(m.reviewer), "mark": str(m.status), "note": m.note,
                                    "time (UTC)": format_time(m.time), "version": m.version} for m in history]),
                     hide_index=True, width="stretch", key="library.history")
    else:
        st.caption("No marks yet: mark it on the Batch page.")
    reading = readings.get(pick)
    if reading:
        st.caption(f"Last read by **{md(reading.model_id)}** ({md(reading.method)}, layer {md(reading.layer)}, "
                   f"head {md(reading.head)}) at {format_time(reading.time)}.")

if team and matters:
    c_matter, c_add = st.columns([3, 1])
    target = c_matter.selectbox("Add this document to a matter", [m.id for m in matters], key="library.addto",
                                format_func=lambda i: matter_names[i])
    if c_add.button("Add to matter", key="library.addto.go", icon=":material/playlist_add:"):
        change_library(lambda: lib.add_to_matter(target, pick, who), f"Added {names[pick]} to {matter_names[target]}.")

# ---- exports of the listed documents' marks ---------------------------------------------------------------------
listed = [r["sha256"] for r in shown]


exported_by = ui.reviewer_label(who)  # taken now: a download's callable runs outside the script run


def marks_audit() -> export.Audit:
    return export.Audit.now(exported_by=exported_by)


c_csv, c_xlsx, _ = st.columns([1, 1, 3])
c_csv.download_button("Marks (CSV)", lambda: export.marks_csv(lib.marks(listed, viewer), names, marks_audit())
                      .encode("utf-8"), file_name="chumoku-marks.csv", mime="text/csv", key="library.marks.csv",
                      on_click="ignore", icon=":material/download:", help="The listed documents' current marks")
c_xlsx.download_button("Marks (XLSX)", lambda: export.marks_xlsx(lib.marks(listed, viewer),
                                                                  lib.marks(listed, viewer, history=True), names,
                                                                  marks_audit()),
                       file_name="chumoku-marks.xlsx", mime=export.XLSX_MIME, key="library.marks.xlsx",
                       on_click="ignore", icon=":material/download:",
                       help="Current marks, every earlier version, and the audit sheet")

# ---- matters (team mode) ----------------------------------------------------------------------------------------
if not team:
    st.stop()
st.subheader("Matters")
st.caption("A matter is one client's case or one search: its documents and claims are shared with its members "
           "(by the e-mail address they sign in with). Members see each other's marks on its documents.")
c_name, c_create = st.columns([3, 1])
new_name = c_name.text_input("New matter", key="library.matter.name", placeholder="e.g. ACME v. Widget — validity")
if c_create.button("Create matter", key="library.matter.create", icon=":material/create_new_folder:"):
    def create():
        created = lib.create_matter(new_name, who)
        st.session_state["library.matter"] = created.id  # the new matter is the one shown
        return created

    change_library(create, lambda created: f"Created the matter {created.name}.", clear="library.matter.name")
if not matters:
    st.stop()

matter_ids = [m.id for m in matters]
if st.session_state.get("library.matter") not in matter_ids:
    st.session_state["library.matter"] = matter_ids[0]
chosen = st.selectbox("Matter", matter_ids, key="library.matter", format_func=lambda i: matter_names[i])
matter = next(m for m in matters if m.id == chosen)
is_owner = matter.owner == who
st.markdown("**Members:** " + ", ".join(f"{md(m)}" + (" (owner)" if m == matter.owner else "") for m in matter.members))
if is_owner:
    c_member, c_invite = st.columns([3, 1])
    email = c_member.text_input("Member's e-mail", key="library.matter.member", placeholder="colleague@example.com")
    if c_invite.button("Add member", key="library.matter.add", icon=":material/person_add:"):
        change_library(lambda: lib.add_member(matter.id, email, who), f"{email.strip()} is now a member of {matter.name}.",
                       clear="library.matter.member")
    others = [m for m in matter.members if m != matter.owner]
    if others:
        c_drop, c_go = st.columns([3, 1])
        gone = c_drop.selectbox("Remove a member", others, key="library.matter.drop")
        if c_go.button("Remove member", key="library.matter.drop.go", icon=":material/person_remove:"):
            lib.remove_member(matter.id, gone, who)
            st.session_state[FLASH] = f"{gone} is no longer a member of {matter.name}."
            st.rerun()

in_matter = lib.matter_documents(matter.id)
doc_names = {d.sha256: display_name(d) for d in infos}
st.markdown(f"**Documents ({len(in_matter)}):** " + (", ".join(md(doc_names.get(s, s[:12])) for s in in_matter)
                                                     or "none yet: add one above"))
if in_matter:
    c_out, c_go = st.columns([3, 1])
    out = c_out.selectbox("Take a document out of the matter", in_matter, key="library.matter.out",
                          format_func=lambda s: doc_names.get(s, s[:12]))
    if c_go.button("Take out", key="library.matter.out.go", icon=":material/playlist_remove:"):
        lib.remove_from_matter(matter.id, out, who)
        st.session_state[FLASH] = f"Took {doc_names.get(out, out[:12])} out of {matter.name}."
        st.rerun()

claims = lib.claims(matter.id)
st.markdown(f"**Claims ({len(claims)})**")
for claim in claims:
    c_text, c_rank = st.columns([5, 1])
    c_text.markdown(f"{md(claim.text[:400])}  \n<small>{md(ui.reviewer_label(claim.added_by))} · "
                    f"{format_time(claim.added)}</small>", unsafe_allow_html=True)
    if c_rank.button("Rank in Batch", key=f"library.claim.rank.{claim.id}", icon=":material/table_view:"):
        try:
            state.queries["batch"] = ac.make_query(claim.text)
        except ac.QueryError as exc:
            st.error(md(exc.message))
        else:
            st.switch_page("pages/batch.py")
claim_text = st.text_area("Add a claim or query to this matter", key="library.matter.claim", height=90)
if st.button("Add claim", key="library.matter.addclaim", icon=":material/add:"):
    change_library(lambda: lib.add_claim(matter.id, claim_text, who), f"Added a claim to {matter.name}.",
                   clear="library.matter.claim")
