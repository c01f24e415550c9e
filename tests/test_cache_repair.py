"""The result cache is disposable: damaged, truncated, read-only or full, every analysis still completes, in
the engine, the CLI and the dashboard, and the reviewer is told in one line."""
from __future__ import annotations

import pytest
from conftest import EN_TEXT, REPO
from streamlit.testing.v1 import AppTest
from test_cli import _cli

import attn_core as ac
from attn_core.cache import ResultStore


def _filled(path) -> ResultStore:
    store = ResultStore(path)
    store.put_many({f"k{i}": bytes(2000) for i in range(200)})
    return store


def _garbage_in_the_middle(path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 4096] = b"\xde\xad\xbe\xef" * 1024
    data[16:24] = b"\xff" * 8  # and a broken header: page size and format fields
    path.write_bytes(bytes(data))


def _truncated(path) -> None:
    path.write_bytes(path.read_bytes()[:1500])


@pytest.mark.parametrize("damage", [_garbage_in_the_middle, _truncated])
def test_a_damaged_store_is_moved_aside_and_replaced(tmp_path, damage, en_bert):
    path = tmp_path / "results.sqlite"
    _filled(path)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"results.sqlite{suffix}").unlink(missing_ok=True)
    damage(path)
    store = ResultStore(path)
    reader = ac.Reader(en_bert, store=store)
    result = reader.read(ac.document_from_text(EN_TEXT, "a.txt", "en"))
    assert result.words
    if store.notice is None:  # damage SQLite did not notice at open time shows at the first read or write
        store.get_many(["k1"])
    assert store.notice and "moved aside" in store.notice
    assert list(tmp_path.glob("results.sqlite.damaged-*"))
    assert not store.disabled and store.count() > 0  # the fresh store caches again


def test_a_full_disk_finishes_the_analysis_without_caching(tmp_path, en_bert):
    store = ResultStore(tmp_path / "results.sqlite")
    conn = store._conn()
    conn.execute("PRAGMA max_page_count = %d" % conn.execute("PRAGMA page_count").fetchone()[0])  # SQLite: full
    import random

    rng, words = random.Random(1), EN_TEXT.split()  # distinct chunks: enough results to need new pages
    text = " ".join(" ".join(rng.choice(words) for _ in range(12)) + "." for _ in range(400))
    result = ac.Reader(en_bert, store=store).read(ac.document_from_text(text, "a.txt", "en"))
    assert result.words and len(result.chunks) >= 1
    assert store.disabled and "disk is full" in store.notice and "CHUMOKU_DATA_DIR" in store.notice


def test_a_read_only_store_still_serves(tmp_path, en_bert):
    store = ResultStore(tmp_path / "results.sqlite")
    store._conn().execute("PRAGMA query_only = ON")  # what SQLite reports for a read-only file or folder
    result = ac.Reader(en_bert, store=store).read(ac.document_from_text(EN_TEXT, "a.txt", "en"))
    assert result.words and store.disabled and "not writable" in store.notice
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    other = ResultStore(blocked / "results.sqlite")  # its folder cannot even be created
    assert other.disabled and other.get_many(["k"]) == {} and other.count() == 0


def test_cli_and_dashboard_survive_a_damaged_cache(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "results.sqlite").write_bytes(b"this is not a database" * 500)
    src = tmp_path / "doc.txt"
    src.write_text(EN_TEXT, encoding="utf-8")
    res = _cli("analyze", str(src), "--quiet", env_extra={"CHUMOKU_DATA_DIR": str(data)})
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "moved aside" in res.stderr and res.stdout.startswith("{")
    again = _cli("analyze", str(src), "--quiet", env_extra={"CHUMOKU_DATA_DIR": str(data)})
    assert again.returncode == 0 and "moved aside" not in again.stderr  # the fresh store works from then on


def test_dashboard_shows_one_line_and_works(tmp_path, monkeypatch):
    data = tmp_path / "dash"
    data.mkdir()
    (data / "results.sqlite").write_bytes(b"not sqlite at all" * 300)
    monkeypatch.setenv("CHUMOKU_DATA_DIR", str(data))
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert any("moved aside" in w.value for w in at.sidebar.warning)
    at.switch_page("pages/models.py").run()
    assert not at.exception, at.exception


