"""The workspace survives sessions and processes; marks per reviewer with history and conflicts; team mode
(private areas, matters, share links) through AppTest with a seeded `st.user`.

The real sign-in (OpenID Connect in a real browser) is tests/test_browser_team.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import EN_TEXT, JA_TEXT, REPO
from streamlit.testing.v1 import AppTest

import attn_core as ac
from attn_core.library import SINGLE_USER, default_library
from attn_core.sharing import default_share_links
from pages import _common as ui

TIMEOUT = 180
DASHBOARD = str(REPO / "dashboard.py")
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "chumoku",
        "client_secret": "secret", "server_metadata_url": "http://localhost:9/.well-known/openid-configuration"}


pytestmark = pytest.mark.usefixtures("fresh_app_caches")


def new_session(user: dict | None = None, **query) -> AppTest:
    """A new browser tab: no session state at all. `user` switches on team mode with that `st.user`."""
    at = AppTest.from_file(DASHBOARD, default_timeout=TIMEOUT)
    if user is not None:
        at.secrets["auth"] = AUTH
        at.user = user
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def go(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def library_table(at: AppTest):
    return next(d.value for d in at.get("dataframe") if "characters" in d.value.columns)


def save_mark(at: AppTest, sha: str, status: str, note: str | None = None) -> AppTest:
    at.radio(key=f"batch.status.{sha}").set_value(status)
    if note is not None:
        at.text_area(key=f"batch.note.{sha}").input(note)
    at.button(key=f"batch.save.{sha}").click().run()
    assert not at.exception, at.exception
    return at


OTHER_PROCESS = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [{repo!r}, {tests!r}]
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file({dashboard!r}, default_timeout=300)
    at.run()
    at.switch_page("pages/batch.py").run()
    at.file_uploader(key="batch_uploader").set_value(
        [("claims.txt", {en!r}.encode(), "text/plain"), ("明細書.txt", {ja!r}.encode(), "text/plain")]).run()
    assert not at.exception, at.exception
    table = at.get("dataframe")[0].value
    shas = dict(zip(table["document"], table["sha256"]))
    sha = shas["明細書.txt"]
    at.selectbox(key="batch.pick").set_value(sha).run()
    at.radio(key=f"batch.status.{{sha}}").set_value("relevant")
    at.text_area(key=f"batch.note.{{sha}}").input("see 【０００２】")
    at.button(key=f"batch.save.{{sha}}").click().run()
    assert not at.exception, at.exception
    print(json.dumps(shas))
""")


def test_documents_and_marks_from_another_process_are_in_a_new_session(tmp_path):
    """Single-user mode: one process uploads and marks (a server that was restarted, or a second worker);
    a new session here lists the documents with their marks and opens one without uploading it again."""
    script = tmp_path / "other_session.py"
    script.write_text(OTHER_PROCESS.format(repo=str(REPO), tests=str(REPO / "tests"), dashboard=DASHBOARD,
                                           en=EN_TEXT, ja=JA_TEXT * 3), encoding="utf-8")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ))  # the same CHUMOKU_DATA_DIR: the same server's data
    assert res.returncode == 0, res.stderr[-3000:]
    shas = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(shas) == {"claims.txt", "明細書.txt"}

    at = go(new_session(), "library")  # this process has never seen these documents
    assert any("Single-user mode: everyone who opens this server shares one workspace" in i.value for i in at.info)
    table = library_table(at)
    assert set(table["document"]) == set(shas)
    row = table[table["document"] == "明細書.txt"].iloc[0]
    assert row["marks"] == "relevant" and row["notes"] == "see 【０００２】" and row["language"] == "ja"
    assert row["model"]  # the model that read it in the other process
    assert table[table["document"] == "claims.txt"].iloc[0]["marks"] == "unread"
    assert set(at.session_state["chumoku"].docs) == set(shas.values())  # Screen/Batch list them too

    # filters: text, language and mark
    at.text_input(key="library.filter").input("claims").run()
    assert list(library_table(at)["document"]) == ["claims.txt"]
    at.text_input(key="library.filter").input("").run()
    at.selectbox(key="library.language").set_value("ja").run()
    assert list(library_table(at)["document"]) == ["明細書.txt"]
    at.selectbox(key="library.language").set_value("any").run()
    at.selectbox(key="library.mark").set_value("relevant").run()
    assert list(library_table(at)["document"]) == ["明細書.txt"]
    at.selectbox(key="library.mark").set_value("any").run()

    # open it in Screen: no upload, the document is read and shown
    at.selectbox(key="library.pick").set_value(shas["明細書.txt"]).run()
    at.button(key="library.open.screen").click().run()
    assert not at.exception, at.exception
    assert at.session_state["chumoku"].selected == shas["明細書.txt"]
    assert [t.value for t in at.title] == ["Screen"]
    assert any("attn-hl" in h.value for h in at.html)
    assert at.file_uploader(key="uploader").value in (None, [])

    # Batch in this session lists both, with the other process's mark in the form and the table
    go(at, "batch")
    t = at.get("dataframe")[0].value
    assert set(t["document"]) == set(shas)
    marked = t[t["sha256"] == shas["明細書.txt"]].iloc[0]
    assert marked["status"] == "relevant" and "relevant" in marked["verdicts"]
    at.selectbox(key="batch.pick").set_value(shas["明細書.txt"]).run()
    assert at.radio(key=f"batch.status.{shas['明細書.txt']}").value == "relevant"
    assert at.text_area(key=f"batch.note.{shas['明細書.txt']}").value == "see 【０００２】"


