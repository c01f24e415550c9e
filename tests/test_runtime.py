"""The ONNX Runtime backend (runtime.py): the export agrees with torch, keeps its own cache entries, and refuses
what it cannot run."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import EN_TEXT, REPO

import attn_core as ac
from attn_core.retrieval import index_documents
from attn_core.runtime import available, with_runtime

pytestmark = pytest.mark.skipif(not available(), reason="onnxruntime, onnx and onnxscript are not installed")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "attn_core", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def _raw(result: ac.AnalysisResult) -> np.ndarray:
    return np.array([w.raw for w in result.words])


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.mark.parametrize("settings", [ac.Settings(), ac.Settings(method="cls", layer=0),
                                      ac.Settings(method="max", layer="all", head="max"),
                                      ac.Settings(method="rollout")], ids=["received", "cls-0", "max-all", "rollout"])
def test_onnx_export_agrees_with_torch_on_a_tiny_model(en_bert, settings):
    doc = ac.document_from_text(EN_TEXT * 3, "a.txt", "en")
    onnx = with_runtime(en_bert, "onnx")
    torch_result = ac.analyze(doc, en_bert, settings, use_store=False)
    onnx_result = ac.analyze(doc, onnx, settings, use_store=False)
    assert len(onnx_result.chunks) > 1
    assert np.abs(_raw(onnx_result) - _raw(torch_result)).max() < 1e-4
    assert [p.rank for p in onnx_result.passages] == [p.rank for p in torch_result.passages]
    assert onnx_result.model.identity == f"{en_bert.info.identity}+onnx"


def test_embeddings_and_queries_go_through_the_runtime(en_bert, tmp_path):
    doc = ac.document_from_text(EN_TEXT * 3, "a.txt", "en")
    onnx = with_runtime(en_bert, "onnx")
    store = ac.ResultStore(tmp_path / "r.sqlite")
    ac.analyze(doc, en_bert, store=store)
    again = ac.analyze(doc, onnx, store=store)
    assert again.cached_chunks == 0  # a runtime's results never answer for another's
    a = index_documents([doc], en_bert, store=store)[0].vectors
    b = index_documents([doc], onnx, store=store)[0].vectors
    assert (a * b).sum(1).min() >= 0.999
    q = ["the proxy inspects the header", "a tunnel carries packets"]
    qa, qb = ac.Reader(en_bert).query_vectors(q), ac.Reader(onnx).query_vectors(q)
    assert (qa * qb).sum(1).min() >= 0.999


def test_int8_runs_and_what_the_runtime_refuses(en_bert, gpt2):
    doc = ac.document_from_text(EN_TEXT * 3, "a.txt", "en")
    int8 = with_runtime(en_bert, "onnx-int8")
    result = ac.analyze(doc, int8, use_store=False)
    assert np.isfinite(_raw(result)).all() and int8.info.identity.endswith("+onnx-int8")
    with pytest.raises(ac.SettingsError, match="norm"):
        ac.analyze(doc, with_runtime(en_bert, "onnx"), ac.Settings(method="norm"), use_store=False)
    with pytest.raises(ac.SettingsError, match="encoder"):
        with_runtime(gpt2, "onnx")
    with pytest.raises(ac.SettingsError, match="unknown runtime"):
        with_runtime(en_bert, "tensorrt")
    assert with_runtime(en_bert, "torch") is en_bert


def test_cli_runtime_flag(en_bert_dir, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text(EN_TEXT, encoding="utf-8")
    res = _cli("analyze", str(src), "--model", str(en_bert_dir), "--runtime", "onnx", "--out", str(tmp_path),
               "--quiet")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "a.txt.json").read_text(encoding="utf-8"))["model"]["identity"].endswith("+onnx")


def test_minilm_on_a_corpus_patent(corpus, minilm):
    doc = ac.ingest_path(corpus / "en" / "US08930553B2.txt")
    reference = _raw(ac.analyze(doc, minilm, use_store=False))
    fp32 = _raw(ac.analyze(doc, with_runtime(minilm, "onnx"), use_store=False))
    int8 = _raw(ac.analyze(doc, with_runtime(minilm, "onnx-int8"), use_store=False))
    assert np.abs(fp32 - reference).max() < 1e-3
    assert _spearman(int8, reference) > 0.9  # measured 0.95: close, not equal (README's runtime table)


# ---- "auto", the default: a verified fp32 export, torch until it exists ------------------------------------
def test_auto_serves_from_a_verified_export_with_the_torch_identity(en_bert, fresh_models):
    from attn_core.runtime import runtime_label

    doc = ac.document_from_text(EN_TEXT * 3, "a.txt", "en")
    auto = with_runtime(en_bert, "auto")
    assert auto.info.identity == en_bert.info.identity  # same function, same cache entries
    assert not auto.runner.ready() and runtime_label(auto) == "torch"
    before = ac.analyze(doc, auto, use_store=False)  # no export yet: torch, and no export is started
    assert not auto.runner.export_path().exists()
    auto.runner.build()
    marker = json.loads(auto.runner.export_path().with_name(auto.runner.export_path().name + ".verified.json")
                        .read_text(encoding="utf-8"))
    assert marker["max_difference"] <= marker["tolerance"] == 1e-4
    assert auto.runner.ready() and runtime_label(auto) == "ONNX Runtime (verified against torch)"
    after = ac.analyze(doc, auto, use_store=False)
    assert np.abs(_raw(after) - _raw(before)).max() < 1e-4
    assert [p.rank for p in after.passages] == [p.rank for p in before.passages]
    # the norm method needs value vectors: "auto" reads it with torch instead of refusing
    norm = ac.analyze(doc, auto, ac.Settings(method="norm"), use_store=False)
    assert np.abs(_raw(norm) - _raw(ac.analyze(doc, en_bert, ac.Settings(method="norm"), use_store=False))).max() == 0
    # embeddings go through the export too, and agree with torch's
    q = ["the proxy inspects the header", "a tunnel carries packets"]
    qa, qb = ac.Reader(en_bert).query_vectors(q), ac.Reader(auto).query_vectors(q)
    assert (qa * qb).sum(1).min() >= 0.9999


def test_auto_builds_in_the_background_and_refuses_an_export_that_differs(en_bert, fresh_models, tmp_path):
    from tiny_models import build_english_bert

    from attn_core.runtime import runtime_label

    auto = with_runtime(en_bert, "auto", background=True)
    assert not auto.runner.ready()  # starts the export in a background thread
    thread = auto.runner.build_in_background()
    assert thread is not None
    thread.join(timeout=300)
    assert auto.runner.ready() and runtime_label(auto).startswith("ONNX Runtime")

    # a file at the export's place that is not this model (here: other weights) fails verification: torch serves
    other = ac.load_model(str(build_english_bert(tmp_path / "other", EN_TEXT * 2, seed=1)))
    other_export = with_runtime(other, "onnx").runner.build()
    victim = with_runtime(en_bert, "auto", background=True)
    victim_path = victim.runner.export_path()
    victim_path.with_name(victim_path.name + ".verified.json").unlink()
    victim_path.write_bytes(other_export.read_bytes())  # names the other export's weights file beside it
    assert not victim.runner.ready()
    victim.runner.build_in_background().join(timeout=300)
    assert not victim.runner.ready()
    assert "differs from torch" in runtime_label(victim)
    doc = ac.document_from_text(EN_TEXT, "a.txt", "en")
    assert np.abs(_raw(ac.analyze(doc, victim, use_store=False))
                  - _raw(ac.analyze(doc, en_bert, use_store=False))).max() == 0


def _exporters(folders: list[str]) -> int:
    """How many `attn_core prepare` children for these model folders are running now (from /proc)."""
    count = 0
    for cmdline in __import__("pathlib").Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"prepare" in args and any(f.encode() in args for f in folders):
            count += 1
    return count


def test_background_exports_of_two_models_run_one_after_the_other(en_bert, fresh_models, tmp_path):
    """A fresh dashboard asks for both offline models' exports at once: two exporters side by side held ≈ 1 GB
    and both cores, so a process runs one background export at a time."""
    import time

    from tiny_models import build_english_bert

    other = ac.load_model(str(build_english_bert(tmp_path / "second", EN_TEXT * 2, seed=2)))
    threads = [with_runtime(m, "auto", background=True).runner.build_in_background() for m in (en_bert, other)]
    most = 0
    while any(t.is_alive() for t in threads):
        most = max(most, _exporters([en_bert.info.id, other.info.id]))
        time.sleep(0.05)
    assert most == 1  # seen running, never two at once
    assert all(with_runtime(m, "auto").runner.ready() for m in (en_bert, other))


def test_cli_prepare_then_the_default_runtime_uses_the_export(en_bert_dir, fresh_models, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text(EN_TEXT * 3, encoding="utf-8")
    res = _cli("prepare", "--model", str(en_bert_dir))
    assert res.returncode == 0, res.stderr
    assert "verified against torch" in res.stdout
    assert list((fresh_models / "onnx").glob("*.verified.json"))
    outs = {}
    for name, extra in (("auto", []), ("torch", ["--runtime", "torch"])):
        env_out = tmp_path / name
        res = _cli("analyze", str(src), "--model", str(en_bert_dir), "--out", str(env_out), "--quiet", *extra)
        assert res.returncode == 0, res.stderr
        outs[name] = json.loads((env_out / "a.txt.json").read_text(encoding="utf-8"))
    assert outs["auto"]["model"]["identity"] == outs["torch"]["model"]["identity"]
    diff = max(abs(a["raw"] - b["raw"]) for a, b in zip(outs["auto"]["words"], outs["torch"]["words"]))
    assert diff < 1e-4
    bad = subprocess.run([sys.executable, "-m", "attn_core", "analyze", str(src), "--model", str(en_bert_dir)],
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO), CHUMOKU_RUNTIME="tensorrt"),
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "unknown runtime" in bad.stderr and "Traceback" not in bad.stderr


def test_auto_removes_a_damaged_export_and_reads_with_torch(en_bert, fresh_models):
    with_runtime(en_bert, "auto").runner.build()
    auto = with_runtime(en_bert, "auto")  # a new process's view: no session open yet
    path = auto.runner.export_path()
    path.write_bytes(path.read_bytes()[:1000])  # cut short on disk (a full disk, a killed copy)
    assert not auto.runner.ready()
    assert not path.exists() and not path.with_name(path.name + ".verified.json").exists()
    doc = ac.document_from_text(EN_TEXT, "a.txt", "en")
    assert np.abs(_raw(ac.analyze(doc, auto, use_store=False))
                  - _raw(ac.analyze(doc, en_bert, use_store=False))).max() == 0
    auto.runner.build()  # the next build makes it again
    assert auto.runner.ready()


def test_auto_without_a_usable_models_folder_reads_with_torch(en_bert, tmp_path, monkeypatch):
    from attn_core.runtime import runtime_label

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("CHUMOKU_MODELS_DIR", str(blocker / "models"))  # can never be created
    auto = with_runtime(en_bert, "auto", background=True)
    doc = ac.document_from_text(EN_TEXT, "a.txt", "en")
    assert np.abs(_raw(ac.analyze(doc, auto, use_store=False))
                  - _raw(ac.analyze(doc, en_bert, use_store=False))).max() == 0
    assert not auto.runner.building()  # nothing started in the background either
    assert runtime_label(auto).startswith("torch (no ONNX export: no models folder")


def test_the_cli_says_once_that_prepare_would_speed_it_up(en_bert_dir, fresh_models, tmp_path):
    """A CLI run never builds the export itself; without one, "auto" reads with torch and says how to change
    that (once per model, not with --quiet, not once the export exists)."""
    docs = []
    for i in range(2):
        docs.append(tmp_path / f"d{i}.txt")
        docs[-1].write_text(EN_TEXT * (2 + i), encoding="utf-8")
    args = ["analyze", *map(str, docs), "--model", str(en_bert_dir), "--out", str(tmp_path / "out")]
    first = _cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("python -m attn_core prepare --model") == 1
    assert "Traceback" not in first.stderr
    assert "prepare" not in _cli(*args, "--quiet").stderr
    assert _cli("prepare", "--model", str(en_bert_dir)).returncode == 0
    fresh = tmp_path / "fresh.txt"  # not in the store: read by the model, now from the export
    fresh.write_text(EN_TEXT * 4, encoding="utf-8")
    later = _cli("analyze", str(fresh), "--model", str(en_bert_dir), "--out", str(tmp_path / "out2"))
    assert later.returncode == 0 and "chunks" in later.stderr and "prepare" not in later.stderr
