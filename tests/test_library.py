"""The reviewer's library: documents and marks survive a restart and concurrent writers."""
from __future__ import annotations

import csv
import io
import multiprocessing as mp
import threading

import pytest

from attn_core.document import Document, Paragraph, document_from_text
from attn_core.library import (
    REVIEW_STATUSES,
    SCHEMA_VERSION,
    SINGLE_USER,
    AccessDenied,
    Library,
    MarkConflict,
    MarkStatus,
    default_library,
)


def _doc(i: int) -> Document:
    return document_from_text(f"Document {i}: the pump moves fluid. 東京は日本の首都です。", f"doc-{i}.txt", "en")


def test_documents_round_trip_and_survive_restart(tmp_path):
    path = tmp_path / "lib.sqlite"
    doc = Document("特許 <x>.txt", "【０００１】本発明は…\nsecond", "ja", "ab" * 32, "utf-8", "txt",
                   (Paragraph(0, 12, "[0001]", 1), Paragraph(13, 19)), "題名", ("nfkc applied",))
    Library(path).save_document(doc)
    again = Library(path)  # a new instance on the same file = an app restart
    assert again.get_document(doc.sha256) == doc
    assert again.get_document("0" * 64) is None
    assert again.count() == 1


def test_reviews_round_trip_update_and_restart(tmp_path):
    path = tmp_path / "lib.sqlite"
    lib = Library(path)
    d = _doc(1)
    assert lib.review(d.sha256) is None
    lib.set_review(d.sha256, d.name, "read", "first pass")
    lib.set_review(d.sha256, d.name, "relevant", "claim 1, [0004]")
    r = Library(path).review(d.sha256)
    assert (r.status, r.note, r.name) == ("relevant", "claim 1, [0004]", d.name)
    assert len(Library(path).reviews()) == 1
    with pytest.raises(ValueError):
        lib.set_review(d.sha256, d.name, "maybe")
    assert set(REVIEW_STATUSES) == {"unread", "read", "relevant", "not relevant"}


def test_csv_export_only_given_shas(tmp_path):
    lib = Library(tmp_path / "lib.sqlite")
    docs = [_doc(i) for i in range(3)]
    for d, status in zip(docs, ["read", "relevant", "not relevant"]):
        lib.set_review(d.sha256, d.name, status, f'note "{d.name}", with comma')
    mine = [docs[0].sha256, docs[2].sha256]
    rows = list(csv.DictReader(io.StringIO(lib.reviews_csv(mine))))
    assert {r["sha256"] for r in rows} == set(mine)
    assert {r["document"]: r["status"] for r in rows} == {"doc-0.txt": "read", "doc-2.txt": "not relevant"}
    assert rows[0]["note"].startswith('note "doc-') and rows[0]["updated_utc"].endswith("Z")
    assert list(csv.DictReader(io.StringIO(lib.reviews_csv([])))) == []
    assert len(list(csv.DictReader(io.StringIO(lib.reviews_csv())))) == 3


def test_threads_write_concurrently(tmp_path):
    lib = Library(tmp_path / "lib.sqlite")
    errors = []

    def work(t: int) -> None:
        try:
            for i in range(20):
                d = _doc(t * 100 + i)
                lib.save_document(d)
                lib.set_review(d.sha256, d.name, REVIEW_STATUSES[i % 4], f"thread {t}")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    again = Library(tmp_path / "lib.sqlite")
    assert again.count() == 80 and len(again.reviews()) == 80


def _process_writer(path: str, p: int) -> None:
    lib = Library(path)
    for i in range(15):
        d = _doc(1000 * p + i)
        lib.save_document(d)
        lib.set_review(d.sha256, d.name, "read", f"process {p}")


def test_processes_write_concurrently(tmp_path):
    path = str(tmp_path / "lib.sqlite")
    Library(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(path, p)) for p in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    lib = Library(path)
    assert lib.count() == 30
    assert sorted(r.note for r in lib.reviews()) == ["process 0"] * 15 + ["process 1"] * 15