def test_removing_a_document_asks_first():
    keep = ac.document_from_text(EN_TEXT, "keep.txt", "en")
    drop = ac.document_from_text("The pump moves fluid through the valve. " * 3, "drop <me>.txt", "en")
    for d in (keep, drop):
        default_library().save_document(d)
    default_library().set_mark(drop.sha256, SINGLE_USER, "read", "gone soon")
    at = go(new_session(), "library")
    at.selectbox(key="library.pick").set_value(drop.sha256).run()
    at.button(key="library.remove").click().run()
    warning = " ".join(w.value for w in at.warning)
    assert "drop \\<me\\>\\.txt" in warning and "1 saved mark" in warning  # the name is escaped Markdown
    assert default_library().get_document(drop.sha256) is not None  # nothing happens before the confirmation
    at.button(key="library.remove.no").click().run()
    assert not at.warning and default_library().get_document(drop.sha256) is not None
    at.button(key="library.remove").click().run()
    at.button(key="library.remove.yes").click().run()
    assert not at.exception, at.exception
    assert default_library().get_document(drop.sha256) is None and default_library().mark(drop.sha256) is None
    assert list(library_table(at)["document"]) == ["keep.txt"]
    assert drop.sha256 not in at.session_state["chumoku"].docs
    assert any("Removed" in s.value for s in at.success)


def test_two_sessions_marking_the_same_document_conflict_instead_of_overwriting():
    doc = ac.document_from_text(EN_TEXT, "shared.txt", "en")
    default_library().save_document(doc)
    sha = doc.sha256
    a = go(new_session(), "batch")
    b = go(new_session(), "batch")  # both forms are loaded at version 0
    save_mark(a, sha, "relevant", "A: claim 1 at [0002]")
    assert any("version 1" in s.value for s in a.success)

    save_mark(b, sha, "not relevant", "B: off topic")
    errors = " ".join(e.value for e in b.error)
    assert "Not saved" in errors and "**relevant**" in errors and "A\\: claim 1" in errors  # escaped Markdown
    mark = default_library().mark(sha)
    assert (mark.status, mark.note, mark.version) == ("relevant", "A: claim 1 at [0002]", 1)  # A's mark survived
    assert b.text_area(key=f"batch.note.{sha}").value == "B: off topic"  # B's text is still in the form

    b.button(key=f"batch.reload.{sha}").click().run()  # B looks at the newer mark first
    assert not b.error
    assert b.radio(key=f"batch.status.{sha}").value == "relevant"
    assert b.text_area(key=f"batch.note.{sha}").value == "A: claim 1 at [0002]"
    save_mark(b, sha, "not relevant", "B: agreed after all? no")
    assert default_library().mark(sha).version == 2

    save_mark(a, sha, "read")  # A's form is still at version 1: a conflict again
    assert any("Not saved" in e.value for e in a.error)
    a.button(key=f"batch.overwrite.{sha}").click().run()  # "save mine anyway"
    assert not a.exception and not a.error
    history = default_library().mark_history(sha)
    assert [(m.version, str(m.status)) for m in history] == [(3, "read"), (2, "not relevant"), (1, "relevant")]
    table = a.get("dataframe")[0].value
    assert table.iloc[0]["status"] == "read" and "read (" in table.iloc[0]["verdicts"]

    lib = go(new_session(), "library")
    with_history = next(d.value for d in lib.get("dataframe") if "version" in d.value.columns)
    assert list(with_history["version"]) == [3, 2, 1]
    assert [b.label for b in lib.get("download_button")] == ["Marks (CSV)", "Marks (XLSX)"]


