"""Progress and cancellation of long work (a 200-page document takes minutes on a laptop).

Every long operation takes a `Progress` callback, called with (done, total) after each finished unit, and
a `Cancel` flag, checked between units. Work already finished stays in the cache, so a cancelled run that
is started again resumes where it stopped.
"""
from __future__ import annotations

import threading
from typing import Callable

from .errors import CancelledError

Progress = Callable[[int, int], None]
Cancel = threading.Event


def checkpoint(cancel: Cancel | None) -> None:
    """Raise CancelledError when the reviewer asked to stop."""
    if cancel is not None and cancel.is_set():
        raise CancelledError("stopped: the finished part is cached, so running it again resumes from there")


def report(progress: Progress | None, cancel: Cancel | None, done: int, total: int) -> None:
    """Tell the caller how far the work is, then stop if it was cancelled meanwhile."""
    if progress is not None:
        progress(done, total)
    checkpoint(cancel)
