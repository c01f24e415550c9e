"""`python -m attn_core batch`: Ray Data over a real local cluster, the local engine, and resumption.

The Ray test starts a real local cluster (2 CPUs, 200 MB object store, no dashboard) on three small corpus
documents -- two US patents read with MiniLM and the Japanese excerpt read with the multilingual model --
and checks that every document's output has the same words and scores as `analyze` run independently (its
own result store), that the chunk results landed in the batch's store, and that a rerun skips them all.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EN_TEXT, REPO

from attn_core.distributed import MANIFEST, BatchRequest, run_batch

DOCS = ("en/US08930553B2.txt", "en/US06859910B2.txt", "ja/ja_patent_excerpt_JP2020151139A_llmjp.txt")
TOLERANCE = 1e-4


def _cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", CHUMOKU_DATA_DIR=str(data_dir))
    return subprocess.run([sys.executable, "-m", "attn_core", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def _same_words_and_scores(a: Path, b: Path) -> None:
    x, y = json.loads(a.read_text(encoding="utf-8")), json.loads(b.read_text(encoding="utf-8"))
    assert x["document"] == y["document"] and x["model"]["identity"] == y["model"]["identity"]
    assert [(w["text"], w["start"], w["end"]) for w in x["words"]] == [(w["text"], w["start"], w["end"])
                                                                       for w in y["words"]]
    assert max(abs(u["score"] - v["score"]) for u, v in zip(x["words"], y["words"])) <= TOLERANCE
    assert max(abs(u["raw"] - v["raw"]) for u, v in zip(x["words"], y["words"])) <= TOLERANCE
    assert [(p["start"], p["end"], p["rank"]) for p in x["passages"]] == [(p["start"], p["end"], p["rank"])
                                                                          for p in y["passages"]]


@pytest.fixture(scope="module")
def analysed(corpus, tmp_path_factory) -> tuple[list[Path], Path, Path]:
    """(inputs, analyze's outputs, analyze's data dir): `analyze --out` with its own result store."""
    root = tmp_path_factory.mktemp("analyze")
    paths = [corpus / d for d in DOCS]
    res = _cli("analyze", *map(str, paths), "--out", str(root / "out"), "--quiet", data_dir=root / "data")
    assert res.returncode == 0, res.stderr
    return paths, root / "out", root / "data"


def test_batch_on_a_local_ray_cluster_matches_analyze_and_resumes(analysed, tmp_path):
    pytest.importorskip("ray.data")
    from attn_core.cache import ResultStore
    from attn_core.pooling import SUMS_KIND

    paths, reference, _ = analysed
    out, data = tmp_path / "out", tmp_path / "data"
    args = ("batch", *map(str, paths), "--engine", "ray", "--workers", "2", "--object-store-mb", "200",
            "--out", str(out))
    res = _cli(*args, data_dir=data)
    assert res.returncode == 0, res.stderr
    assert "3 to read with engine ray" in res.stderr and "[3/3]" in res.stderr
    for p in paths:
        _same_words_and_scores(reference / f"{p.name}.json", out / f"{p.name}.json")
    store = ResultStore(data / "results.sqlite")  # the workers wrote to the driver's store
    assert store.count("chunk") >= 3 and store.count(SUMS_KIND) == 0  # passages are embedded alone by default
    stamps = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    again = _cli(*args, data_dir=data)
    assert again.returncode == 0, again.stderr
    assert "3 already finished (skipped), 0 to read" in again.stderr
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == stamps


def test_batch_on_the_local_engine_matches_analyze(analysed, tmp_path):
    paths, reference, analyse_data = analysed
    out = tmp_path / "out"
    res = _cli("batch", *map(str, paths), "--engine", "local", "--out", str(out), data_dir=analyse_data)
    assert res.returncode == 0, res.stderr
    for p in paths:
        _same_words_and_scores(reference / f"{p.name}.json", out / f"{p.name}.json")
    # analyze's own outputs count as finished (their JSON names the same input bytes and settings)
    res = _cli("batch", *map(str, paths), "--engine", "local", "--out", str(reference), data_dir=analyse_data)
    assert res.returncode == 0 and "3 already finished (skipped), 0 to read" in res.stderr


def test_resumption_rules(en_bert_dir, tmp_path, capsys):
    """What counts as finished: these input bytes, this request, an output not cut short or edited."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, text in enumerate([EN_TEXT, EN_TEXT.upper(), EN_TEXT[:200]]):
        (inputs / f"d{i}.txt").write_text(text, encoding="utf-8")
    paths = [str(p) for p in sorted(inputs.iterdir())] + [str(inputs / "missing.txt")]
    out = tmp_path / "out"
    out.mkdir()
    request = BatchRequest(model=str(en_bert_dir), language="en")

    def run(req: BatchRequest = request) -> str:
        status = run_batch(paths, out, req, engine="local")
        assert status == 2  # the missing file is reported, the others are read
        return capsys.readouterr().err

    first = run()
    assert "0 already finished (skipped), 3 to read" in first and "error:" in first and "missing.txt" in first
    assert "3 already finished (skipped), 0 to read" in run()
    (inputs / "d1.txt").write_text(EN_TEXT.lower(), encoding="utf-8")  # new bytes under the same name
    with open(out / "d2.txt.json", "a", encoding="utf-8") as f:  # an output edited or cut short
        f.write(" ")
    err = run()
    assert "1 already finished (skipped), 2 to read" in err and "d0.txt" not in err.split("to read")[1]
    assert "3 already finished" in run()
    assert "0 already finished (skipped), 3 to read" in run(BatchRequest(model=str(en_bert_dir), language="en",
                                                                         method="max"))
    lines = (out / MANIFEST).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 + 2 + 3 and all(json.loads(line)["output_sha256"] for line in lines)
    assert not [f for f in out.iterdir() if f.name.endswith(".tmp")]


def test_batch_usage_errors(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    cases = ((["--out", str(a_file)], "a file of that name"),
             (["--out", str(tmp_path), "--workers", "0"], "--workers"),
             (["--out", str(tmp_path), "--address", "auto"], "--address needs --engine ray"))
    for args, why in cases:
        res = _cli("batch", str(a_file), *args, data_dir=tmp_path / "data")
        assert res.returncode == 2 and why in res.stderr, res.stderr
