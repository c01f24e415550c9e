"""Whole-process figures of the engine, all measured in the same run (run by hand; figures go in the README).

Every figure is a separate process timed from start to exit -- imports, model loading and writing included --
because that is what a reviewer waits for:
  naive   : one 512-token window at a time, eager attention, output_attentions=True, every tensor kept;
  cold    : `python -m attn_core analyze DOC --out DIR` on an empty result store (the default runtime, auto,
            and again with --runtime torch;
            the models folder is prepared once beforehand, untimed, as `python -m attn_core prepare` or the
            dashboard's first session leaves it);
  cached  : the same command again (every chunk in the store);
  rank    : `python -m attn_core rank DOC --query ...` right after the analysis (by default each passage is
            embedded alone, so rank runs its own pass over them; with CHUMOKU_EMBEDDINGS=in-window they come
            from the analysis pass, pooling.py: the pair "in-window" runs an analysis and a rank with it),
            and `rank` on an empty store for reference.
Ratios printed: engine speed-up over the naive loop, cached / cold, rank after analyze / the analysis.
Runtimes (--runtimes, runtime.py): the analysis in-process on each runtime (export done beforehand), its
faithfulness (deletion test: top 10% words vs random and word-length baseline) and the Spearman correlation
of its word scores with torch's; a runtime may become the default only if its deletion ratio stays within
5% of torch's.
On a shared machine a busy neighbour moves every figure: the sequence runs --repeat times (interleaved, so
a burst of load hits every kind alike), each figure is the fastest of its runs, and the load average is
printed before and after.

usage: python benchmarks/bench_engine.py [PATH] [--model ID|DIR] [--query TEXT] [--repeat N]
                                        [--runtime auto|torch|...] [--runtimes torch,auto,onnx,onnx-int8]
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
sys.path.insert(0, str(REPO))
DEFAULT_DOC = REPO.parent / "shared" / "corpus" / "en" / "US07272630B2.txt"
DEFAULT_QUERY = "a method of transmitting data packets between a client and a server over a network"


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


def run_runtime(path: str, runtime: str, model_id: str | None) -> dict:
    """Analysis seconds (in-process, export excluded), faithfulness and word scores on one runtime."""
    import tempfile

    os.environ["CHUMOKU_DATA_DIR"] = tempfile.mkdtemp(prefix="chumoku-bench-rt-")
    from attn_core import analyze, document_from_text, ingest_path, load_model, measure_faithfulness
    from attn_core.runtime import with_runtime

    m = with_runtime(load_model(model_id), runtime)
    if m.runner is not None and m.runner.verified_only:
        m.runner.build()  # auto: its verified export, as `prepare` leaves it
    analyze(document_from_text("A warm-up sentence exports the graph.", "w.txt", "en"), m, use_store=False)
    doc = ingest_path(path)
    t0 = time.perf_counter()
    r = analyze(doc, m, use_store=False)
    dt = time.perf_counter() - t0
    f = measure_faithfulness(r, m, use_store=False)
    return {"seconds": dt, "tokens": len(r.tokens), "ratio_random": f.ratio_random,
            "ratio_baseline": f.ratio_baseline, "raw": [w.raw for w in r.words]}


def _spearman(a: list[float], b: list[float]) -> float:
    import numpy as np

    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def run_cli(args: list[str]) -> dict:
    """`python -m attn_core ARGS` in this process, with its peak RSS (this child is timed by the parent)."""
    from attn_core.cli import main

    status = main(args)
    return {"status": status, "peak_rss_mb": _peak_rss_mb()}


def _child(kind: str, payload: list[str], env: dict[str, str]) -> tuple[dict, float]:
    """(the child's JSON report, whole-process wall seconds)."""
    cmd = [sys.executable, __file__, "--child", kind, "--", *payload]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{kind} failed ({res.returncode}):\n{res.stderr[-2000:]}")
    report = json.loads(res.stdout.strip().splitlines()[-1])
    if report.get("status", 0) != 0:
        raise SystemExit(f"{kind} exited with {report['status']}:\n{res.stderr[-2000:]}")
    return report, wall


def _default_model(path: str) -> str:
    """The model the CLI picks for this document by default."""
    from attn_core import ingest_path
    from attn_core.models import default_model_for

    return default_model_for(ingest_path(path).language)


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    if sys.argv[1:2] == ["--child"]:  # bench_engine.py --child KIND -- PAYLOAD...
        kind, payload = sys.argv[2], sys.argv[4:]
        if kind == "naive":
            report = run_naive(payload[0], payload[1] if len(payload) > 1 else None)
        elif kind == "runtime":
            report = run_runtime(payload[0], payload[1], payload[2] if len(payload) > 2 else None)
        else:
            report = run_cli(payload)
        sys.stdout.flush()
        print(json.dumps(report))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("path", nargs="?", default=str(DEFAULT_DOC))
    ap.add_argument("--model", default=None)
    ap.add_argument("--query", default=DEFAULT_QUERY)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--runtime", default=None, help="the runtime of the timed CLI runs (default: the CLI's, auto)")
    ap.add_argument("--runtimes", default="torch,auto,onnx,onnx-int8", help="comma-separated; empty to skip")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chumoku-bench-"))
    # one models folder for every run, prepared once (as `python -m attn_core prepare`, or the dashboard's first
    # session, leaves it): the one-time ONNX export is not part of any timed run; result stores stay empty
    base = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false",
                CHUMOKU_MODELS_DIR=str(work / "models"))
    model = ["--model", a.model] if a.model else []
    runtime = ["--runtime", a.runtime] if a.runtime else []
    analyze = ["analyze", a.path, "--out", str(work / "out"), "--quiet", *model, *runtime]
    rank = ["rank", a.path, "--query", a.query, "--out", str(work / "rank"), "--quiet", *model, *runtime]
    _, prepared = _child("cli", ["prepare", *(model or ["--model", _default_model(a.path)])],
                         dict(base, CHUMOKU_DATA_DIR=str(work / "prepare")))
    print(f"prepare (one-time: model and verified ONNX export, not timed below): {prepared:.1f} s")
    print(f"load average before: {_load()} ({os.cpu_count()} cores)")
    torch_cold = ["analyze", a.path, "--out", str(work / "out-torch"), "--quiet", *model, "--runtime", "torch"]
    runs: dict[str, list[tuple[dict, float]]] = {k: [] for k in ("naive", "cold", "cached", "rank", "alone",
                                                                 "torch", "cold_iw", "rank_iw")}
    for r in range(max(1, a.repeat)):
        store_a, store_b = work / f"data-a{r}", work / f"data-b{r}"  # empty stores each round
        runs["naive"].append(_child("naive", [a.path] + ([a.model] if a.model else []), base))
        runs["cold"].append(_child("cli", analyze, dict(base, CHUMOKU_DATA_DIR=str(store_a))))
        runs["cached"].append(_child("cli", analyze, dict(base, CHUMOKU_DATA_DIR=str(store_a))))
        runs["rank"].append(_child("cli", rank, dict(base, CHUMOKU_DATA_DIR=str(store_a))))
        runs["alone"].append(_child("cli", rank, dict(base, CHUMOKU_DATA_DIR=str(store_b))))
        runs["torch"].append(_child("cli", torch_cold, dict(base, CHUMOKU_DATA_DIR=str(work / f"data-c{r}"))))
        in_window = dict(base, CHUMOKU_DATA_DIR=str(work / f"data-w{r}"), CHUMOKU_EMBEDDINGS="in-window")
        runs["cold_iw"].append(_child("cli", analyze, in_window))
        runs["rank_iw"].append(_child("cli", rank, in_window))
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1][1]:.1f} s" for k, v in runs.items()), flush=True)
    print(f"load average after : {_load()}")
    (naive, naive_wall), (cold, cold_wall), (cached, cached_wall), (ranked, rank_wall), (alone, alone_wall), \
        (torch_run, torch_wall), (_, cold_iw_wall), (rank_iw, rank_iw_wall) = (
            min(runs[k], key=lambda rw: rw[1])
            for k in ("naive", "cold", "cached", "rank", "alone", "torch", "cold_iw", "rank_iw"))
    out = json.loads((work / "out" / f"{Path(a.path).name}.json").read_text(encoding="utf-8"))
    tokens = naive["tokens"]
    print(f"document: {Path(a.path).name}, {out['document']['chars']} chars, {tokens} tokens, "
          f"{out['chunks']} engine windows; model {out['model']['id']}")
    print(f"whole process (imports, model load, analysis, output), fastest of {max(1, a.repeat)}; CLI runtime: "
          f"{a.runtime or 'default (auto)'}:")
    print(f"  naive loop          {naive_wall:7.1f} s  (forward loop {naive['seconds']:.1f} s, "
          f"{naive['tokens_per_s']:.0f} tokens/s)  peak RSS {naive['peak_rss_mb']:6.0f} MB")
    print(f"  analyze, cold       {cold_wall:7.1f} s  ({tokens / cold_wall:.0f} tokens/s whole-process)  "
          f"peak RSS {cold['peak_rss_mb']:6.0f} MB")
    print(f"  analyze, cold, --runtime torch {torch_wall:5.1f} s  peak RSS {torch_run['peak_rss_mb']:6.0f} MB")
    print(f"  analyze, cached     {cached_wall:7.1f} s  peak RSS {cached['peak_rss_mb']:6.0f} MB")
    print(f"  rank after analyze  {rank_wall:7.1f} s  peak RSS {ranked['peak_rss_mb']:6.0f} MB")
    print(f"  rank, empty store   {alone_wall:7.1f} s  peak RSS {alone['peak_rss_mb']:6.0f} MB")
    print("ratios:")
    print(f"  engine speed-up over the naive loop (whole process): {naive_wall / cold_wall:.2f}x  (target 2.5x)")
    print(f"  the same with --runtime torch:                       {naive_wall / torch_wall:.2f}x")
    print(f"  cached re-analysis / cold run:                       {cached_wall / cold_wall:.2f}   (target <= 0.3)")
    print(f"  rank after analyze / the analysis:                   {rank_wall / cold_wall:.2f}   (target <= 0.3)")
    print(f"  rank on an empty store / the analysis:               {alone_wall / cold_wall:.2f}")
    print(f"  with CHUMOKU_EMBEDDINGS=in-window: analyze {cold_iw_wall:.1f} s, rank after it {rank_iw_wall:.1f} s "
          f"(peak RSS {rank_iw['peak_rss_mb']:.0f} MB): {rank_iw_wall / cold_iw_wall:.2f} x the analysis")
    runtimes = [r for r in a.runtimes.split(",") if r]
    if runtimes:
        print(f"runtimes (analysis in-process, export excluded; load average now {_load()}):")
        rows = {rt: _child("runtime", [a.path, rt] + ([a.model] if a.model else []), base)[0] for rt in runtimes}
        ref = rows.get("torch")
        for rt, row in rows.items():
            speed = f"{ref['seconds'] / row['seconds']:.2f}x torch" if ref else ""
            rho = f"Spearman {_spearman(row['raw'], ref['raw']):.3f}" if ref else ""
            eligible = ""
            if ref and ref["ratio_random"] and row["ratio_random"]:
                within = abs(row["ratio_random"] / ref["ratio_random"] - 1) <= 0.05
                eligible = "default-eligible" if within else "not default-eligible (deletion ratio off by > 5%)"
            print(f"  {rt:10s} {row['seconds']:6.1f} s  {speed:12s} faithfulness {row['ratio_random']:.2f}x random "
                  f"/ {row['ratio_baseline']:.2f}x baseline  {rho}  {eligible}")


if __name__ == "__main__":
    main()
