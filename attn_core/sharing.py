"""Share links by unguessable token: a link names a view (document + settings) by a random token.

A content hash is not a secret: anyone holding the same file can compute it, so a link by hash would open
another reviewer's upload (and its notes) to them. A token is 128 random bits, issued only to someone who
could already see the view, stored on the server; revealing nothing when it is wrong.
"""
from __future__ import annotations

import json
import os
import secrets
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .cache import data_dir, thread_connection

TOKEN_BYTES = 16
MAX_TOKEN_CHARS = 64
MAX_PARAMS_CHARS = 2000


@dataclass(frozen=True)
class SharedView:
    sha256: str
    params: dict[str, str]
    created_by: str | None
    created: float


class ShareLinks:
    """Tokens → shared views, in their own SQLite file beside the library."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path else data_dir() / "shares.sqlite"
        self._local = threading.local()
        try:
            self._create()
        except sqlite3.OperationalError:  # a read-only or full data folder: links still work until a restart
            self.path = Path(tempfile.gettempdir()) / f"chumoku-shares-{os.getuid()}.sqlite"
            self._local = threading.local()
            self._create()

    def _create(self) -> None:
        self._conn().execute("CREATE TABLE IF NOT EXISTS shares (token TEXT PRIMARY KEY, sha256 TEXT NOT NULL, "
                             "params TEXT NOT NULL, created_by TEXT, created REAL NOT NULL)")

    def _conn(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path)

    def create(self, sha256: str, params: dict[str, str], created_by: str | None = None) -> str:
        """A new token for this view; the same view shared again by the same person reuses its token."""
        blob = json.dumps(params, sort_keys=True)[:MAX_PARAMS_CHARS]
        row = self._conn().execute("SELECT token FROM shares WHERE sha256=? AND params=? AND created_by IS ?",
                                   (sha256, blob, created_by)).fetchone()
        if row:
            return row[0]
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._conn().execute("INSERT INTO shares(token, sha256, params, created_by, created) VALUES (?,?,?,?,?)",
                             (token, sha256, blob, created_by, time.time()))
        return token

    def resolve(self, token: str) -> SharedView | None:
        """The view behind a token, or None for anything else (malformed, unknown, revoked)."""
        if not isinstance(token, str) or not 8 <= len(token) <= MAX_TOKEN_CHARS or not token.isascii():
            return None
        row = self._conn().execute("SELECT sha256, params, created_by, created FROM shares WHERE token=?",
                                   (token,)).fetchone()
        if row is None:
            return None
        try:
            params = {str(k): str(v) for k, v in json.loads(row[1]).items()}
        except (ValueError, AttributeError):
            params = {}
        return SharedView(row[0], params, row[2], row[3])


_lock = threading.Lock()
_links: dict[str, ShareLinks] = {}


def default_share_links() -> ShareLinks:
    """One per data directory per process."""
    path = str(data_dir() / "shares.sqlite")
    with _lock:
        if path not in _links:
            _links[path] = ShareLinks(path)
        return _links[path]