def test_team_mode_private_areas_matters_and_share_links():
    alice_user = {"is_logged_in": True, "email": "Alice@Example.com", "sub": "a-1", "name": "Alice"}
    bob_user = {"is_logged_in": True, "email": "bob@example.com", "sub": "b-2"}

    # before sign-in: only the sign-in page, nothing of any workspace
    anon = new_session({"is_logged_in": False})
    assert [t.value for t in anon.title] == ["Chumoku — sign in"]
    assert anon.button(key="account.login.default")
    assert anon.session_state["chumoku"].docs == []

    alice = go(new_session(alice_user), "library")
    assert "alice\\@example\\.com" in " ".join(c.value for c in alice.caption)  # normalised, escaped
    alice.file_uploader(key="library_uploader").set_value(
        [("alice-private.txt", EN_TEXT.encode(), "text/plain")]).run()
    assert not alice.exception, alice.exception
    private = ac.ingest_bytes(EN_TEXT.encode(), "alice-private.txt").sha256
    assert list(library_table(alice)["document"]) == ["alice-private.txt"]
    assert list(library_table(alice)["area"]) == ["my private area"]

    bob = go(new_session(bob_user), "library")
    assert not bob.get("dataframe") and any("No documents yet" in i.value for i in bob.info)
    # a share link Alice made does not open her private document for Bob
    token = default_share_links().create(private, {}, "alice@example.com")
    linked = new_session(bob_user, **{ui.SHARE_PARAM: token})
    assert linked.session_state["chumoku"].selected is None and linked.session_state["chumoku"].docs == []

    # Alice creates a matter, adds Bob and the document
    alice.text_input(key="library.matter.name").input("ACME v. Widget").run()
    alice.button(key="library.matter.create").click().run()
    assert alice.text_input(key="library.matter.name").value == ""  # ready for the next matter
    alice.text_input(key="library.matter.member").input("Bob@Example.com").run()
    alice.button(key="library.matter.add").click().run()
    alice.button(key="library.addto.go").click().run()
    assert not alice.exception, alice.exception
    matter = default_library().matters("alice@example.com")[0]
    assert matter.members == ("alice@example.com", "bob@example.com")
    assert default_library().matter_documents(matter.id) == [private]

    bob = go(new_session(bob_user), "library")
    table = library_table(bob)
    assert list(table["document"]) == ["alice-private.txt"] and list(table["area"]) == ["ACME v. Widget"]
    assert not [b for b in bob.button if b.key == "library.remove"]  # Bob does not own it: no remove
    linked = new_session(bob_user, **{ui.SHARE_PARAM: token})
    assert linked.session_state["chumoku"].selected == private  # now the link opens
    # Bob's verdict and Alice's both stay, each with its reviewer
    default_library().set_mark(private, "alice@example.com", "relevant", "A", expected_version=0)
    default_library().set_mark(private, "bob@example.com", "not relevant", "B", expected_version=0)
    bob = go(new_session(bob_user), "library")
    row = library_table(bob).iloc[0]
    assert row["marks"] == "alice@example.com: relevant · bob@example.com: not relevant"

    # a matter's claim: added by one member, seen by the other, ranked in Batch from the Library
    alice = go(new_session(alice_user), "library")
    alice.text_area(key="library.matter.claim").input("1. A method comprising: receiving a request; "
                                                      "forwarding it to a backup server.").run()
    alice.button(key="library.matter.addclaim").click().run()
    assert [c.text[:11] for c in default_library().claims(matter.id)] == ["1. A method"]
    bob = go(new_session(bob_user), "library")
    claim = default_library().claims(matter.id)[0]
    bob.button(key=f"library.claim.rank.{claim.id}").click().run()
    assert not bob.exception, bob.exception
    assert [t.value for t in bob.title] == ["Batch screening"]
    assert bob.session_state["chumoku"].queries["batch"].text in claim.text  # the claim number is dropped
