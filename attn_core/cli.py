"""`python -m attn_core analyze PATH... [--model ID|DIR] [--method NAME] [--format json|csv|html] [--out DIR]`,
`rank PATH... --query TEXT` and `batch PATH... --out DIR [--engine local|ray] [--address ADDR]` (distributed.py).

Every error a user can cause (an unreadable file, bad settings, an --out that is a file) is one line on
stderr and exit code 2; heavy modules (torch, transformers) are imported only once a command needs them.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .errors import ChumokuError
from .results import METHODS, Runtime, Settings

if TYPE_CHECKING:
    from .reader import Reader

FORMATS = ("json", "csv", "html")


class UsageError(ChumokuError):
    """A command line that cannot be carried out (an --out that is a file, a path with a NUL byte…)."""

    code = "usage"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m attn_core", description="Attention-guided reading of long documents.")
    sub = ap.add_subparsers(dest="command", required=True)
    an = sub.add_parser("analyze", help="score every word and passage of each document")
    an.add_argument("paths", nargs="+", metavar="PATH")
    an.add_argument("--model", default=None, help="hub id or local folder (default: by language — Japanese: "
                                                  "the offline multilingual-e5-small, English: the offline MiniLM)")
    an.add_argument("--method", default=str(Settings().method), choices=list(METHODS))
    an.add_argument("--layer", default="last", help="last | all | layer index")
    an.add_argument("--head", default="mean", help="mean | max | head index")
    an.add_argument("--format", default="json", choices=FORMATS)
    an.add_argument("--out", default=None, metavar="DIR", help="write DIR/<file name>.<format> per document")
    an.add_argument("--language", choices=["ja", "en"], default=None, help="override language detection")
    an.add_argument("--quiet", action="store_true", help="no progress on stderr")
    _add_runtime_option(an)
    _add_query_options(an, required=False)
    an.add_argument("--faithfulness", action="store_true",
                    help="add a deletion test of the highlight (top 10%% words vs random and longest words; "
                         "a bounded sample of windows) as \"faithfulness\" in the output")
    rk = sub.add_parser("rank", help="rank documents against a query or claim (passage embeddings, cached)")
    rk.add_argument("paths", nargs="+", metavar="PATH")
    _add_query_options(rk, required=True)
    rk.add_argument("--model", default=None, help="hub id or local folder (default: the offline multilingual "
                                                  "model when the query or a document is Japanese, else MiniLM)")
    rk.add_argument("--format", default="json", choices=("json", "csv"),
                    help="json: ranked documents; csv: the claim chart (element x document; UTF-8 with BOM, "
                         "with audit columns)")
    rk.add_argument("--out", default=None, metavar="DIR", help="write DIR/ranking.<format>")
    rk.add_argument("--top-passages", type=int, default=5, metavar="N")
    rk.add_argument("--language", choices=["ja", "en"], default=None, help="override language detection")
    rk.add_argument("--quiet", action="store_true", help="no progress on stderr")
    _add_runtime_option(rk)
    bt = sub.add_parser("batch", help="analyse many documents, locally or on a Ray cluster; a rerun skips "
                                      "finished ones (same output as analyze --out)")
    bt.add_argument("paths", nargs="+", metavar="PATH")
    bt.add_argument("--out", required=True, metavar="DIR", help="write DIR/<file name>.<format> per document")
    bt.add_argument("--engine", default="local", choices=("local", "ray"),
                    help="local: this process; ray: Ray Data over a cluster (a local one without --address)")
    bt.add_argument("--address", default=None, metavar="ADDR", help="an existing Ray cluster (ray://host:10001 or "
                                                                    "auto); default: start a local one")
    bt.add_argument("--workers", type=int, default=2, metavar="N",
                    help="Ray actors, one model each (and the local cluster's CPUs); default 2")
    bt.add_argument("--object-store-mb", type=int, default=200, metavar="MB",
                    help="object store of a local Ray cluster (outputs are streamed, not collected)")
    bt.add_argument("--model", default=None, help="hub id or local folder (default: by language, as analyze)")
    bt.add_argument("--method", default=str(Settings().method), choices=list(METHODS))
    bt.add_argument("--layer", default="last", help="last | all | layer index")
    bt.add_argument("--head", default="mean", help="mean | max | head index")
    bt.add_argument("--format", default="json", choices=FORMATS)
    bt.add_argument("--language", choices=["ja", "en"], default=None, help="override language detection")
    bt.add_argument("--quiet", action="store_true", help="no progress on stderr")
    _add_runtime_option(bt)
    pp = sub.add_parser("prepare", help="get models ready before first use: convert the offline multilingual "
                                        "model and build the fast runtime's ONNX export, verified against torch")
    pp.add_argument("--model", default=None, help="hub id or local folder (default: both offline defaults)")
    pp.add_argument("--layer", default="last", help="the layer choice to build the export for: last | all | index")
    return ap


def _add_runtime_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", default=None, choices=list(Runtime),
                        help="auto (default, or $CHUMOKU_RUNTIME): ONNX Runtime fp32 where `prepare` built and "
                             "verified its export (same scores as torch, faster), else torch | torch | onnx | "
                             "onnx-int8 (dynamic int8; faster, scores differ more: see the README's runtime "
                             "table); the ONNX runtimes read encoder models only")


def _render(result, fmt: str) -> str:
    from .export import report_html, to_csv, to_json

    return {"json": to_json, "csv": to_csv, "html": report_html}[fmt](result)


def out_path(out_dir: Path, name: str, fmt: str, used: set[str]) -> Path:
    """DIR/<base name>.<fmt>; only the base name of the input is used, so a name can never point outside
    DIR, and a second input with the same base name (a/doc.txt, b/doc.txt) gets "-2" instead of
    overwriting the first one's output."""
    base = os.path.basename(name.replace("\\", "/")) or "document"
    candidate, n = f"{base}.{fmt}", 1
    while candidate in used:
        n += 1
        candidate = f"{base}-{n}.{fmt}"
    used.add(candidate)
    return out_dir / candidate