def test_default_library_follows_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CHUMOKU_DATA_DIR", str(tmp_path / "a"))
    a = default_library()
    monkeypatch.setenv("CHUMOKU_DATA_DIR", str(tmp_path / "b"))
    b = default_library()
    assert a is not b and a.path.parent == tmp_path / "a" and b.path.parent == tmp_path / "b"
    a.set_review("x" * 64, "x.txt", "read")
    assert b.review("x" * 64) is None and a.size_bytes() > 0


# ---- schema migration ------------------------------------------------------------------------------------
def test_a_version_1_file_migrates_without_losing_documents_or_marks(tmp_path):
    """The file as version 1 wrote it (documents + one mark per document) opens as version 2 in place."""
    import json
    import sqlite3
    from dataclasses import asdict

    path = tmp_path / "lib.sqlite"
    docs = [_doc(i) for i in range(3)]
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE documents (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, language TEXT NOT NULL, "
              "chars INTEGER NOT NULL, added REAL NOT NULL, body TEXT NOT NULL)")
    c.execute("CREATE TABLE reviews (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, "
              "note TEXT NOT NULL, updated REAL NOT NULL)")
    for i, d in enumerate(docs):
        c.execute("INSERT INTO documents VALUES (?,?,?,?,?,?)", (d.sha256, d.name, d.language, d.chars, 100.0 + i,
                                                                json.dumps(asdict(d), ensure_ascii=False)))
    c.execute("INSERT INTO reviews VALUES (?,?,?,?,?)", (docs[0].sha256, "renamed.txt", "relevant", "claim 1 ✓", 150.0))
    c.execute("INSERT INTO reviews VALUES (?,?,?,?,?)", (docs[2].sha256, docs[2].name, "not relevant", "", 160.0))
    c.commit()
    c.close()

    lib = Library(path)
    assert lib.count() == 3 and lib.get_document(docs[1].sha256) == docs[1]
    assert lib.document_shas() == [d.sha256 for d in docs]  # oldest first, as added
    m = lib.mark(docs[0].sha256, SINGLE_USER)
    assert (m.status, m.note, m.name, m.time, m.version) == ("relevant", "claim 1 ✓", "renamed.txt", 150.0, 1)
    assert lib.review(docs[2].sha256).status == "not relevant"
    assert {d.owners for d in lib.documents()} == {(SINGLE_USER,)}
    # a second open (another process, a restart) finds it migrated and changes nothing
    again = Library(path)
    assert len(again.marks()) == 2 and again.count() == 3
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("SELECT COUNT(*) FROM reviews_v1").fetchone()[0] == 2  # the old table is kept as it was
    # the next save builds on the migrated mark
    assert again.set_mark(docs[0].sha256, SINGLE_USER, "read", expected_version=1).version == 2


# ---- marks per reviewer, with history and conflicts ---------------------------------------------------------
def test_marks_keep_history_and_a_stale_save_is_a_conflict(tmp_path):
    lib = Library(tmp_path / "lib.sqlite")
    d = _doc(1)
    lib.save_document(d)
    first = lib.set_mark(d.sha256, "Alice@Example.com", "read", "first pass", expected_version=0)
    assert (first.reviewer, first.version, first.name) == ("alice@example.com", 1, d.name)
    # two forms loaded at version 1: the first save wins, the second is refused and told what it missed
    second = lib.set_mark(d.sha256, "alice@example.com", "relevant", "claim 1", expected_version=1)
    with pytest.raises(MarkConflict) as err:
        lib.set_mark(d.sha256, "alice@example.com", "not relevant", "stale tab", expected_version=1)
    assert err.value.current == second and err.value.expected_version == 1
    assert "relevant" in err.value.message and "not applied" in err.value.message
    assert lib.mark(d.sha256, "alice@example.com") == second  # nothing was overwritten
    # a form that never saw a mark (version 0) cannot replace one either
    with pytest.raises(MarkConflict):
        lib.set_mark(d.sha256, "alice@example.com", "read", expected_version=0)
    # "save mine anyway" = save on top of the version the conflict showed
    third = lib.set_mark(d.sha256, "alice@example.com", "not relevant", "stale tab", expected_version=2)
    assert third.version == 3
    history = lib.mark_history(d.sha256)
    assert [(m.version, m.status, m.note) for m in history] == [
        (3, "not relevant", "stale tab"), (2, "relevant", "claim 1"), (1, "read", "first pass")]
    assert history[0].time >= history[1].time >= history[2].time
    # another reviewer's mark never conflicts with Alice's: both verdicts stay
    bob = lib.set_mark(d.sha256, "bob@example.com", "relevant", "agree", expected_version=0)
    current = {m.reviewer: m for m in lib.marks([d.sha256])}
    assert current == {"alice@example.com": third, "bob@example.com": bob}
    assert isinstance(third.status, MarkStatus) and third.status == MarkStatus.NOT_RELEVANT
    with pytest.raises(ValueError):
        lib.set_mark(d.sha256, "bob@example.com", "maybe")


