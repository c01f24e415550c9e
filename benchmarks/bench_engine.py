"""Engine vs a naive loop on a ~50k-token real document (run by hand; figures go in the README).

naive: one 512-token window at a time, eager attention, output_attentions=True, every tensor kept.
engine: attn_core.analyze (SDPA except the reduced layer, batched, sentence-aware windows), then a
cached re-analysis. Each runs in its own subprocess so peak RSS is its own.

usage: python benchmarks/bench_engine.py [PATH] [--model ID|DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DOC = REPO.parent / "shared" / "corpus" / "en" / "US08926509B2.txt"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_naive(path: str, model_id: str | None) -> dict:
    import torch

    from attn_core import load_model
    from attn_core.alignment import tokenize_with_spans

    m = load_model(model_id)
    text = Path(path).read_text(encoding="utf-8")
    ids = tokenize_with_spans(m.tokenizer, text).ids
    m.model.set_attn_implementation("eager")
    window = m.model.config.max_position_embeddings - 2
    kept = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(ids), window):
            chunk = [m.tokenizer.cls_token_id] + ids[i:i + window] + [m.tokenizer.sep_token_id]
            out = m.model(input_ids=torch.tensor([chunk]), output_attentions=True)
            kept.append(out.attentions)  # every layer's [1, H, T, T]
    dt = time.perf_counter() - t0
    return {"tokens": len(ids), "seconds": dt, "tokens_per_s": len(ids) / dt, "peak_rss_mb": _peak_rss_mb()}


def run_engine(path: str, model_id: str | None) -> dict:
    from attn_core import analyze, load_model
    from attn_core.document import document_from_text

    m = load_model(model_id)
    text = Path(path).read_text(encoding="utf-8")
    doc = document_from_text(text, Path(path).name)
    t0 = time.perf_counter()
    r = analyze(doc, m)
    dt = time.perf_counter() - t0
    import attn_core.analysis as an

    an._prep_memo.clear()  # a fresh request, as from a new process: only the disk cache helps
    t1 = time.perf_counter()
    r2 = analyze(doc, m)
    cached = time.perf_counter() - t1
    assert r2.cached_chunks == len(r2.chunks)
    processed = sum(c.n_tokens for c in r.chunks)
    return {"tokens": len(r.tokens), "chunks": len(r.chunks), "tokens_processed": processed,
            "seconds": dt, "tokens_per_s": len(r.tokens) / dt, "cached_seconds": cached,
            "peak_rss_mb": _peak_rss_mb(), "device": r.model.device, "window": r.model.max_tokens}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", nargs="?", default=str(DEFAULT_DOC))
    ap.add_argument("--model", default=None)
    ap.add_argument("--child", choices=["naive", "engine"])
    a = ap.parse_args()
    if a.child:
        fn = run_naive if a.child == "naive" else run_engine
        print(json.dumps(fn(a.path, a.model)))
        return
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO),
               CHUMOKU_DATA_DIR=tempfile.mkdtemp(prefix="chumoku-bench-"))
    res = {}
    for kind in ("naive", "engine"):
        cmd = [sys.executable, __file__, a.path, "--child", kind] + (["--model", a.model] if a.model else [])
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        res[kind] = json.loads(out.strip().splitlines()[-1])
    n, e = res["naive"], res["engine"]
    print(f"document: {Path(a.path).name}, {e['tokens']} tokens, {e['chunks']} engine windows of <= {e['window']}")
    print(f"naive  : {n['tokens_per_s']:8.0f} tokens/s  {n['seconds']:6.1f} s  peak RSS {n['peak_rss_mb']:7.0f} MB")
    print(f"engine : {e['tokens_per_s']:8.0f} tokens/s  {e['seconds']:6.1f} s  peak RSS {e['peak_rss_mb']:7.0f} MB")
    print(f"speed-up: {e['tokens_per_s'] / n['tokens_per_s']:.2f}x   cached re-analysis: {e['cached_seconds']:.3f} s")


if __name__ == "__main__":
    main()
