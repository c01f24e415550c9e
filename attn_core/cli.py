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
    model = load_model(args.model)
    if model.info.fallback_reason:
        print(f"warning: {model.info.fallback_reason}", file=sys.stderr)
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
        text = _render(result, args.format)
        if out_dir:
            _out_path(out_dir, doc.name, args.format).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"analyze": cmd_analyze}[args.command](args)
    except ChumokuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