def prepare_out_dir(out: str | None) -> Path | None:
    """The --out folder, created if needed; UsageError when it is a file or cannot be written."""
    if not out:
        return None
    _check_path(out, "--out")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {out}: a file of that name exists; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the folder is not writable")
    return path


def _check_path(path: str, what: str) -> None:
    if "\x00" in path:
        raise UsageError(f"{what}: the path contains a NUL byte")


class Readers:
    """One Reader per model, loaded on first use: without --model each document is read with the default
    for its language (Japanese: the multilingual model; English: MiniLM)."""

    def __init__(self, model: str | None = None, method: str = "received", layer: str = "last",
                 head: str = "mean", runtime: str | None = None) -> None:
        self.requested = model
        self.runtime = Runtime.chosen(runtime)
        self.settings = Settings(method=method, layer=layer, head=head)
        self._readers: dict[str, "Reader"] = {}
        self._hinted: set[str] = set()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Readers":
        return cls(args.model, getattr(args, "method", "received"), getattr(args, "layer", "last"),
                   getattr(args, "head", "mean"), getattr(args, "runtime", None))

    def hint_prepare(self, reader: "Reader") -> None:
        """Once per model: say that `prepare` would make its next analyses faster, when "auto" read it with
        torch for want of a verified export (a CLI run never builds one itself)."""
        runner = reader.model.runner
        model_id = reader.model.info.id
        if runner is None or not runner.verified_only or model_id in self._hinted:
            return
        self._hinted.add(model_id)
        from .attention import needed_layers

        if not runner.ready(sorted(needed_layers(reader.settings, reader.model.num_layers))):
            print(f"note: {model_id} was read with torch; `python -m attn_core prepare --model "
                  f"{shlex.quote(model_id)}` builds its verified ONNX export once (≈ 10–20 s), and later runs "
                  f"read without torch, about twice as fast", file=sys.stderr)

    def for_languages(self, languages: Sequence[str]) -> "Reader":
        from .models import load_model, resolve_model_id
        from .reader import Reader

        model_id = resolve_model_id(self.requested, list(languages))
        if model_id not in self._readers:
            # weights on first use: documents already in the result store are answered without them
            model = load_model(model_id, lazy=True)
            if self.runtime is not Runtime.TORCH:
                from .runtime import with_runtime

                model = with_runtime(model, self.runtime)
            reader = Reader(model, self.settings)
            if reader.model.info.fallback_reason:
                print(f"warning: {reader.model.info.fallback_reason}", file=sys.stderr)
            self._readers[model_id] = reader
        return self._readers[model_id]


