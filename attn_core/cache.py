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
    path.mkdir(parents=True, exist_ok=True)
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
    """A key → bytes store with least-recently-used eviction past `max_bytes`."""

    def __init__(self, path: str | os.PathLike | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path) if path else data_dir() / "results.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._local = threading.local()
        self._puts = 0
        with self._conn() as c:
            c.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, kind TEXT NOT NULL, "
                      "value BLOB NOT NULL, size INTEGER NOT NULL, used REAL NOT NULL)")
            c.execute("CREATE INDEX IF NOT EXISTS entries_used ON entries(used)")

    def _conn(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path, synchronous="NORMAL")  # a cache may lose its last write

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        c = self._conn()
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            q = f"SELECT key, value FROM entries WHERE key IN ({','.join('?' * len(part))})"
            out.update(dict(c.execute(q, part).fetchall()))
        if out:
            now = time.time()
            c.executemany("UPDATE entries SET used=? WHERE key=?", [(now, k) for k in out])
        return out

    def get(self, key: str) -> bytes | None:
        return self.get_many([key]).get(key)

    def put_many(self, items: dict[str, bytes], kind: str = "chunk") -> None:
        if not items:
            return
        now = time.time()
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany("INSERT OR REPLACE INTO entries(key, kind, value, size, used) VALUES (?,?,?,?,?)",
                          [(k, kind, v, len(v), now) for k, v in items.items()])
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        self._puts += len(items)
        if self._puts >= 64:
            self._puts = 0
            self.evict()

    def put(self, key: str, value: bytes, kind: str = "chunk") -> None:
        self.put_many({key: value}, kind)

    def size_bytes(self) -> int:
        return int(self._conn().execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0])

    def count(self, kind: str | None = None) -> int:
        q, args = ("SELECT COUNT(*) FROM entries", ()) if kind is None else (
            "SELECT COUNT(*) FROM entries WHERE kind=?", (kind,))
        return int(self._conn().execute(q, args).fetchone()[0])

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
        c = self._conn()
        c.execute("DELETE FROM entries")
        c.execute("VACUUM")


_store_lock = threading.Lock()
_stores: dict[str, ResultStore] = {}


def default_store() -> ResultStore:
    """One store per data directory per process (connections are per thread inside it)."""
    path = str(data_dir() / "results.sqlite")
    with _store_lock:
        if path not in _stores:
            _stores[path] = ResultStore(path)
        return _stores[path]