def test_no_sqlite_error_reaches_the_caller_when_the_file_is_swapped_for_garbage(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    store.put_many({"a": b"1"})
    store._close()
    for p in tmp_path.glob("r.sqlite*"):
        p.unlink()
    (tmp_path / "r.sqlite").write_bytes(b"garbage" * 100)
    assert store.get_many(["a"]) == {}  # repaired on the spot
    store.put_many({"b": b"2"})
    assert store.get_many(["b"]) == {"b": b"2"} and store.count() == 1 and "moved aside" in store.notice


def test_a_damaged_library_is_backed_up_before_repair_and_keeps_what_it_can(tmp_path):
    import hashlib

    from attn_core.library import Library

    path = tmp_path / "library.sqlite"
    lib = Library(path)
    docs = [ac.document_from_text(f"Document {i}. " + EN_TEXT * 20, f"d{i}.txt", "en") for i in range(40)]
    for d in docs:
        lib.save_document(d)
        lib.set_review(d.sha256, d.name, "relevant", f"note {d.name}")
    lib._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    lib._conn().close()
    data = bytearray(path.read_bytes())
    page = 4096
    last = len(data) - page  # damage one page near the end: most rows are still readable
    data[last:last + page] = b"\xde\xad" * (page // 2)
    path.write_bytes(bytes(data))
    damaged_sha = hashlib.sha256(bytes(data)).hexdigest()

    repaired = Library(path)
    backups = list(tmp_path.glob("library.sqlite.backup-*"))
    assert backups and any(hashlib.sha256(b.read_bytes()).hexdigest() == damaged_sha for b in backups)
    assert repaired.notice and "backed up" in repaired.notice
    kept = [d for d in docs if repaired.get_document(d.sha256) is not None]
    assert len(kept) >= len(docs) // 2  # what could be read was copied, not thrown away
    repaired.set_review(docs[0].sha256, docs[0].name, "read", "after the repair")  # and it works again


def test_an_unreadable_library_is_kept_as_a_backup_and_a_fresh_one_starts(tmp_path):
    from attn_core.library import Library

    path = tmp_path / "library.sqlite"
    path.write_bytes(b"definitely not sqlite" * 500)
    lib = Library(path)
    assert (tmp_path / next(p.name for p in tmp_path.glob("library.sqlite.backup-*"))).read_bytes() == \
        b"definitely not sqlite" * 500
    assert lib.notice and "backed up" in lib.notice
    d = ac.document_from_text(EN_TEXT, "a.txt", "en")
    lib.save_document(d)
    assert lib.get_document(d.sha256) is not None


@pytest.fixture
def small_fs(tmp_path):
    """A real, tiny filesystem (tmpfs) to fill up or remount read-only; skipped where mounting is not allowed."""
    import subprocess

    mnt = tmp_path / "fs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a small filesystem needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder, leave: int = 6 * 1024) -> None:
    import os

    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    (folder / "filler").write_bytes(b"\0" * max(0, free - leave))


def test_cli_on_a_full_filesystem_finishes_and_says_why(small_fs, tmp_path):
    data = small_fs / "data"
    data.mkdir()
    _fill(small_fs)
    src = tmp_path / "doc.txt"
    src.write_text(EN_TEXT * 3, encoding="utf-8")
    res = _cli("analyze", str(src), "--quiet", env_extra={"CHUMOKU_DATA_DIR": str(data)})
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert res.stdout.startswith("{") and '"words"' in res.stdout  # the finished result is never discarded
    assert "not being cached" in res.stderr and "CHUMOKU_DATA_DIR" in res.stderr


def test_cli_and_dashboard_on_a_read_only_filesystem(small_fs, tmp_path, monkeypatch):
    import subprocess

    data = small_fs / "data"
    data.mkdir()
    store = ResultStore(data / "results.sqlite")
    store.put_many({"x": b"1"})
    store._close()  # no open file may keep the filesystem busy
    for p in data.glob("results.sqlite-*"):
        p.unlink()
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], capture_output=True).returncode == 0
    src = tmp_path / "doc.txt"
    src.write_text(EN_TEXT, encoding="utf-8")
    res = _cli("analyze", str(src), "--quiet", env_extra={"CHUMOKU_DATA_DIR": str(data)})
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert res.stdout.startswith("{") and "not being cached" in res.stderr

    monkeypatch.setenv("CHUMOKU_DATA_DIR", str(data))
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    at.switch_page("pages/screen.py").run()
    at.file_uploader(key="uploader").set_value([("ro.txt", EN_TEXT.encode("utf-8"), "text/plain")])
    at.run()
    assert not at.exception, at.exception
    assert [h for h in at.html if "attn-hl" in h.value]  # analysed and shown without a cache
    home = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=120)  # the entry script owns the sidebar
    home.run()
    assert not home.exception, home.exception
    warnings = " ".join(w.value for w in home.sidebar.warning)
    assert "cannot be written" in warnings and "not being cached" in warnings  # said, in one line each
