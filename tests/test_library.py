"""The reviewer's library: documents and marks survive a restart and concurrent writers."""
from __future__ import annotations

import csv
import io
import multiprocessing as mp
import threading

import pytest

from attn_core.document import Document, Paragraph, document_from_text
from attn_core.library import REVIEW_STATUSES, Library, default_library


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
