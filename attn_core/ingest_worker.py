"""Ingestion of uploads in worker processes, so a hostile file can fail only itself.

Every session of the dashboard shares one server process. Ingestion there is bounded by
construction (see `attn_core.ingest`), but "bounded" still means seconds and hundreds of MB for
the worst files, held on a thread of the shared server. `ingest_isolated` runs `ingest_bytes` in a
separate process instead, under an address-space limit (RLIMIT_AS) and a deadline: a file that needs
more memory or time is stopped, its worker killed and replaced, and the caller gets
`IngestMemoryError` or `IngestTimeoutError` while the server and every other session carry on.

Workers are plain `python -P -c` subprocesses, spawned (never forked: the server has threads) and
kept in a small pool, so the next upload finds a warm worker. They import only the ingestion modules
(the package imports torch lazily), starting in about 0.15 s with 35 MB resident, which leaves the
memory limit to the file. multiprocessing's spawn would also re-import the server's main module
(Streamlit) in every worker.

Requests and answers are pickles of plain values and `Document`/`Paragraph` only: both sides unpickle
with an allow-list, so a confused or compromised worker cannot make the server build other objects.
"""
from __future__ import annotations

import atexit
import dataclasses
import io
import os
import pickle
import selectors
import signal
import subprocess
import sys
import threading
import time

from . import errors
from .document import Document
from .errors import IngestError, IngestMemoryError, IngestTimeoutError
from .ingest import IngestLimits, ingest_bytes

_PACKAGE = __name__.rpartition(".")[0]
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_EXIT_MEMORY = 71  # the worker ran out of memory under its limit
_RETIRE_RSS = 256 * 1024 * 1024  # a worker that grew past this after a job is replaced, not reused
_RETIRE_JOBS = 100
_STARTUP_TIMEOUT_S = 20.0

# The worker imports this module from the same folder as the server (never another installed copy).
_BOOTSTRAP = """\
import importlib, sys
sys.path.insert(0, sys.argv[1])
importlib.import_module(sys.argv[2] + ".ingest_worker").serve()
"""

_TIMEOUT_MESSAGE = (
    "this file took longer than {seconds:g} s to read; it was stopped so other work on the server is not affected"
)
_MEMORY_MESSAGE = (
    "this file needed more than {mb:,} MB of memory to read; it was stopped so other work on the server is not affected"
)


# --------------------------------------------------------------------------- framing (both sides)


class _AllowListUnpickler(pickle.Unpickler):
    """Unpickles plain values plus the two document classes; any other global is refused."""

    ALLOWED = {(f"{_PACKAGE}.document", "Document"), (f"{_PACKAGE}.document", "Paragraph")}

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in an ingestion message")


def _loads(payload: bytes) -> object:
    return _AllowListUnpickler(io.BytesIO(payload)).load()


def _frame(obj: object) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return len(payload).to_bytes(8, "big") + payload


