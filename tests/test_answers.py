"""Whole answers (answers.py): an unchanged document is answered again by the CLI without importing torch,
with the same output as a reading, and anything that could change the answer makes it read again."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import EN_TEXT, REPO

PROBE = ("import sys, json\nfrom attn_core.cli import main\nrc = main(sys.argv[1:])\n"
         "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}), file=sys.stderr)")


def _analyze(*args: str) -> dict:
    """`analyze` in a fresh process; its exit code and whether it imported torch."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", PROBE, "analyze", *args, "--quiet"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    report = json.loads(res.stderr.strip().splitlines()[-1])
    assert report["rc"] == 0, res.stderr
    return report


def _output(path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    data["audit"].pop("exported_utc")
    return data


@pytest.fixture
def model_dir(en_bert_dir, tmp_path):
    """A private copy of the tiny model (one test changes its files)."""
    return shutil.copytree(en_bert_dir, tmp_path / "model")


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text(EN_TEXT * 3, encoding="utf-8")
    return path


def test_an_unchanged_document_is_answered_without_torch(model_dir, source, tmp_path):
    assert _analyze(str(source), "--model", str(model_dir), "--out", str(tmp_path / "1"))["torch"]
    assert not _analyze(str(source), "--model", str(model_dir), "--out", str(tmp_path / "2"))["torch"]
    first, again = _output(tmp_path / "1" / "a.txt.json"), _output(tmp_path / "2" / "a.txt.json")
    assert again == first and list(again) == list(first)  # the same answer, key order included
    assert again["audit"]["faithfulness"] == "not measured" and again["words"]

    copy = tmp_path / "copy.txt"  # the same text under another name: its own name in the answer
    copy.write_bytes(source.read_bytes())
    assert not _analyze(str(copy), "--model", str(model_dir), "--out", str(tmp_path / "3"))["torch"]
    renamed = _output(tmp_path / "3" / "copy.txt.json")
    assert renamed["document"]["name"] == "copy.txt"
    renamed["document"]["name"] = "a.txt"
    assert renamed == first


def test_what_makes_a_document_read_again(model_dir, source, tmp_path):
    base = [str(source), "--model", str(model_dir)]
    assert _analyze(*base, "--out", str(tmp_path / "1"))["torch"]
    assert _analyze(*base, "--layer", "0", "--out", str(tmp_path / "2"))["torch"]  # other settings
    assert _analyze(*base, "--runtime", "onnx", "--out", str(tmp_path / "3"))["torch"]  # another runtime
    assert not _analyze(*base, "--runtime", "torch", "--out", str(tmp_path / "4"))["torch"]  # same as auto

    weights = next(p for p in model_dir.iterdir() if p.suffix == ".safetensors")
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # a new model file
    assert _analyze(*base, "--out", str(tmp_path / "5"))["torch"]

    # a faithfulness figure measured since: the audit must carry it, so the document is read again
    assert _analyze(*base, "--faithfulness", "--out", str(tmp_path / "6"))["torch"]
    assert _analyze(*base, "--out", str(tmp_path / "7"))["torch"]
    assert _output(tmp_path / "7" / "a.txt.json")["audit"]["faithfulness"] != "not measured"

    (source.parent / "edited.txt").write_text(EN_TEXT * 3 + "One more sentence.", encoding="utf-8")
    assert _analyze(str(source.parent / "edited.txt"), "--model", str(model_dir), "--out",
                    str(tmp_path / "8"))["torch"]
