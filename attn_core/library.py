"""The reviewer's library: uploaded documents and reviewer marks, kept on disk and never evicted.

The chunk cache (cache.ResultStore) may drop entries to stay bounded; a reviewer's documents and
marks must not disappear, so they live in their own SQLite file beside it. A document is found by the
SHA-256 of its bytes: knowing the hash (from a share link) is what lets a teammate open it.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .cache import data_dir, thread_connection
from .document import Document, Paragraph

REVIEW_STATUSES = ("unread", "read", "relevant", "not relevant")


@dataclass(frozen=True)
class Review:
    sha256: str
    name: str
    status: str  # one of REVIEW_STATUSES
    note: str
    updated: float


def _document_to_json(doc: Document) -> str:
    d = asdict(doc)
    return json.dumps(d, ensure_ascii=False)


def _document_from_json(raw: str) -> Document:
    d = json.loads(raw)
    d["paragraphs"] = tuple(Paragraph(**p) for p in d.get("paragraphs", ()))
    d["notes"] = tuple(d.get("notes", ()))
    return Document(**d)


class Library:
    """Documents by hash and reviewer marks; safe to share between threads and processes."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path else data_dir() / "library.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        c = self._conn()
        c.execute("CREATE TABLE IF NOT EXISTS documents (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, "
                  "language TEXT NOT NULL, chars INTEGER NOT NULL, added REAL NOT NULL, body TEXT NOT NULL)")
        c.execute("CREATE TABLE IF NOT EXISTS reviews (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, "
                  "status TEXT NOT NULL, note TEXT NOT NULL, updated REAL NOT NULL)")

    def _conn(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path)  # synchronous=FULL: a saved mark is never lost

    # --- documents -------------------------------------------------------------------------------
    def save_document(self, doc: Document) -> None:
        self._conn().execute(
            "INSERT OR REPLACE INTO documents(sha256, name, language, chars, added, body) VALUES (?,?,?,?,?,?)",
            (doc.sha256, doc.name, doc.language, doc.chars, time.time(), _document_to_json(doc)))

    def get_document(self, sha256: str) -> Document | None:
        row = self._conn().execute("SELECT body FROM documents WHERE sha256=?", (sha256,)).fetchone()
        return _document_from_json(row[0]) if row else None

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM documents").fetchone()[0])

    # --- reviewer marks --------------------------------------------------------------------------
    def set_review(self, sha256: str, name: str, status: str, note: str = "") -> Review:
        if status not in REVIEW_STATUSES:
            raise ValueError(f"status must be one of {REVIEW_STATUSES}, not {status!r}")
        review = Review(sha256, name, status, note, time.time())
        self._conn().execute("INSERT OR REPLACE INTO reviews(sha256, name, status, note, updated) "
                             "VALUES (?,?,?,?,?)", (review.sha256, review.name, review.status, review.note,
                                                    review.updated))
        return review

    def review(self, sha256: str) -> Review | None:
        row = self._conn().execute("SELECT sha256, name, status, note, updated FROM reviews WHERE sha256=?",
                                   (sha256,)).fetchone()
        return Review(*row) if row else None

    def reviews(self, shas: list[str] | None = None) -> list[Review]:
        """Marks, newest first; pass `shas` to see only one session's documents."""
        rows = self._conn().execute(
            "SELECT sha256, name, status, note, updated FROM reviews ORDER BY updated DESC").fetchall()
        wanted = None if shas is None else set(shas)
        return [Review(*r) for r in rows if wanted is None or r[0] in wanted]

    def reviews_csv(self, shas: list[str] | None = None) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["document", "sha256", "status", "note", "updated_utc"])
        for r in self.reviews(shas):
            w.writerow([r.name, r.sha256, r.status, r.note,
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.updated))])
        return buf.getvalue()

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())


_lock = threading.Lock()
_libraries: dict[str, Library] = {}


def default_library() -> Library:
    """One library per data directory per process."""
    path = str(data_dir() / "library.sqlite")
    with _lock:
        if path not in _libraries:
            _libraries[path] = Library(path)
        return _libraries[path]
