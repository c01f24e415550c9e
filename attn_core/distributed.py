"""Corpus scale: `python -m attn_core batch PATH... --out DIR [--engine local|ray] [--address ADDR]`.

A patent department screens thousands of documents for a landscape or an opposition; one process reading
them one after another is the wrong tool, and a home-made process pool would be a worse copy of an existing
engine. So the batch maps documents over a Ray cluster with Ray Data: `map_batches` over the list of
documents with an actor pool (`DocumentWorker`), each actor loading its Reader -- the model -- once and
then reading document after document. Each document's output is exactly what `analyze --out` writes (the
same Reader, the same renderers), the chunk results land in the result store as in any other run (every
worker opens the driver's CHUMOKU_DATA_DIR; SQLite in WAL mode takes writers from several processes), and
results stream back to the driver as they finish, which writes them, reports progress on stderr and records
them for resumption. `--engine local` runs the same worker in this process (no Ray needed).

Resumption: a document is skipped when its output file exists and matches -- the manifest
DIR/.chumoku-batch.jsonl (one line per finished output: the input's SHA-256, the request, the output's
SHA-256) says it was written for these bytes and settings and was not cut short; a JSON output written by
`analyze --out` (no manifest line) counts when its "document.sha256" and settings match. Outputs are written
to a temporary name and renamed, so a killed run never leaves half a file that looks finished.

Without --address a local cluster is started (CPUs bounded by --workers, a small object store: results are
streamed, not collected, and no dashboard). On an existing cluster (`--address ray://host:10001` or
`auto`), the input paths and --out must be on a filesystem the workers see, the package travels with the
job (runtime_env py_modules), and each node keeps its own result store (SQLite wants a local disk).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

MANIFEST = ".chumoku-batch.jsonl"
ENGINES = ("local", "ray")
DEFAULT_WORKERS = 2
DEFAULT_OBJECT_STORE_MB = 200  # rows are one rendered document each, streamed to the driver and dropped
# Environment the workers need to read like the driver: the same store, models and offline switches.
FORWARDED_ENV = ("CHUMOKU_DATA_DIR", "CHUMOKU_MODELS_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME",
                 "HF_ENDPOINT", "TOKENIZERS_PARALLELISM")


@dataclass(frozen=True)
class BatchRequest:
    """What every document of a batch is read with (part of each manifest line: other settings, other run)."""

    model: str | None = None
    method: str = "received"
    layer: str = "last"
    head: str = "mean"
    language: str | None = None
    fmt: str = "json"
    runtime: str = "torch"

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Job:
    """One input document and the output file it goes to."""

    index: int
    path: str
    output: str  # file name inside --out
    sha256: str  # of the input's bytes, as Document.sha256


# ------------------------------------------------------------------------------------------------- worker
class DocumentWorker:
    """Reads documents one at a time, as `analyze` does: a Ray Data actor (the model is loaded once per
    actor and kept for every document it is handed) or, for --engine local, a plain object in this process.

    Rows in and out are Ray Data's numpy batches: {"index", "path"} in; {"index", "text", "error", "warning",
    "chunks", "cached", "seconds"} out ("text" is the rendered output, "error" empty on success)."""

    def __init__(self, request: dict[str, Any], env: dict[str, str] | None = None) -> None:
        os.environ.update(env or {})  # before the first store or model is opened in this process
        from .cli import Readers

        self.request = BatchRequest(**request)
        r = self.request
        self.readers = Readers(r.model, r.method, r.layer, r.head, r.runtime)
        if self.request.model:
            self.readers.for_languages([])  # the one model this batch reads with: loaded once, here

    def analyse(self, path: str) -> dict[str, Any]:
        """The rendered output of one document, or the reason it could not be read."""
        from .errors import ChumokuError
        from .export import report_html, to_csv, to_json
        from .ingest import ingest_path

        t0 = time.perf_counter()
        row: dict[str, Any] = {"text": "", "error": "", "warning": "", "chunks": 0, "cached": 0, "seconds": 0.0}
        try:
            doc = ingest_path(path, language=self.request.language)
            result = self.readers.for_languages([doc.language]).read(doc)
            render = {"json": to_json, "csv": to_csv, "html": report_html}[self.request.fmt]
            row["text"] = render(result)
        except ChumokuError as exc:
            row["error"] = exc.message
        except (OSError, ValueError) as exc:
            row["error"] = str(getattr(exc, "strerror", None) or exc)
        except Exception as exc:  # noqa: BLE001 - one bad document must not stop a thousand-document run
            row["error"] = f"could not be analysed ({type(exc).__name__}: {exc})"[:300]
        else:
            row["chunks"], row["cached"] = len(result.chunks), result.cached_chunks
            if result.unk_rate > 0.05:
                row["warning"] = f"{result.unk_rate:.0%} of tokens are [UNK] for this model"
            if result.model.fallback_reason:
                row["warning"] = result.model.fallback_reason
        row["seconds"] = time.perf_counter() - t0
        return row

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        rows = [dict(index=int(i), **self.analyse(str(p))) for i, p in zip(batch["index"], batch["path"])]
        return {k: [r[k] for r in rows] for k in ("index", "text", "error", "warning", "chunks", "cached", "seconds")}


# ------------------------------------------------------------------------------------------ resumption
def _sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(out_dir: Path) -> dict[str, dict]:
    """The last manifest line per output file (a torn last line, from a killed run, is ignored)."""
    entries: dict[str, dict] = {}
    try:
        lines = (out_dir / MANIFEST).read_text(encoding="utf-8").splitlines()
    except OSError:
        return entries
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and isinstance(e.get("output"), str):
            entries[e["output"]] = e
    return entries


def _json_output_matches(path: Path, job: Job, request: BatchRequest) -> bool:
    """An `analyze --out` JSON (no manifest line): same input bytes, settings, language and model."""
    from .models import resolve_model_id

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        doc, settings, model = data["document"], data["settings"], data["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if doc.get("sha256") != job.sha256 or "query" in data:
        return False
    if any(str(settings.get(k)) != str(getattr(request, k)) for k in ("method", "layer", "head")):
        return False
    if request.language and doc.get("language") != request.language:
        return False
    identity = str(model.get("identity", ""))
    marked = identity.endswith(("+onnx", "+onnx-int8"))  # runtime.with_runtime marks the identity
    unmarked = request.runtime in ("torch", "auto")  # auto computes torch's function under torch's identity
    if (unmarked and marked) or (not unmarked and not identity.endswith(f"+{request.runtime}")):
        return False
    return model.get("id") == resolve_model_id(request.model, [str(doc.get("language"))])


def finished(job: Job, out_dir: Path, request: BatchRequest, manifest: dict[str, dict]) -> bool:
    """Whether `job`'s output exists and was written for these input bytes and this request, uncut."""
    target = out_dir / job.output
    if not target.is_file():
        return False
    entry = manifest.get(job.output)
    if entry is not None and entry.get("sha256") == job.sha256 and entry.get("request") == request.key():
        try:
            return _sha256_file(target) == entry.get("output_sha256")
        except OSError:
            return False
    return request.fmt == "json" and _json_output_matches(target, job, request)