def _raw_frame(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


# --------------------------------------------------------------------------- worker side


def _read_exact(stream: io.BufferedReader, n: int) -> bytes | None:
    data = stream.read(n)
    return data if data is not None and len(data) == n else None


def _read_frame(stream: io.BufferedReader) -> bytes | None:
    head = _read_exact(stream, 8)
    if head is None:
        return None
    return _read_exact(stream, int.from_bytes(head, "big"))


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _ingest_answer(header: dict, data: bytes) -> tuple:
    """The job's result as plain values: ("ok", Document) or ("error", class name, message, file name)."""
    try:
        document = ingest_bytes(
            data,
            header["name"],
            limits=IngestLimits(**header["limits"]),
            normalize=header["normalize"],
            language=header["language"],
        )
        return ("ok", document)
    except MemoryError:
        raise
    except IngestError as exc:
        return ("error", type(exc).__name__, exc.message, exc.filename)
    except Exception as exc:  # noqa: BLE001 - an unexpected failure still fails only this file
        return ("error", "IngestError", f"this file could not be read ({type(exc).__name__})", header["name"])


def _lower_limit(resource, kind: int, soft: int) -> None:  # noqa: ANN001 - the resource module
    hard = resource.getrlimit(kind)[1]
    resource.setrlimit(kind, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _run_job(header: dict, data: bytes, jobs_done: int) -> tuple[bytes, bool]:
    """One job under its memory and CPU limits: (the framed answer, whether this worker should retire).

    The answer is pickled while the limits still hold, so a document too large to send counts as
    too much memory too. Running out of memory ends the process with _EXIT_MEMORY: after a
    MemoryError nothing in it is trusted any more.
    """
    try:
        import resource
    except ImportError:  # not POSIX: the parent's deadline still applies
        resource = None
    if resource is not None:
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu_soft = int(used.ru_utime + used.ru_stime + header["timeout_s"]) + 2  # backstop if the server is gone
        _lower_limit(resource, resource.RLIMIT_CPU, cpu_soft)
        _lower_limit(resource, resource.RLIMIT_AS, header["memory_bytes"])
    try:
        answer = _ingest_answer(header, data)
        retire = jobs_done + 1 >= _RETIRE_JOBS or _resident_bytes() > _RETIRE_RSS
        return _frame(answer + (retire,)), retire
    except MemoryError:
        os._exit(_EXIT_MEMORY)
    finally:
        if resource is not None:
            for kind in (resource.RLIMIT_AS, resource.RLIMIT_CPU):
                hard = resource.getrlimit(kind)[1]
                resource.setrlimit(kind, (hard, hard))


def serve() -> None:
    """Worker main loop: read jobs from stdin, answer on stdout, until stdin closes.

    Runs in the worker process only (started by `IngestWorkerPool`). Stray prints from libraries
    are sent to stderr so they can never corrupt the answers.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the server: the server shuts us down
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashing worker must not fill the disk
    except (ImportError, ValueError, OSError):
        pass
    for module in ("charset_normalizer", "pypdf"):  # imported lazily by ingest: import them while idle
        try:
            __import__(module)
        except ImportError:
            pass
    requests = sys.stdin.buffer
    answers.write(_frame(("ready", os.getpid())))
    answers.flush()
    jobs = 0
    while True:
        head = _read_frame(requests)
        data = _read_frame(requests) if head is not None else None
        if data is None:
            return
        framed, retire = _run_job(_loads(head), data, jobs)
        del data
        jobs += 1
        answers.write(framed)
        answers.flush()
        if retire:
            return


# --------------------------------------------------------------------------- server side


class _WorkerGone(Exception):
    """The worker process ended (or closed its pipes) in the middle of a job."""


class _Worker:
    """One worker process and the pipes to it; every read and write has a deadline."""

    def __init__(self) -> None:
        # -P (-I before 3.11): the working folder is not put on sys.path, so no file there can shadow a module.
        safe_path = "-P" if sys.version_info >= (3, 11) else "-I"
        self.proc = subprocess.Popen(
            [sys.executable, safe_path, "-c", _BOOTSTRAP, os.path.dirname(_PACKAGE_DIR), _PACKAGE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        os.set_blocking(self.proc.stdin.fileno(), False)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.jobs = 0
        try:
            ready = self._receive(time.monotonic() + _STARTUP_TIMEOUT_S)
        except (_WorkerGone, TimeoutError):
            self.kill()
            raise IngestError("the file reader process could not be started on this server") from None
        if not (isinstance(ready, tuple) and ready[:1] == ("ready",)):
            self.kill()
            raise IngestError("the file reader process could not be started on this server")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _send(self, chunks: list[bytes], deadline: float) -> None:
        fd = self.proc.stdin.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_WRITE)
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    if not sel.select(left):
                        continue
                    try:
                        sent = os.write(fd, view[: 1 << 20])
                    except BlockingIOError:
                        continue
                    except (BrokenPipeError, ConnectionResetError):
                        raise _WorkerGone from None
                    view = view[sent:]

    def _receive(self, deadline: float) -> object:
        fd = self.proc.stdout.fileno()
        buf = bytearray()
        need = 8
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while len(buf) < need:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                if not sel.select(left):
                    continue
                try:
                    chunk = os.read(fd, max(need - len(buf), 1 << 16))
                except BlockingIOError:
                    continue
                if not chunk:
                    raise _WorkerGone
                buf += chunk
                if need == 8 and len(buf) >= 8:
                    need = 8 + int.from_bytes(buf[:8], "big")
        try:
            return _loads(bytes(buf[8:need]))
        except Exception:  # noqa: BLE001 - garbage on the pipe: treat the worker as lost
            raise _WorkerGone from None

    def run(self, header: dict, data: bytes, deadline: float) -> tuple:
        """Send one job and wait for its answer; raises TimeoutError or _WorkerGone."""
        self.jobs += 1
        self._send([_frame(header), _raw_frame(data)], deadline)
        answer = self._receive(deadline)
        if not isinstance(answer, tuple) or not answer:
            raise _WorkerGone
        return answer

    def exit_code(self) -> int | None:
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    def close(self) -> None:
        """Ask an idle worker to leave (end of input), then make sure it has."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


class IngestWorkerPool:
    """A few worker processes for `ingest_bytes`; each job has one to itself.

    At most `max_workers` files are read at once (each may use up to its memory limit, so this also
    bounds the server's memory); up to `keep_idle` workers stay warm between jobs. A worker that was
    killed, crashed, or grew large is replaced by a fresh one on the next job.
    """

    def __init__(self, max_workers: int = 2, *, keep_idle: int = 1) -> None:
        self._slots = threading.BoundedSemaphore(max(1, max_workers))
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._keep_idle = max(0, keep_idle)
        self._closed = False

    def ingest(
        self,
        data: bytes,
        name: str,
        *,
        limits: IngestLimits = IngestLimits(),
        normalize: bool = False,
        language: str | None = None,
        timeout_s: float = 30.0,
        memory_mb: int = 1536,
    ) -> Document:
        """`ingest_bytes(data, name, …)` in a worker, stopped past `timeout_s` seconds or `memory_mb` MB.

        Raises the same IngestError subclass `ingest_bytes` would, IngestTimeoutError or
        IngestMemoryError when the file was stopped, and IngestTimeoutError when no worker became
        free within `timeout_s` (other uploads are being read).
        """
        name = str(name)
        timeout_s = min(max(float(timeout_s), 0.001), 86_400.0)
        memory_mb = max(1, int(memory_mb))
        if not self._slots.acquire(timeout=timeout_s):
            raise IngestTimeoutError(
                "the server is busy reading other uploads; try again in a moment", filename=name
            )
        try:
            return self._ingest(data, name, limits, normalize, language, timeout_s, memory_mb)
        finally:
            self._slots.release()

    def _ingest(self, data: bytes, name: str, limits: IngestLimits, normalize: bool, language: str | None,
                timeout_s: float, memory_mb: int) -> Document:
        header = {
            "name": name,
            "limits": dataclasses.asdict(limits),
            "normalize": bool(normalize),
            "language": language,
            "timeout_s": float(timeout_s),
            "memory_bytes": int(memory_mb) * 1024 * 1024,
        }
        worker = self._take()  # starting a worker has its own time limit: it is not the file's fault
        deadline = time.monotonic() + timeout_s
        keep = False
        try:
            try:
                answer = worker.run(header, bytes(data), deadline)
            except TimeoutError:
                worker.kill()
                raise IngestTimeoutError(_TIMEOUT_MESSAGE.format(seconds=timeout_s), filename=name) from None
            except _WorkerGone:
                raise self._gone_error(worker, name, timeout_s, memory_mb) from None
            keep = not answer[-1]  # the worker asked to retire
            return _answer_to_document(answer[:-1], name)
        finally:
            self._give_back(worker, keep)

    @staticmethod
    def _gone_error(worker: _Worker, name: str, timeout_s: float, memory_mb: int) -> IngestError:
        code = worker.exit_code()
        if code == _EXIT_MEMORY or code == -signal.SIGKILL:  # SIGKILL that we did not send: the kernel's OOM killer
            return IngestMemoryError(_MEMORY_MESSAGE.format(mb=memory_mb), filename=name)
        if code == -signal.SIGXCPU:
            return IngestTimeoutError(_TIMEOUT_MESSAGE.format(seconds=timeout_s), filename=name)
        return IngestError(
            f"the file reader stopped unexpectedly on this file (exit code {code}); it was stopped so other work "
            "on the server is not affected",
            filename=name,
        )

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                worker.kill()
        return _Worker()

    def _give_back(self, worker: _Worker, keep: bool) -> None:
        if keep and worker.alive():
            with self._lock:
                if not self._closed and len(self._idle) < self._keep_idle:
                    self._idle.append(worker)
                    return
        worker.close() if worker.alive() else worker.kill()

    def close(self) -> None:
        """Stop the idle workers; jobs in progress finish and their workers are then closed."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()


def _answer_to_document(answer: tuple, name: str) -> Document:
    """The worker's answer as a Document, or the typed error it reported, raised here."""
    if answer[0] == "ok" and isinstance(answer[1], Document):
        return answer[1]
    if answer[0] == "error" and len(answer) == 4:
        _, class_name, message, filename = answer
        cls = getattr(errors, str(class_name), None)
        if not (isinstance(cls, type) and issubclass(cls, IngestError)):
            cls = IngestError
        raise cls(str(message), filename=filename if isinstance(filename, str) else name)
    raise IngestError("the file reader sent an answer that could not be understood", filename=name)


_default_pool: IngestWorkerPool | None = None
_default_pool_lock = threading.Lock()


def _pool() -> IngestWorkerPool:
    global _default_pool
    with _default_pool_lock:
        if _default_pool is None:
            _default_pool = IngestWorkerPool()
            atexit.register(_default_pool.close)
        return _default_pool


def ingest_isolated(
    data: bytes,
    name: str,
    *,
    limits: IngestLimits = IngestLimits(),
    normalize: bool = False,
    language: str | None = None,
    timeout_s: float = 30.0,
    memory_mb: int = 1536,
) -> Document:
    """Ingest an upload in a worker process, so a hostile file can fail only itself.

    Returns what `ingest_bytes(data, name, limits=…, normalize=…, language=…)` returns, or raises the
    same typed `IngestError`. A file that needs more than `memory_mb` MB of address space or more than
    `timeout_s` seconds is stopped: `IngestMemoryError` / `IngestTimeoutError`, with a message the
    reviewer can read; the server's own memory and threads are not touched. Uses a shared pool of
    at most two workers (two uploads are read at once; others wait up to `timeout_s`).
    """
    return _pool().ingest(data, name, limits=limits, normalize=normalize, language=language,
                          timeout_s=timeout_s, memory_mb=memory_mb)
