"""`python -m attn_core analyze PATH... [--model ID|DIR] [--method NAME] [--format json|csv|html] [--out DIR]`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from .attention import METHODS
from .errors import ChumokuError

FORMATS = ("json", "csv", "html")


def _layer_or_head(value: str) -> str | int:
    return int(value) if value.lstrip("-").isdigit() else value


def build_parser() -> argparse.ArgumentParser:
    from .results import Settings

    ap = argparse.ArgumentParser(prog="python -m attn_core", description="Attention-guided reading of long documents.")
    sub = ap.add_subparsers(dest="command", required=True)
    an = sub.add_parser("analyze", help="score every word and passage of each document")
    an.add_argument("paths", nargs="+", metavar="PATH")
    an.add_argument("--model", default=None, help="hub id or local folder (default: the offline MiniLM)")
    an.add_argument("--method", default=Settings().method, choices=sorted(METHODS))
    an.add_argument("--layer", default="last", type=_layer_or_head, help="last | all | layer index")
    an.add_argument("--head", default="mean", type=_layer_or_head, help="mean | max | head index")
    an.add_argument("--format", default="json", choices=FORMATS)
    an.add_argument("--out", default=None, metavar="DIR", help="write DIR/<file name>.<format> per document")
    an.add_argument("--language", choices=["ja", "en"], default=None, help="override language detection")
    an.add_argument("--quiet", action="store_true", help="no progress on stderr")
    _add_query_options(an, required=False)
    an.add_argument("--faithfulness", action="store_true",
                    help="add a deletion test of the highlight (top 10%% words vs random and longest words; "
                         "a bounded sample of windows) as \"faithfulness\" in the output")
    rk = sub.add_parser("rank", help="rank documents against a query or claim (passage embeddings, cached)")
    rk.add_argument("paths", nargs="+", metavar="PATH")
    _add_query_options(rk, required=True)
    rk.add_argument("--model", default=None, help="hub id or local folder (default: the offline MiniLM)")
    rk.add_argument("--format", default="json", choices=("json", "csv"),
                    help="json: ranked documents; csv: the claim chart (element x document)")
    rk.add_argument("--out", default=None, metavar="DIR", help="write DIR/ranking.<format>")
    rk.add_argument("--top-passages", type=int, default=5, metavar="N")
    rk.add_argument("--language", choices=["ja", "en"], default=None, help="override language detection")
    rk.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return ap


def _render(result, fmt: str) -> str:
    from .export import report_html, to_csv, to_json

    return {"json": to_json, "csv": to_csv, "html": report_html}[fmt](result)


def _out_path(out_dir: Path, name: str, fmt: str) -> Path:
    """Only the base name of the input is used, so a name can never point outside DIR."""
    base = os.path.basename(name.replace("\\", "/")) or "document"
    return out_dir / f"{base}.{fmt}"


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis import analyze
    from .ingest import ingest_path
    from .models import load_model
    from .results import Settings

    settings = Settings(method=args.method, layer=args.layer, head=args.head)
    query = _read_query(args)  # an empty query is refused before any model is loaded
    model = load_model(args.model)
    if model.info.fallback_reason:
        print(f"warning: {model.info.fallback_reason}", file=sys.stderr)
    if query is not None:
        from .retrieval import check_query

        query = check_query(model, query)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    status = 0
    for path in args.paths:
        try:
            doc = ingest_path(path, language=args.language)

            def progress(done: int, total: int, _name: str = doc.name) -> None:
                if not args.quiet:
                    print(f"\r{_name}: {done}/{total} chunks", end="" if done < total else "\n", file=sys.stderr)

            if query is not None:
                from .guided import guided_analyze

                result = guided_analyze(doc, model, query, progress=progress)
            else:
                result = analyze(doc, model, settings, progress=progress)
        except ChumokuError as exc:
            print(f"error: {path}: {exc.message}", file=sys.stderr)
            status = 2
            continue
        except OSError as exc:
            print(f"error: {path}: {exc.strerror or exc}", file=sys.stderr)
            status = 2
            continue
        if result.unk_rate > 0.05 and not args.quiet:
            print(f"warning: {doc.name}: {result.unk_rate:.0%} of tokens are [UNK] for this model", file=sys.stderr)
        if getattr(args, "faithfulness", False):
            from .faithfulness import measure_faithfulness

            result.extra["faithfulness"] = measure_faithfulness(result, model).to_json()
        text = _render(result, args.format)
        if out_dir:
            _out_path(out_dir, doc.name, args.format).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
    return status


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
        except (OSError, UnicodeDecodeError) as exc:
            raise QueryError(f"cannot read the query file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    return make_query(text or "", getattr(args, "language", None))


def cmd_rank(args: argparse.Namespace) -> int:
    from .ingest import ingest_path
    from .models import load_model
    from .retrieval import check_query, claim_chart_csv, rank_documents, to_json

    query = _read_query(args)
    model = load_model(args.model)
    if model.info.fallback_reason:
        print(f"warning: {model.info.fallback_reason}", file=sys.stderr)
    query = check_query(model, query)
    status = 0
    docs = []
    for path in args.paths:
        try:
            docs.append(ingest_path(path, language=args.language))
        except ChumokuError as exc:
            print(f"error: {path}: {exc.message}", file=sys.stderr)
            status = 2
        except OSError as exc:
            print(f"error: {path}: {exc.strerror or exc}", file=sys.stderr)
            status = 2

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"\rindexing: {done}/{total} passages", end="" if done < total else "\n", file=sys.stderr)

    ranked = rank_documents(query, docs, model, progress=progress, top_passages=args.top_passages)
    text = to_json(ranked) if args.format == "json" else claim_chart_csv(ranked)
    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"ranking.{args.format}").write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"analyze": cmd_analyze, "rank": cmd_rank}[args.command](args)
    except ChumokuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