def _racer(path: str, i: int, expected: int, results) -> None:
    try:
        Library(path).set_mark("f" * 64, "", "relevant", f"writer {i}", expected_version=expected)
        results.put("saved")
    except MarkConflict:
        results.put("conflict")


def test_two_processes_saving_from_the_same_version_one_wins(tmp_path):
    path = str(tmp_path / "lib.sqlite")
    Library(path).set_mark("f" * 64, "", "read", "v1")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(path, i, 1, results)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    outcomes = sorted(results.get(timeout=10) for _ in procs)
    assert outcomes == ["conflict", "conflict", "saved"]
    assert [m.version for m in Library(path).mark_history("f" * 64)] == [2, 1]


# ---- who sees what (team mode) ----------------------------------------------------------------------------
def test_private_areas_matters_and_share_links(tmp_path):
    lib = Library(tmp_path / "lib.sqlite")
    a_doc, b_doc, both = _doc(1), _doc(2), _doc(3)
    lib.save_document(a_doc, owner="alice@example.com")
    lib.save_document(b_doc, owner="bob@example.com")
    lib.save_document(both, owner="alice@example.com")
    lib.save_document(both, owner="BOB@example.com")  # the same file uploaded by both: one copy, two owners
    assert lib.count() == 3
    assert lib.document_shas("alice@example.com") == [a_doc.sha256, both.sha256]
    assert lib.document_shas("bob@example.com") == [b_doc.sha256, both.sha256]
    assert lib.document_shas("carol@example.com") == []
    assert lib.document_shas(None) == [a_doc.sha256, b_doc.sha256, both.sha256]  # single-user mode: everything
    # a hash (share link) opens only for a reviewer allowed to see it
    assert lib.can_see("alice@example.com", a_doc.sha256) and not lib.can_see("bob@example.com", a_doc.sha256)
    assert not lib.can_see("alice@example.com", "0" * 64) and lib.can_see(None, a_doc.sha256)

    matter = lib.create_matter("  ACME   v. Widget ", "alice@example.com")
    assert matter.name == "ACME v. Widget" and matter.members == ("alice@example.com",)
    with pytest.raises(AccessDenied):
        lib.add_member(matter.id, "carol@example.com", by="bob@example.com")  # not a member
    lib.add_member(matter.id, " Bob@Example.com ", by="alice@example.com")
    assert lib.matter(matter.id).members == ("alice@example.com", "bob@example.com")
    with pytest.raises(AccessDenied):
        lib.add_member(matter.id, "carol@example.com", by="bob@example.com")  # members do not manage members
    with pytest.raises(AccessDenied):
        lib.add_to_matter(matter.id, a_doc.sha256, by="bob@example.com")  # bob cannot share alice's document
    lib.add_to_matter(matter.id, a_doc.sha256, by="alice@example.com")
    assert lib.can_see("bob@example.com", a_doc.sha256)
    assert lib.document_shas("bob@example.com") == [a_doc.sha256, b_doc.sha256, both.sha256]
    assert [m.name for m in lib.matters("bob@example.com")] == ["ACME v. Widget"] and lib.matters("carol@x") == []
    claim = lib.add_claim(matter.id, "1. A balloon catheter comprising: a shaft;", by="bob@example.com")
    assert [c.text for c in lib.claims(matter.id)] == [claim.text] and claim.added_by == "bob@example.com"
    info = {d.sha256: d for d in lib.documents("bob@example.com")}
    assert info[a_doc.sha256].owners == () and info[a_doc.sha256].matters == (matter.id,)  # alice's area stays hers
    assert info[b_doc.sha256].owners == ("bob@example.com",)
    # leaving the matter takes the document away again
    lib.remove_member(matter.id, "bob@example.com", by="alice@example.com")
    assert not lib.can_see("bob@example.com", a_doc.sha256)