def _write_output(out_dir: Path, job: Job, text: str, request: BatchRequest) -> None:
    """Write atomically, then append the manifest line that marks it finished."""
    from .cache import write_atomically

    data = (text + ("" if text.endswith("\n") else "\n")).encode("utf-8")
    write_atomically(out_dir / job.output, data)
    line = {"output": job.output, "path": job.path, "sha256": job.sha256, "request": request.key(),
            "output_sha256": hashlib.sha256(data).hexdigest(), "finished": time.time()}
    with open(out_dir / MANIFEST, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------------------ engines
def worker_env() -> dict[str, str]:
    """The environment a worker needs to share this process's store and models (CHUMOKU_DATA_DIR resolved,
    so a worker started elsewhere -- another cwd, a raylet -- opens the same SQLite file)."""
    from .cache import data_dir

    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    env["CHUMOKU_DATA_DIR"] = str(data_dir().resolve())
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def run_local(jobs: Sequence[Job], request: BatchRequest) -> Iterator[dict[str, Any]]:
    """The worker in this process, document after document."""
    worker = DocumentWorker(asdict(request))
    for job in jobs:
        yield dict(index=job.index, **worker.analyse(job.path))


def start_ray(address: str | None, workers: int, object_store_mb: int, env: dict[str, str]) -> None:
    """Connect to `address`, or start a small local cluster: `workers` CPUs, a bounded object store, no
    dashboard. The workers get this environment and, on a remote cluster, this package (py_modules)."""
    import ray

    package = Path(__file__).resolve().parent
    if address:
        runtime_env: dict[str, Any] = {"env_vars": env, "py_modules": [str(package)]}
        ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING, log_to_driver=False)
        return
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package.parent), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=workers, object_store_memory=object_store_mb * 1024 * 1024, include_dashboard=False,
             runtime_env={"env_vars": env}, logging_level=logging.WARNING, log_to_driver=False)


