"""Japanese reading speed and fit: the offline multilingual model beside MiniLM, in the same run.

Reads the same Japanese texts (the Patent Act's main text and the two patent excerpts from ../shared/corpus)
with each model from an empty cache, and prints characters/s, tokens per character, the [UNK] rate and
the ratio of the two speeds. Each model gets one warm-up document first, so model loading and first-call
costs are not counted.

usage: python benchmarks/bench_japanese.py [--chars 30000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CHUMOKU_MODELS_DIR", str(REPO / "benchmarks" / ".cache"))


def texts(corpus: Path, chars: int) -> list[tuple[str, str]]:
    act = (corpus / "ja" / "ja_patent_act_tokkyoho_334AC0000000121.txt").read_text(encoding="utf-8")
    start = act.index("\n第一条")
    out = [("patent act", act[start:start + chars])]
    for p in sorted((corpus / "ja").glob("ja_patent_excerpt_*.txt")):
        out.append((p.stem, p.read_text(encoding="utf-8")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=str(REPO.parent / "shared" / "corpus"))
    ap.add_argument("--chars", type=int, default=30_000, help="characters of the Patent Act to read")
    args = ap.parse_args()

    import torch

    import attn_core as ac

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    docs = [ac.document_from_text(t, name, "ja") for name, t in texts(Path(args.corpus), args.chars)]
    rows = []
    for model_id in (ac.DEFAULT_MODEL_ID, ac.MULTILINGUAL_MODEL_ID):
        with tempfile.TemporaryDirectory() as tmp:
            store = ac.ResultStore(Path(tmp) / "r.sqlite")
            t0 = time.perf_counter()
            reader = ac.Reader.load(model_id, store=store)
            load = time.perf_counter() - t0
            reader.read(ac.document_from_text("特許法の目的は発明の保護である。", "warm.txt", "ja"))
            chars = tokens = unk = 0
            t0 = time.perf_counter()
            for d in docs:
                r = reader.read(d)
                chars += d.chars
                tokens += len(r.tokens)
                unk += sum(t.unk for t in r.tokens)
            seconds = time.perf_counter() - t0
        rows.append((model_id, load, chars / seconds, tokens / chars, unk / max(tokens, 1), seconds))
    print(f"{'model':34} {'load s':>7} {'chars/s':>9} {'tokens/char':>12} {'[UNK]':>7} {'read s':>8}")
    for model_id, load, cps, tpc, unk, seconds in rows:
        print(f"{model_id:34} {load:7.1f} {cps:9.0f} {tpc:12.2f} {unk:7.1%} {seconds:8.1f}")
    print(f"multilingual / MiniLM speed (chars/s): {rows[1][2] / rows[0][2]:.2f}× "
          f"on {sum(d.chars for d in docs):,} characters")


if __name__ == "__main__":
    main()
