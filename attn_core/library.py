"""The reviewers' library: documents, who may see them, matters, and reviewer marks with their history.

The chunk cache (cache.ResultStore) may drop entries to stay bounded; a reviewer's documents and
marks must not disappear, so they live in their own SQLite file beside it (never evicted, never cleared
by "clear cache"). A document is stored once, by the SHA-256 of its bytes; who may see it is a separate
question, answered by the ownership and matter tables:

* **Single-user mode** (no login configured): one workspace. Every document belongs to the workspace
  owner `SINGLE_USER` (""), and a viewer of `None` sees everything.
* **Team mode** (OpenID Connect login): a document belongs to the reviewers who uploaded it (their
  private area) and to the matters it was added to; a reviewer sees their own documents and those of the
  matters they are a member of. Knowing a hash (a share link) is not enough: `can_see` decides.

Marks are per reviewer and append-only: a save adds version N+1 of the (document, reviewer) mark and
keeps the earlier ones as history. A save made from a form loaded at version N while someone else saved
N+1 meanwhile raises `MarkConflict` instead of silently replacing their verdict.

The schema is versioned with `PRAGMA user_version`; opening an older file migrates it in place, in one
transaction, keeping every document and mark (version 1 had one mark per document and no owners).
"""
from __future__ import annotations

import csv
import enum
import io
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .cache import data_dir, thread_connection
from .document import Document, Paragraph
from .errors import ChumokuError

SCHEMA_VERSION = 2
SINGLE_USER = ""  # owner and reviewer of the single-user workspace (and of everything stored before version 2)


class MarkStatus(enum.StrEnum):
    """A reviewer's verdict on a document."""

    UNREAD = "unread"
    READ = "read"
    RELEVANT = "relevant"
    NOT_RELEVANT = "not relevant"


class MemberRole(enum.StrEnum):
    """What a member may do in a matter: the owner also manages its members."""

    OWNER = "owner"
    MEMBER = "member"


REVIEW_STATUSES = tuple(str(s) for s in MarkStatus)  # the pre-enum spelling, kept for callers and tests


class LibraryError(ChumokuError):
    """Something a reviewer asked the library for that it refuses; `message` is safe to show."""

    code = "library"


class AccessDenied(LibraryError):
    """The reviewer may not see or change this document or matter."""

    code = "access_denied"


class MarkConflict(LibraryError):
    """A mark was saved from a stale view: someone saved a newer version since the form was loaded."""

    code = "mark_conflict"

    def __init__(self, current: "Mark", expected_version: int) -> None:
        who = reviewer_label(current.reviewer)
        when = format_time(current.time)
        super().__init__(f"{who} saved a newer mark ({current.status}) at {when}, after this form was loaded; "
                         f"this save was not applied.")
        self.current = current
        self.expected_version = expected_version


@dataclass(frozen=True)
class Review:
    """A document's mark as version 1 stored it (kept for callers that build one, e.g. the screening table)."""

    sha256: str
    name: str
    status: str  # one of REVIEW_STATUSES
    note: str
    updated: float


@dataclass(frozen=True)
class Mark:
    """One saved verdict: (document, reviewer, status, note, time) and its version for that pair."""

    sha256: str
    reviewer: str  # e-mail or OIDC subject; SINGLE_USER in single-user mode
    status: MarkStatus
    note: str
    time: float  # seconds since the epoch (UTC)
    version: int  # 1, 2, … per (document, reviewer): what a form remembers to detect a stale save
    name: str = ""  # the document's name as the reviewer saw it (exports keep it if the document goes)

    @property
    def updated(self) -> float:
        """The name version 1 used for `time` (the screening table and old callers read it)."""
        return self.time


@dataclass(frozen=True)
class DocumentInfo:
    """A library row without the document's body: enough to list and filter a workspace."""

    sha256: str
    name: str
    language: str
    chars: int
    added: float
    owners: tuple[str, ...]
    matters: tuple[int, ...]


