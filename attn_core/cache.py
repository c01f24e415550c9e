"""The on-disk result store: SQLite in WAL mode, shared by processes, bounded in size.

Chunk results are keyed by (model identity, settings, chunk content); an interrupted analysis finds
its finished chunks here and resumes.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path

DEFAULT_MAX_BYTES = 2 * 1024**3


def data_dir() -> Path:
    """CHUMOKU_DATA_DIR, else the user's cache directory."""
    env = os.environ.get("CHUMOKU_DATA_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "chumoku"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # a read-only or missing location: the stores say so when they cannot write
    return path


def models_dir() -> Path:
    """Where converted models live: CHUMOKU_MODELS_DIR, else the data directory (models are not results:
    a team server may keep them on another disk, and tests share one conversion across test data dirs)."""
    env = os.environ.get("CHUMOKU_MODELS_DIR")
    path = Path(env).expanduser() if env else data_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_key(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8") if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """Write `path` through a temporary file beside it and a rename, so another process (a Ray worker, the
    dashboard) reads the old file or the new one, never half of one. OSError propagates (the caller decides
    whether a full or read-only folder matters); the temporary file never stays."""
    import contextlib

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def thread_connection(local: threading.local, path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """One WAL connection per thread and process (sqlite3 connections must not cross either)."""
    conn = getattr(local, "conn", None)
    if conn is None or getattr(local, "pid", None) != os.getpid():
        conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        local.conn, local.pid = conn, os.getpid()
    return conn


class ResultStore:
    """A key → bytes store with least-recently-used eviction past `max_bytes`.

    The store is a cache, so it is disposable: a damaged database is moved aside and replaced by a fresh one;
    a full disk or a read-only folder turns caching off (every result is still computed and returned) and
    `notice` says why, naming CHUMOKU_DATA_DIR. Nothing here ever takes an analysis down with it."""

    def __init__(self, path: str | os.PathLike | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path) if path else data_dir() / "results.sqlite"
        self.max_bytes = max_bytes
        self._local = threading.local()
        self._lock = threading.Lock()
        self._puts = 0
        self.notice: str | None = None  # one line for the reviewer when the cache had to be repaired or is off
        self.disabled = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._create()
        except sqlite3.DatabaseError as exc:
            self._repair(exc)
        except OSError as exc:
            self._disable(exc)

    def _create(self) -> None:
        c = self._conn()
        c.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, kind TEXT NOT NULL, "
                  "value BLOB NOT NULL, size INTEGER NOT NULL, used REAL NOT NULL)")
        c.execute("CREATE INDEX IF NOT EXISTS entries_used ON entries(used)")
        c.execute("SELECT COUNT(*) FROM entries").fetchone()  # a damaged file fails here, not mid-analysis

    def _conn(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path, synchronous="NORMAL")  # a cache may lose its last write

    def _close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass
            self._local.conn = None

    def _disable(self, exc: BaseException) -> None:
        """Full disk, read-only folder: keep working without the cache, and say why once."""
        self.disabled = True
        reason = "the disk is full" if "full" in str(exc).lower() or getattr(exc, "errno", None) == 28 else \
            "the folder is not writable" if "readonly" in str(exc).lower().replace("-", "") or \
            isinstance(exc, PermissionError) else f"{type(exc).__name__}: {exc}"
        self.notice = (f"Results are not being cached ({reason}: {self.path.parent}); set CHUMOKU_DATA_DIR to "
                       f"a writable folder with free space. Every analysis still completes.")

    def _repair(self, exc: BaseException) -> None:
        """A damaged database: move it aside and start a fresh one (results are recomputed as needed)."""
        msg = str(exc).lower()
        if "full" in msg or "readonly" in msg.replace("-", "") or "unable to open" in msg:
            self._disable(exc)
            return
        with self._lock:
            self._close()
            aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            try:
                for suffix in ("", "-wal", "-shm"):
                    part = Path(str(self.path) + suffix)
                    if part.exists():
                        part.replace(Path(str(aside) + suffix))
                self._create()
            except (OSError, sqlite3.Error) as again:
                self._disable(again)
                return
        self.notice = (f"The result cache was damaged; it was moved aside to {aside.name} and a fresh one "
                       f"started (results are recomputed as needed).")

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        if self.disabled or not keys:
            return {}
        try:
            return self._get_many(keys)
        except sqlite3.DatabaseError as exc:
            self._repair(exc)
            return {}

    def _get_many(self, keys: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        c = self._conn()
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            q = f"SELECT key, value FROM entries WHERE key IN ({','.join('?' * len(part))})"
            out.update(dict(c.execute(q, part).fetchall()))
        if out:
            now = time.time()
            try:
                c.executemany("UPDATE entries SET used=? WHERE key=?", [(now, k) for k in out])
            except sqlite3.OperationalError:
                pass  # a read-only or full store still serves its hits
        return out

    def get(self, key: str) -> bytes | None:
        return self.get_many([key]).get(key)

    def put_many(self, items: dict[str, bytes], kind: str = "chunk") -> None:
        """Save items; a failure to cache never loses the caller's result (it is reported in `notice`)."""
        if not items or self.disabled:
            return
        now = time.time()
        try:
            c = self._conn()
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany("INSERT OR REPLACE INTO entries(key, kind, value, size, used) VALUES (?,?,?,?,?)",
                              [(k, kind, v, len(v), now) for k, v in items.items()])
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:  # SQLite may already have rolled back (disk full): keep the real error
                    c.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            self._disable(exc)
            return
        except sqlite3.DatabaseError as exc:
            self._repair(exc)
            return
        self._puts += len(items)
        if self._puts >= 64:
            self._puts = 0
            try:
                self.evict()
            except sqlite3.Error:
                pass

    def put(self, key: str, value: bytes, kind: str = "chunk") -> None:
        self.put_many({key: value}, kind)

    def _scalar(self, query: str, args: tuple = ()) -> int:
        if self.disabled:
            return 0
        try:
            return int(self._conn().execute(query, args).fetchone()[0])
        except sqlite3.DatabaseError as exc:
            self._repair(exc)
            return 0

    def size_bytes(self) -> int:
        return self._scalar("SELECT COALESCE(SUM(size), 0) FROM entries")

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return self._scalar("SELECT COUNT(*) FROM entries")
        return self._scalar("SELECT COUNT(*) FROM entries WHERE kind=?", (kind,))

    def evict(self) -> int:
        """Drop least recently used entries until the store is under 90% of its bound."""
        total = self.size_bytes()
        if total <= self.max_bytes:
            return 0
        target, removed = int(self.max_bytes * 0.9), 0
        c = self._conn()
        for key, size in c.execute("SELECT key, size FROM entries ORDER BY used").fetchall():
            if total <= target:
                break
            c.execute("DELETE FROM entries WHERE key=?", (key,))
            total -= size
            removed += 1
        return removed

    def clear(self) -> None:
        if self.disabled:
            return
        try:
            c = self._conn()
            c.execute("DELETE FROM entries")
            c.execute("VACUUM")
        except sqlite3.DatabaseError as exc:
            self._repair(exc)


_store_lock = threading.Lock()
_stores: dict[str, ResultStore] = {}


def default_store() -> ResultStore:
    """One store per data directory per process (connections are per thread inside it)."""
    path = str(data_dir() / "results.sqlite")
    with _store_lock:
        if path not in _stores:
            _stores[path] = ResultStore(path)
        return _stores[path]