def run_ray(jobs: Sequence[Job], request: BatchRequest, *, address: str | None, workers: int,
            object_store_mb: int) -> Iterator[dict[str, Any]]:
    """Documents mapped over the cluster: Ray Data `map_batches`, one document per batch, an actor pool of
    `workers` DocumentWorkers (one CPU each). Rows are yielded as documents finish, in any order."""
    import ray
    import ray.data

    env = worker_env()
    started_here = not ray.is_initialized()
    if started_here:
        start_ray(address, workers, object_store_mb, env)
    try:
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # the driver prints one line per document
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = False
        items = [{"index": j.index, "path": str(Path(j.path).resolve())} for j in jobs]
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        pool = ray.data.ActorPoolStrategy(size=max(1, min(workers, len(items))))  # no idle model loads
        out = ds.map_batches(DocumentWorker, batch_size=1, compute=pool,
                             num_cpus=1, fn_constructor_kwargs={"request": asdict(request), "env": env})
        yield from out.iter_rows()
    finally:
        if started_here:
            ray.shutdown()


# ------------------------------------------------------------------------------------------------- driver
def plan_jobs(paths: Sequence[str], out_dir: Path, fmt: str) -> tuple[list[Job], list[tuple[str, str]]]:
    """A job per readable input (output names as `analyze --out` gives them) and (path, reason) for the rest."""
    from .cli import out_path

    jobs, errors, used = [], [], set()
    for path in paths:
        try:
            if "\x00" in path:
                raise ValueError("the path contains a NUL byte")
            sha = _sha256_file(path)
        except (OSError, ValueError) as exc:
            errors.append((path.replace("\x00", "\\0"), str(getattr(exc, "strerror", None) or exc)))
            continue
        jobs.append(Job(len(jobs), path, out_path(out_dir, path, fmt, used).name, sha))
    return jobs, errors


def run_batch(paths: Sequence[str], out_dir: Path, request: BatchRequest, *, engine: str = "local",
              address: str | None = None, workers: int = DEFAULT_WORKERS,
              object_store_mb: int = DEFAULT_OBJECT_STORE_MB, quiet: bool = False) -> int:
    """Read every document not finished yet; 0 when all were written, 2 when any could not be read."""
    def say(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    jobs, errors = plan_jobs(paths, out_dir, request.fmt)
    for path, why in errors:
        print(f"error: {path}: {why}", file=sys.stderr)
    manifest = read_manifest(out_dir)
    todo = [j for j in jobs if not finished(j, out_dir, request, manifest)]
    say(f"batch: {len(jobs)} documents, {len(jobs) - len(todo)} already finished (skipped), "
        f"{len(todo)} to read with engine {engine}")
    status = 2 if errors else 0
    if not todo:
        return status
    t0 = time.perf_counter()
    rows = run_local(todo, request) if engine == "local" else run_ray(
        todo, request, address=address, workers=workers, object_store_mb=object_store_mb)
    by_index = {j.index: j for j in todo}
    for done, row in enumerate(rows, 1):
        job = by_index[int(row["index"])]
        if row["error"]:
            print(f"error: {job.path}: {row['error']}", file=sys.stderr)
            status = 2
            continue
        _write_output(out_dir, job, str(row["text"]), request)
        if row["warning"]:
            say(f"warning: {job.output}: {row['warning']}")
        say(f"[{done}/{len(todo)}] {job.output}: {int(row['chunks'])} chunks ({int(row['cached'])} cached), "
            f"{float(row['seconds']):.1f} s; {time.perf_counter() - t0:.0f} s elapsed")
    return status