@dataclass(frozen=True)
class Reading:
    """The last model that read a document (the Library page shows it)."""

    sha256: str
    model_id: str
    model_identity: str
    method: str
    layer: str
    head: str
    time: float


@dataclass(frozen=True)
class Matter:
    """A named collection of documents and claims, shared with named members."""

    id: int
    name: str
    owner: str
    created: float
    members: tuple[str, ...]  # owner first


@dataclass(frozen=True)
class MatterClaim:
    id: int
    matter_id: int
    text: str
    added_by: str
    added: float


def normalise_identity(identity: str) -> str:
    """E-mail addresses compare case-insensitively (members are typed by hand); OIDC subjects stay exact."""
    identity = identity.strip()
    return identity.lower() if "@" in identity else identity


def reviewer_label(reviewer: str) -> str:
    """How a reviewer is named in pages and exports ("this workspace" for the single-user one)."""
    return reviewer or "this workspace"


def format_time(t: float) -> str:
    """UTC, ISO 8601, to the second: the same in the page, the CSV and the XLSX."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _document_to_json(doc: Document) -> str:
    d = asdict(doc)
    return json.dumps(d, ensure_ascii=False)


def _document_from_json(raw: str) -> Document:
    d = json.loads(raw)
    d["paragraphs"] = tuple(Paragraph(**p) for p in d.get("paragraphs", ()))
    d["notes"] = tuple(d.get("notes", ()))
    return Document(**d)


_V2_TABLES = (
    "CREATE TABLE IF NOT EXISTS owners (sha256 TEXT NOT NULL, owner TEXT NOT NULL, added REAL NOT NULL, "
    "PRIMARY KEY (sha256, owner))",
    "CREATE INDEX IF NOT EXISTS owners_by_owner ON owners(owner)",
    "CREATE TABLE IF NOT EXISTS marks (id INTEGER PRIMARY KEY AUTOINCREMENT, sha256 TEXT NOT NULL, "
    "reviewer TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL, note TEXT NOT NULL, time REAL NOT NULL, "
    "version INTEGER NOT NULL, UNIQUE (sha256, reviewer, version))",
    "CREATE TABLE IF NOT EXISTS matters (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, "
    "owner TEXT NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS matter_members (matter_id INTEGER NOT NULL, member TEXT NOT NULL, "
    "role TEXT NOT NULL, added REAL NOT NULL, PRIMARY KEY (matter_id, member))",
    "CREATE INDEX IF NOT EXISTS members_by_member ON matter_members(member)",
    "CREATE TABLE IF NOT EXISTS matter_documents (matter_id INTEGER NOT NULL, sha256 TEXT NOT NULL, "
    "added_by TEXT NOT NULL, added REAL NOT NULL, PRIMARY KEY (matter_id, sha256))",
    "CREATE TABLE IF NOT EXISTS matter_claims (id INTEGER PRIMARY KEY AUTOINCREMENT, matter_id INTEGER NOT NULL, "
    "text TEXT NOT NULL, added_by TEXT NOT NULL, added REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS readings (sha256 TEXT PRIMARY KEY, model_id TEXT NOT NULL, "
    "model_identity TEXT NOT NULL, method TEXT NOT NULL, layer TEXT NOT NULL, head TEXT NOT NULL, "
    "time REAL NOT NULL)",
)


class Library:
    """Documents by hash, who may see them, matters and reviewer marks; safe to share between threads and
    processes (SQLite WAL; every multi-statement change runs in one IMMEDIATE transaction)."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path else data_dir() / "library.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._readings: dict[str, tuple] = {}  # sha -> last recorded reading: a cached re-read writes nothing
        self.notice: str | None = None  # one line for the reviewer after a repair
        try:
            self._migrate()
            damaged = self._conn().execute("PRAGMA quick_check").fetchall() != [("ok",)]
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and self._unwritable(exc):
                self._use_fallback_file()
                damaged = False
            elif "malformed" in str(exc) or "not a database" in str(exc) or "corrupt" in str(exc):
                damaged = True
            else:
                raise
        if damaged:
            self._repair()

    @staticmethod
    def _unwritable(exc: sqlite3.Error) -> bool:
        msg = str(exc).lower()
        return "unable to open" in msg or "readonly" in msg.replace("-", "") or "disk is full" in msg

    def _use_fallback_file(self) -> None:
        """A read-only or full data folder: keep the reviewers' work in a temporary file instead of failing,
        and say so (nothing that was on disk is touched; new documents and marks must be moved later)."""
        wanted = self.path
        self._local = threading.local()
        self.path = Path(tempfile.gettempdir()) / f"chumoku-library-{os.getuid()}-{abs(hash(str(wanted))) % 10**8}.sqlite"
        self._migrate()
        self.notice = (f"The data folder {wanted.parent} cannot be written, so new documents and marks are kept in "
                       f"{self.path} until it can; set CHUMOKU_DATA_DIR to a writable folder.")

    def _repair(self) -> None:
        """A damaged library: back the file up first (never deleted), then copy every row that can still be
        read into a fresh file. Documents and marks are the reviewers' work: nothing is thrown away, and the
        backup stays beside it for a manual recovery of whatever could not be read."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = self.path.with_name(f"{self.path.name}.backup-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(str(self.path) + suffix)
            if part.exists():
                shutil.copy2(part, Path(str(backup) + suffix))
        salvaged, lost = self._salvage(backup)
        for suffix in ("-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
        self._migrate()
        copied = 0
        with self._write() as c:
            for table, columns, rows in salvaged:
                try:
                    have = {r[1] for r in c.execute(f'PRAGMA table_info("{table}")')}
                except sqlite3.Error:
                    continue
                keep = [i for i, col in enumerate(columns) if col in have]
                if not have or not keep:
                    continue
                names = ", ".join(f'"{columns[i]}"' for i in keep)
                marks = ", ".join("?" * len(keep))
                for row in rows:
                    try:
                        c.execute(f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({marks})',
                                  [row[i] for i in keep])
                        copied += 1
                    except sqlite3.Error:
                        lost += 1
        self.notice = (f"The library file was damaged. It was backed up to {backup.name} before anything else; "
                       f"{copied} records were recovered" + (f" and {lost} could not be read (they are still in "
                                                              f"the backup)" if lost else "") + ".")

    @staticmethod
    def _salvage(path: Path) -> tuple[list[tuple[str, list[str], list[tuple]]], int]:
        """Every row that can be read from a damaged copy, table by table, row by row."""
        out: list[tuple[str, list[str], list[tuple]]] = []
        lost = 0
        try:
            src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            tables = [r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                                 "AND name NOT LIKE 'sqlite_%'")]
        except sqlite3.Error:
            return out, 0
        for table in tables:
            try:
                cur = src.execute(f'SELECT * FROM "{table}"')
                columns = [d[0] for d in cur.description]
            except sqlite3.Error:
                lost += 1
                continue
            rows = []
            while True:
                try:
                    row = cur.fetchone()
                except sqlite3.Error:
                    lost += 1
                    break
                if row is None:
                    break
                rows.append(row)
            out.append((table, columns, rows))
        src.close()
        return out, lost

    def _conn(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path)  # synchronous=FULL: a saved mark is never lost

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: the check and the write it depends on see the same state, across
        processes too (a version check and its insert; a migration and the schema it reads)."""
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    # --- schema ----------------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._write() as c:
            version = int(c.execute("PRAGMA user_version").fetchone()[0])
            if version >= SCHEMA_VERSION:
                return
            c.execute("CREATE TABLE IF NOT EXISTS documents (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, "
                      "language TEXT NOT NULL, chars INTEGER NOT NULL, added REAL NOT NULL, body TEXT NOT NULL)")
            for statement in _V2_TABLES:
                c.execute(statement)
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            # version 1 → 2: every stored document belonged to the one workspace, every mark to its one reviewer
            c.execute("INSERT OR IGNORE INTO owners(sha256, owner, added) SELECT sha256, ?, added FROM documents",
                      (SINGLE_USER,))
            if "reviews" in tables:
                c.execute("INSERT OR IGNORE INTO marks(sha256, reviewer, name, status, note, time, version) "
                          "SELECT sha256, ?, name, status, note, updated, 1 FROM reviews", (SINGLE_USER,))
                c.execute("ALTER TABLE reviews RENAME TO reviews_v1")  # kept as it was, read by nothing
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # --- documents -------------------------------------------------------------------------------
    def save_document(self, doc: Document, owner: str = SINGLE_USER) -> None:
        """Store the document (once per hash) and record `owner` as one of its owners."""
        owner = normalise_identity(owner)
        now = time.time()
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO documents(sha256, name, language, chars, added, body) "
                      "VALUES (?,?,?,?,?,?)", (doc.sha256, doc.name, doc.language, doc.chars, now,
                                               _document_to_json(doc)))
            c.execute("INSERT OR IGNORE INTO owners(sha256, owner, added) VALUES (?,?,?)", (doc.sha256, owner, now))

    def get_document(self, sha256: str) -> Document | None:
        """The document by hash, with no access check: callers that serve a reviewer check `can_see` first."""
        row = self._conn().execute("SELECT body FROM documents WHERE sha256=?", (sha256,)).fetchone()
        return _document_from_json(row[0]) if row else None

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM documents").fetchone()[0])

    def document_shas(self, viewer: str | None = None) -> list[str]:
        """Hashes the viewer may see, oldest first (None: single-user mode, everything). Cheap: every
        script run of every session asks it to keep its document list in step with the workspace."""
        c = self._conn()
        if viewer is None:
            return [r[0] for r in c.execute("SELECT sha256 FROM documents ORDER BY added, sha256")]
        viewer = normalise_identity(viewer)
        return [r[0] for r in c.execute(
            "SELECT d.sha256 FROM documents d WHERE d.sha256 IN (SELECT sha256 FROM owners WHERE owner=?) "
            "OR d.sha256 IN (SELECT md.sha256 FROM matter_documents md JOIN matter_members mm "
            "ON mm.matter_id = md.matter_id WHERE mm.member=?) ORDER BY d.added, d.sha256", (viewer, viewer))]

    def can_see(self, viewer: str | None, sha256: str) -> bool:
        """Whether a share link's hash may open for this viewer (None: single-user mode)."""
        if viewer is None:
            return self._conn().execute("SELECT 1 FROM documents WHERE sha256=?", (sha256,)).fetchone() is not None
        viewer = normalise_identity(viewer)
        return self._conn().execute(
            "SELECT 1 FROM documents d WHERE d.sha256=? AND (EXISTS (SELECT 1 FROM owners o WHERE o.sha256=d.sha256 "
            "AND o.owner=?) OR EXISTS (SELECT 1 FROM matter_documents md JOIN matter_members mm ON "
            "mm.matter_id=md.matter_id WHERE md.sha256=d.sha256 AND mm.member=?))",
            (sha256, viewer, viewer)).fetchone() is not None

    def documents(self, viewer: str | None = None) -> list[DocumentInfo]:
        """What the viewer may see, oldest first, without bodies (the Library page lists them all)."""
        shas = self.document_shas(viewer)
        if not shas:
            return []
        c = self._conn()
        rows = {r[0]: r for r in self._select_in(
            c, "SELECT sha256, name, language, chars, added FROM documents WHERE sha256 IN ({})", shas)}
        owners: dict[str, list[str]] = {}
        for sha, owner in self._select_in(c, "SELECT sha256, owner FROM owners WHERE sha256 IN ({}) "
                                             "ORDER BY added", shas):
            owners.setdefault(sha, []).append(owner)
        matters: dict[str, list[int]] = {}
        for sha, matter_id in self._select_in(c, "SELECT sha256, matter_id FROM matter_documents WHERE sha256 IN ({}) "
                                                 "ORDER BY matter_id", shas):
            matters.setdefault(sha, []).append(int(matter_id))
        if viewer is not None:  # a viewer learns only about matters they belong to, not other reviewers' areas
            mine = {m.id for m in self.matters(viewer)}
            viewer_id = normalise_identity(viewer)
            matters = {sha: [m for m in ms if m in mine] for sha, ms in matters.items()}
            owners = {sha: [o for o in os_ if o == viewer_id] for sha, os_ in owners.items()}
        return [DocumentInfo(sha, rows[sha][1], rows[sha][2], int(rows[sha][3]), float(rows[sha][4]),
                             tuple(owners.get(sha, ())), tuple(matters.get(sha, ()))) for sha in shas if sha in rows]

    @staticmethod
    def _select_in(c: sqlite3.Connection, sql: str, values: Sequence, chunk: int = 500) -> list[tuple]:
        """`sql` with an IN ({}) list, run in slices (SQLite bounds the number of parameters)."""
        out: list[tuple] = []
        values = list(values)
        for i in range(0, len(values), chunk):
            part = values[i:i + chunk]
            out += c.execute(sql.format(",".join("?" * len(part))), part).fetchall()
        return out

    def remove_document(self, sha256: str, viewer: str | None = None) -> bool:
        """Remove a document from the viewer's workspace; True when the document itself was deleted.

        Single-user mode (viewer None): the document, its readings and marks go. Team mode: the viewer's
        ownership goes (their private area); the document stays while another reviewer owns it or a
        matter holds it (taking it out of a matter is `remove_from_matter`), else it is deleted with its
        marks. A viewer who does not own it is refused (AccessDenied)."""
        with self._write() as c:
            if viewer is not None:
                viewer = normalise_identity(viewer)
                gone = c.execute("DELETE FROM owners WHERE sha256=? AND owner=?", (sha256, viewer)).rowcount
                if not gone:
                    raise AccessDenied("Only a reviewer who uploaded this document can remove it from their area; "
                                       "take it out of its matter instead.")
                held = c.execute("SELECT (SELECT COUNT(*) FROM owners WHERE sha256=?) + "
                                 "(SELECT COUNT(*) FROM matter_documents WHERE sha256=?)", (sha256, sha256)).fetchone()[0]
                if held:
                    return False
            for table in ("owners", "matter_documents", "marks", "readings", "documents"):
                c.execute(f"DELETE FROM {table} WHERE sha256=?", (sha256,))
        self._readings.pop(sha256, None)
        return True

    def transfer_workspace(self, to_owner: str, from_owner: str = SINGLE_USER) -> int:
        """Give the documents of one owner to another (e.g. the single-user workspace to the first reviewer
        when a server moves to team mode); returns how many documents moved. Marks keep their reviewer."""
        to_owner, now = normalise_identity(to_owner), time.time()
        with self._write() as c:
            shas = [r[0] for r in c.execute("SELECT sha256 FROM owners WHERE owner=?", (from_owner,))]
            for sha in shas:
                c.execute("INSERT OR IGNORE INTO owners(sha256, owner, added) VALUES (?,?,?)", (sha, to_owner, now))
            c.execute("DELETE FROM owners WHERE owner=?", (from_owner,))
        return len(shas)

    # --- readings --------------------------------------------------------------------------------
    def record_reading(self, sha256: str, model_id: str, model_identity: str, method: str, layer: str | int,
                       head: str | int) -> None:
        """Remember the model that last read a document. Every script run re-reads from the memo, so an
        unchanged reading is remembered in memory and not written again."""
        row = (model_id, model_identity, str(method), str(layer), str(head))
        if self._readings.get(sha256) == row:
            return
        self._conn().execute("INSERT OR REPLACE INTO readings(sha256, model_id, model_identity, method, layer, head, "
                             "time) VALUES (?,?,?,?,?,?,?)", (sha256, *row, time.time()))
        self._readings[sha256] = row

    def readings(self, shas: Sequence[str]) -> dict[str, Reading]:
        rows = self._select_in(self._conn(), "SELECT sha256, model_id, model_identity, method, layer, head, time "
                                             "FROM readings WHERE sha256 IN ({})", shas)
        return {r[0]: Reading(*r) for r in rows}

    # --- reviewer marks --------------------------------------------------------------------------
    _MARK_COLUMNS = "sha256, reviewer, status, note, time, version, name"

    @staticmethod
    def _mark(row: tuple) -> Mark:
        sha, reviewer, status, note, t, version, name = row
        return Mark(sha, reviewer, MarkStatus(status), note, float(t), int(version), name)

    def set_mark(self, sha256: str, reviewer: str, status: str, note: str = "", *,
                 expected_version: int | None = None, name: str = "") -> Mark:
        """Save a new version of this reviewer's mark; earlier versions stay as history.

        `expected_version` is the version the reviewer's form showed (0: no mark yet). When someone saved
        a newer one meanwhile (another tab, or a colleague sharing the single-user workspace), nothing is
        written and MarkConflict carries the newer mark. None skips the check (scripts, migrations)."""
        try:
            status = MarkStatus(status)
        except ValueError:
            raise ValueError(f"status must be one of {REVIEW_STATUSES}, not {status!r}") from None
        reviewer = normalise_identity(reviewer)
        with self._write() as c:
            row = c.execute(f"SELECT {self._MARK_COLUMNS} FROM marks WHERE sha256=? AND reviewer=? "
                            "ORDER BY version DESC LIMIT 1", (sha256, reviewer)).fetchone()
            current = self._mark(row) if row else None
            version = current.version if current else 0
            if expected_version is not None and expected_version != version:
                assert current is not None  # a form can only be behind a mark that exists
                raise MarkConflict(current, expected_version)
            if not name:
                doc = c.execute("SELECT name FROM documents WHERE sha256=?", (sha256,)).fetchone()
                name = doc[0] if doc else (current.name if current else "")
            mark = Mark(sha256, reviewer, status, note, time.time(), version + 1, name)
            c.execute("INSERT INTO marks(sha256, reviewer, status, note, time, version, name) VALUES (?,?,?,?,?,?,?)",
                      (mark.sha256, mark.reviewer, str(mark.status), mark.note, mark.time, mark.version, mark.name))
        return mark

    def mark(self, sha256: str, reviewer: str = SINGLE_USER) -> Mark | None:
        """This reviewer's current mark on the document (its newest version)."""
        row = self._conn().execute(f"SELECT {self._MARK_COLUMNS} FROM marks WHERE sha256=? AND reviewer=? "
                                   "ORDER BY version DESC LIMIT 1", (sha256, normalise_identity(reviewer))).fetchone()
        return self._mark(row) if row else None

    def _visible_reviewers(self, viewer: str, shas: Iterable[str]) -> dict[str, set[str]]:
        """Per document, whose marks the viewer may read: their own, and those of members of a matter that
        holds the document and that the viewer belongs to. A colleague's verdict on their private copy of
        the same file stays private."""
        viewer = normalise_identity(viewer)
        out: dict[str, set[str]] = {sha: {viewer} for sha in shas}
        c = self._conn()
        shas_list = list(out)
        for i in range(0, len(shas_list), 500):
            part = shas_list[i:i + 500]
            rows = c.execute(
                "SELECT md.sha256, other.member FROM matter_documents md "
                "JOIN matter_members me ON me.matter_id = md.matter_id AND me.member = ? "
                "JOIN matter_members other ON other.matter_id = md.matter_id "
                f"WHERE md.sha256 IN ({','.join('?' * len(part))})", [viewer, *part]).fetchall()
            for sha, member in rows:
                out[sha].add(member)
        return out

    def marks(self, shas: Sequence[str] | None = None, viewer: str | None = None, *,
              history: bool = False) -> list[Mark]:
        """Current marks (one per document and reviewer; `history=True`: every version), newest first.
        `shas` limits them to some documents; `viewer` (team mode) to the marks that reviewer may read."""
        c = self._conn()
        where = "" if history else (" WHERE version = (SELECT MAX(version) FROM marks m2 WHERE m2.sha256 = marks.sha256 "
                                    "AND m2.reviewer = marks.reviewer)")
        sql = f"SELECT {self._MARK_COLUMNS} FROM marks{where}"
        if shas is not None:
            rows = self._select_in(c, sql + (" AND" if where else " WHERE") + " sha256 IN ({})", list(shas))
        else:
            rows = c.execute(sql).fetchall()
        out = [self._mark(r) for r in rows]
        if viewer is not None:
            allowed = self._visible_reviewers(viewer, {m.sha256 for m in out})
            out = [m for m in out if m.reviewer in allowed.get(m.sha256, ())]
        return sorted(out, key=lambda m: (m.time, m.version), reverse=True)

    def mark_history(self, sha256: str, viewer: str | None = None) -> list[Mark]:
        """Every saved version of every (visible) reviewer's mark on one document, newest first."""
        return self.marks([sha256], viewer, history=True)

    # --- version-1 API: one workspace mark per document (kept for scripts and older callers) -------------
    def set_review(self, sha256: str, name: str, status: str, note: str = "") -> Review:
        m = self.set_mark(sha256, SINGLE_USER, status, note, name=name)
        return Review(m.sha256, m.name, str(m.status), m.note, m.time)

    def review(self, sha256: str, reviewer: str = SINGLE_USER) -> Review | None:
        m = self.mark(sha256, reviewer)
        return Review(m.sha256, m.name, str(m.status), m.note, m.time) if m else None

    def reviews(self, shas: list[str] | None = None) -> list[Mark]:
        """Current marks of every reviewer, newest first; pass `shas` to see only some documents."""
        return self.marks(shas)

    def reviews_csv(self, shas: list[str] | None = None) -> str:
        """Current marks as plain CSV (no BOM; the dashboard's download uses export.marks_csv)."""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["document", "sha256", "reviewer", "status", "note", "updated_utc"])
        for m in self.marks(shas):
            w.writerow([m.name, m.sha256, m.reviewer, str(m.status), m.note, format_time(m.time)])
        return buf.getvalue()

    # --- matters ---------------------------------------------------------------------------------
    def create_matter(self, name: str, owner: str) -> Matter:
        name = " ".join(name.split())
        if not name:
            raise LibraryError("A matter needs a name.")
        owner, now = normalise_identity(owner), time.time()
        with self._write() as c:
            matter_id = c.execute("INSERT INTO matters(name, owner, created) VALUES (?,?,?)",
                                  (name[:200], owner, now)).lastrowid
            c.execute("INSERT INTO matter_members(matter_id, member, role, added) VALUES (?,?,?,?)",
                      (matter_id, owner, str(MemberRole.OWNER), now))
        matter = self.matter(int(matter_id))
        assert matter is not None
        return matter

    def matter(self, matter_id: int) -> Matter | None:
        c = self._conn()
        row = c.execute("SELECT id, name, owner, created FROM matters WHERE id=?", (matter_id,)).fetchone()
        if row is None:
            return None
        members = [r[0] for r in c.execute("SELECT member FROM matter_members WHERE matter_id=? "
                                           "ORDER BY role = 'owner' DESC, added", (matter_id,))]
        return Matter(int(row[0]), row[1], row[2], float(row[3]), tuple(members))

    def matters(self, viewer: str | None = None) -> list[Matter]:
        """Matters the viewer belongs to (None: all of them), by name."""
        c = self._conn()
        if viewer is None:
            ids = [r[0] for r in c.execute("SELECT id FROM matters")]
        else:
            ids = [r[0] for r in c.execute("SELECT matter_id FROM matter_members WHERE member=?",
                                           (normalise_identity(viewer),))]
        found = [m for m in (self.matter(int(i)) for i in ids) if m is not None]
        return sorted(found, key=lambda m: (m.name.lower(), m.id))

    def _require_member(self, c: sqlite3.Connection, matter_id: int, who: str, owner: bool = False) -> None:
        role = c.execute("SELECT role FROM matter_members WHERE matter_id=? AND member=?",
                         (matter_id, normalise_identity(who))).fetchone()
        if role is None or (owner and role[0] != MemberRole.OWNER):
            raise AccessDenied("Only the matter's owner can change its members." if owner and role else
                               "You are not a member of this matter.")

    def add_member(self, matter_id: int, member: str, by: str) -> None:
        member = normalise_identity(member)
        if not member:
            raise LibraryError("Give the member's e-mail address (as the sign-in provider reports it).")
        with self._write() as c:
            self._require_member(c, matter_id, by, owner=True)
            c.execute("INSERT OR IGNORE INTO matter_members(matter_id, member, role, added) VALUES (?,?,?,?)",
                      (matter_id, member, str(MemberRole.MEMBER), time.time()))

    def remove_member(self, matter_id: int, member: str, by: str) -> None:
        with self._write() as c:
            self._require_member(c, matter_id, by, owner=True)
            c.execute("DELETE FROM matter_members WHERE matter_id=? AND member=? AND role != ?",
                      (matter_id, normalise_identity(member), str(MemberRole.OWNER)))

    def add_to_matter(self, matter_id: int, sha256: str, by: str) -> None:
        """Share a document the member can see with everyone in the matter."""
        if not self.can_see(by, sha256):
            raise AccessDenied("You can only add documents you can see.")
        with self._write() as c:
            self._require_member(c, matter_id, by)
            c.execute("INSERT OR IGNORE INTO matter_documents(matter_id, sha256, added_by, added) VALUES (?,?,?,?)",
                      (matter_id, sha256, normalise_identity(by), time.time()))

    def remove_from_matter(self, matter_id: int, sha256: str, by: str) -> None:
        with self._write() as c:
            self._require_member(c, matter_id, by)
            c.execute("DELETE FROM matter_documents WHERE matter_id=? AND sha256=?", (matter_id, sha256))

    def matter_documents(self, matter_id: int) -> list[str]:
        return [r[0] for r in self._conn().execute(
            "SELECT sha256 FROM matter_documents WHERE matter_id=? ORDER BY added", (matter_id,))]

    def add_claim(self, matter_id: int, text: str, by: str) -> MatterClaim:
        text = text.strip()
        if not text:
            raise LibraryError("The claim is empty.")
        with self._write() as c:
            self._require_member(c, matter_id, by)
            claim_id = c.execute("INSERT INTO matter_claims(matter_id, text, added_by, added) VALUES (?,?,?,?)",
                                 (matter_id, text, normalise_identity(by), time.time())).lastrowid
        return next(cl for cl in self.claims(matter_id) if cl.id == claim_id)

    def claims(self, matter_id: int) -> list[MatterClaim]:
        return [MatterClaim(int(r[0]), int(r[1]), r[2], r[3], float(r[4])) for r in self._conn().execute(
            "SELECT id, matter_id, text, added_by, added FROM matter_claims WHERE matter_id=? ORDER BY added",
            (matter_id,))]

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