def _ingest(path: str, language: str | None):
    """The document at `path`, or None after one error line on stderr."""
    from .ingest import ingest_path

    try:
        _check_path(path, path.replace("\x00", "\\0"))
        return ingest_path(path, language=language)
    except ChumokuError as exc:
        print(f"error: {path!s}: {exc.message}".replace("\x00", "\\0"), file=sys.stderr)
    except (OSError, ValueError) as exc:
        print(f"error: {path}: {getattr(exc, 'strerror', None) or exc}".replace("\x00", "\\0"), file=sys.stderr)
    return None


def _write(text: str, out_dir: Path | None, target: Path | None) -> None:
    if target is None:
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
        return
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from exc


def _cache_notice() -> None:
    """One line when the result cache had to be repaired or could not be used (the results are fine)."""
    from .cache import default_store

    notice = default_store().notice
    if notice:
        print(f"warning: {notice}", file=sys.stderr)


def cmd_analyze(args: argparse.Namespace) -> int:
    query = _read_query(args)  # an empty query is refused before any model is loaded
    out_dir = prepare_out_dir(args.out)
    readers = Readers.from_args(args)
    if query is not None:  # a query no model can read is refused before any document is read
        query = readers.for_languages([query.language]).check_query(query)
    status, used = 0, set()
    for path in args.paths:
        doc = _ingest(path, args.language)
        if doc is None:
            status = 2
            continue

        def target(_doc=doc) -> Path | None:  # taken when written, so a file that fails keeps no name
            return out_path(out_dir, _doc.name, args.format, used) if out_dir else None

        key = _answer_key(doc, args, readers) if query is None and not args.faithfulness and args.format == "json" \
            else None
        if key is not None and _answer_again(doc, key, args, out_dir, target):
            continue
        reader = readers.for_languages([doc.language] + ([query.language] if query is not None else []))

        def progress(done: int, total: int, _name: str = doc.name) -> None:
            if not args.quiet:
                print(f"\r{_name}: {done}/{total} chunks", end="" if done < total else "\n", file=sys.stderr)

        try:
            result = reader.read(doc, query, progress=progress)
        except ChumokuError as exc:
            print(f"error: {path}: {exc.message}", file=sys.stderr)
            status = 2
            continue
        if not args.quiet:
            readers.hint_prepare(reader)
        _warn_unknown_tokens(doc.name, result.unk_rate, args.quiet)
        if args.faithfulness:
            result = reader.with_faithfulness(result)
        _write(_render(result, args.format), out_dir, target())
        if key is not None:
            from .answers import keep

            keep(result, key)
    _cache_notice()
    return status


def _warn_unknown_tokens(name: str, unk_rate: float, quiet: bool) -> None:
    """The line a reading prints when the model does not know many of the document's tokens."""
    if unk_rate > 0.05 and not quiet:
        print(f"warning: {name}: {unk_rate:.0%} of tokens are [UNK] for this model", file=sys.stderr)


def _answer_key(doc, args: argparse.Namespace, readers: Readers) -> str | None:
    """The key of a plain reading's whole answer (answers.py), when it is knowable without loading a model."""
    from .answers import AnswerRequest, answer_key

    return answer_key(doc, AnswerRequest(args.model, args.method, str(args.layer), str(args.head), readers.runtime))


def _answer_again(doc, key: str, args: argparse.Namespace, out_dir: Path | None,
                  target: Callable[[], Path | None]) -> bool:
    """Write the kept answer for `doc` (no torch, no model), with the warnings a reading prints; False when
    there is none."""
    import json

    from .answers import recall

    data = recall(doc, key)
    if data is None:
        return False
    _warn_unknown_tokens(doc.name, data["unk_rate"], args.quiet)
    if not args.quiet:
        print(f"{doc.name}: unchanged since its last reading (answered from the result store)", file=sys.stderr)
    _write(json.dumps(data, ensure_ascii=False), out_dir, target())
    return True


