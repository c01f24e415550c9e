"""The command line on real corpus documents with the real offline model, checked by the shared contract tool."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, SHARED

CHECKER = SHARED / "tools" / "check_contract.py"


def _cli(*args, cwd=REPO, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "attn_core", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("rel,lang", [("ja/ja_patent_excerpt_JP2020151139A_llmjp.txt", "ja"),
                                      ("en/US08930553B2.txt", "en")])
def test_analyze_json_passes_the_contract(corpus, tmp_path, rel, lang):
    src = corpus / rel
    res = _cli("analyze", str(src), "--format", "json", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    out = tmp_path / f"{src.name}.json"
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["document"]["language"] == lang and doc["model"]["fallback_reason"] is None
    if lang == "ja":  # read with the multilingual model by default: it knows every token
        assert doc["unk_rate"] <= 0.01 and doc["model"]["id"].startswith("multilingual-e5-small")
    extra = ["--fugashi"] if lang == "ja" else []
    check = subprocess.run([sys.executable, str(CHECKER), str(out), str(src), "--lang", lang, *extra],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_shift_jis_aozora_through_ingestion(corpus, tmp_path):
    """Aozora markup is removed by ingestion, so offsets point into the ingested text."""
    from attn_core.ingest import ingest_path

    src = corpus / "ja" / "ja_aozora_shiki_rososhinkan_retsuden_sjis.txt"
    res = _cli("analyze", str(src), "--out", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / f"{src.name}.json").read_text(encoding="utf-8"))
    text = ingest_path(src).text
    ingested = tmp_path / "ingested.txt"
    ingested.write_text(text, encoding="utf-8")
    assert doc["chunks"] > 20
    check = subprocess.run([sys.executable, str(CHECKER), str(tmp_path / f"{src.name}.json"), str(ingested),
                            "--lang", "ja", "--fugashi"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_csv_html_and_bad_files(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("The proxy inspects the header of every packet. The tunnel carries packets.\n" * 5)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.bin.txt"
    junk.write_bytes(bytes(range(256)) * 40)
    res = _cli("analyze", str(empty), str(good), str(junk), "--format", "csv", "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert "empty.txt" in res.stderr and "junk.bin.txt" in res.stderr
    rows = list(csv.DictReader((tmp_path / "o" / "good.txt.csv").open(encoding="utf-8")))
    assert rows[0]["word"] == "The" and len(rows) == 60
    assert all(0 <= float(r["score"]) <= 1 for r in rows)
    res = _cli("analyze", str(good), "--format", "html", "--out", str(tmp_path / "h"))
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "h" / "good.txt.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and 'class="attn-hl"' in page
    assert "http://" not in page and "https://" not in page  # self-contained


def test_stdout_json_without_out(tmp_path):
    good = tmp_path / "a.txt"
    good.write_text("Packets travel through the tunnel between hosts.")
    res = _cli("analyze", str(good), "--method", "cls")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["settings"]["method"] == "cls" and doc["words"][0]["text"] == "Packets"