def test_a_reviewer_reads_only_marks_shared_through_a_matter(tmp_path):
    lib = Library(tmp_path / "lib.sqlite")
    d = _doc(1)
    lib.save_document(d, owner="alice@example.com")
    lib.save_document(d, owner="bob@example.com")  # both hold a private copy of the same file
    lib.set_mark(d.sha256, "alice@example.com", "relevant", "alice's private note")
    lib.set_mark(d.sha256, "bob@example.com", "read", "bob's private note")
    assert [m.reviewer for m in lib.marks([d.sha256], "bob@example.com")] == ["bob@example.com"]
    assert len(lib.marks([d.sha256])) == 2  # single-user view: everything
    matter = lib.create_matter("Shared", "alice@example.com")
    lib.add_member(matter.id, "bob@example.com", by="alice@example.com")
    lib.add_to_matter(matter.id, d.sha256, by="alice@example.com")
    assert {m.reviewer for m in lib.marks([d.sha256], "bob@example.com")} == {"alice@example.com", "bob@example.com"}
    assert {m.reviewer for m in lib.mark_history(d.sha256, "carol@example.com")} == set()


def test_removing_a_document(tmp_path):
    lib = Library(tmp_path / "lib.sqlite")
    solo, shared = _doc(1), _doc(2)
    for d in (solo, shared):
        lib.save_document(d)
        lib.set_mark(d.sha256, SINGLE_USER, "relevant", "keep?")
    lib.record_reading(solo.sha256, "all-MiniLM-L6-v2", "minilm@abc", "received", "last", "mean")
    assert lib.readings([solo.sha256])[solo.sha256].model_id == "all-MiniLM-L6-v2"
    # single-user mode: the document, its marks and its reading go
    assert lib.remove_document(solo.sha256) is True
    assert lib.get_document(solo.sha256) is None and lib.mark(solo.sha256) is None and not lib.readings([solo.sha256])
    assert lib.document_shas() == [shared.sha256] and lib.mark(shared.sha256).note == "keep?"
    # team mode: the reviewer's ownership goes; the document stays while a matter or another owner holds it
    team = Library(tmp_path / "team.sqlite")
    d = _doc(3)
    team.save_document(d, owner="alice@example.com")
    team.save_document(d, owner="bob@example.com")
    with pytest.raises(AccessDenied):
        team.remove_document(d.sha256, "carol@example.com")
    assert team.remove_document(d.sha256, "alice@example.com") is False
    assert team.document_shas("alice@example.com") == [] and team.document_shas("bob@example.com") == [d.sha256]
    matter = team.create_matter("M", "bob@example.com")
    team.add_to_matter(matter.id, d.sha256, by="bob@example.com")
    assert team.remove_document(d.sha256, "bob@example.com") is False  # still in the matter
    team.remove_from_matter(matter.id, d.sha256, by="bob@example.com")
    assert team.get_document(d.sha256) is not None
    team.save_document(d, owner="bob@example.com")
    assert team.remove_document(d.sha256, "bob@example.com") is True and team.count() == 0


def test_the_single_user_workspace_can_be_handed_to_a_reviewer(tmp_path):
    lib = Library(tmp_path / "lib.sqlite")
    for i in range(2):
        lib.save_document(_doc(i))
    assert lib.transfer_workspace("Alice@Example.com") == 2
    assert len(lib.document_shas("alice@example.com")) == 2 and lib.document_shas("bob@example.com") == []