def _add_query_options(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--query", default=None, metavar="TEXT", help="a query or claim to search for")
    group.add_argument("--query-file", default=None, metavar="FILE", help="read the query or claim from FILE (UTF-8)")


def _read_query(args: argparse.Namespace):
    """The Query from --query/--query-file, None when neither was given; QueryError when empty or unreadable."""
    from .claims import make_query
    from .errors import QueryError

    text = getattr(args, "query", None)
    path = getattr(args, "query_file", None)
    if text is None and path is None:
        return None
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise QueryError(f"cannot read the query file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    return make_query(text or "", getattr(args, "language", None))


def cmd_rank(args: argparse.Namespace) -> int:
    from .export import Audit, claim_chart_csv
    from .retrieval import to_json

    query = _read_query(args)
    if args.top_passages < 1:
        raise UsageError("--top-passages must be at least 1")
    out_dir = prepare_out_dir(args.out)
    docs = [_ingest(path, args.language) for path in args.paths]
    status = 2 if any(d is None for d in docs) else 0
    languages = [query.language] + [d.language for d in docs if d is not None]
    reader = Readers.from_args(args).for_languages(languages)  # one model, one embedding space for the whole ranking
    query = reader.check_query(query)

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"\rindexing: {done}/{total} passages", end="" if done < total else "\n", file=sys.stderr)

    ranked = reader.rank(query, [d for d in docs if d is not None], progress=progress, top_passages=args.top_passages)
    text = to_json(ranked) if args.format == "json" else claim_chart_csv(  # a claim chart carries its audit trail
        ranked, Audit.now(reader.model.info, reader.settings, query=query.text))
    _write(text, out_dir, out_dir / f"ranking.{args.format}" if out_dir else None)
    _cache_notice()
    return status


def cmd_batch(args: argparse.Namespace) -> int:
    """Many documents: Ray Data over a cluster or this process (distributed.py); progress and resumption."""
    from .distributed import BatchRequest, run_batch

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.object_store_mb < 80:
        raise UsageError("--object-store-mb must be at least 80 (Ray's minimum object store)")
    if args.address and args.engine != "ray":
        raise UsageError("--address needs --engine ray")
    out_dir = prepare_out_dir(args.out)
    assert out_dir is not None
    request = BatchRequest(args.model, args.method, args.layer, args.head, args.language, args.format,
                           str(Runtime.chosen(args.runtime)))
    if args.engine == "ray" and importlib.util.find_spec("ray") is None:  # found, not imported: a rerun with
        raise UsageError("--engine ray needs Ray Data: pip install 'ray[data]'")  # nothing to do stays fast
    return run_batch(args.paths, out_dir, request, engine=args.engine, address=args.address, workers=args.workers,
                     object_store_mb=args.object_store_mb, quiet=args.quiet)


def cmd_prepare(args: argparse.Namespace) -> int:
    """Convert/load each model and build its verified ONNX export (runtime.py), one line per model.

    Exit 1 when an export could not be built or verified: the model still works, on torch."""
    import time

    from .attention import needed_layers
    from .models import default_model_for, load_model
    from .reader import validate_settings
    from .runtime import with_runtime

    ids = [args.model] if args.model else list(dict.fromkeys([default_model_for("en"), default_model_for("ja")]))
    status = 0
    for model_id in ids:
        model = load_model(model_id, lazy=True)
        if model.info.fallback_reason:
            print(f"warning: {model.info.fallback_reason}", file=sys.stderr)
        auto = with_runtime(model, Runtime.AUTO)
        if auto.runner is None:
            print(f"{model.info.id}: torch (the ONNX runtime reads encoder models on the CPU, with onnxruntime "
                  f"installed)")
            continue
        settings = validate_settings(model, Settings(layer=args.layer))
        t0 = time.perf_counter()
        try:
            auto.runner.build(sorted(needed_layers(settings, model.num_layers)))
        except Exception as exc:  # an exporter failure of any kind: the model keeps working on torch
            print(f"{model.info.id}: torch (no ONNX export: {str(exc).splitlines()[0][:300]})")
            status = 1
            continue
        print(f"{model.info.id}: ONNX Runtime export built and verified against torch "
              f"({time.perf_counter() - t0:.0f} s); analyses use it")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"analyze": cmd_analyze, "rank": cmd_rank, "batch": cmd_batch,
                "prepare": cmd_prepare}[args.command](args)
    except ChumokuError as exc:
        print(f"error: {exc}".replace("\x00", "\\0"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped: finished chunks are cached, so running the same command again resumes", file=sys.stderr)
        return 130
