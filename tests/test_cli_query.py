"""`python -m attn_core rank` and `analyze --query` with the real offline model: JSON contract and exit codes."""
from __future__ import annotations

import csv
import io
import json

from test_cli import _cli

A = "A balloon catheter is inserted into a blood vessel.\n\nThe balloon is inflated with saline.\n"
B = "Engineers replaced the bridge cables.\n\nCorrosion had weakened the steel of the bridge.\n"
C = "The orchestra performed a symphony.\n\nThe concert hall was full on Saturday.\n"


def _files(tmp_path):
    paths = []
    for name, text in (("a.txt", A), ("b.txt", B), ("c.txt", C)):
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        paths.append(str(p))
    return paths


def _env(tmp_path):
    return {"CHUMOKU_DATA_DIR": str(tmp_path / "data")}


def test_rank_json_contract(tmp_path):
    paths = _files(tmp_path)
    res = _cli("rank", *paths, "--query", "A repair comprising: new bridge cables; steel without corrosion",
               "--quiet", env_extra=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [d["rank"] for d in out] == [1, 2, 3]
    assert out[0]["document"]["name"] == "b.txt"
    assert [d["score"] for d in out] == sorted((d["score"] for d in out), reverse=True)
    for d in out:
        assert {"document", "score", "rank", "passages", "elements"} <= set(d)
        assert {"name", "sha256", "language", "chars"} <= set(d["document"])
        rel = [p["relevance"] for p in d["passages"]]
        assert rel == sorted(rel, reverse=True) and all({"start", "end"} <= set(p) for p in d["passages"])
        assert [e["text"] for e in d["elements"]] == ["A repair", "new bridge cables", "steel without corrosion"]
        assert all(set(e["passage"]) == {"start", "end"} and isinstance(e["score"], float) for e in d["elements"])
    best = out[0]["elements"][2]["passage"]
    assert "Corrosion" in B[best["start"]:best["end"]]


def test_rank_query_file_out_dir_and_csv(tmp_path):
    paths = _files(tmp_path)
    qf = tmp_path / "claim.txt"
    qf.write_text("1. A concert comprising:\n an orchestra performing a symphony;\n a full hall\n", encoding="utf-8")
    res = _cli("rank", *paths, "--query-file", str(qf), "--format", "csv", "--out", str(tmp_path / "o"),
               "--quiet", env_extra=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    raw = (tmp_path / "o" / "ranking.csv").read_text(encoding="utf-8")
    assert raw.startswith("\ufeff")  # Excel reads it as UTF-8
    rows = list(csv.reader(io.StringIO(raw.removeprefix("\ufeff"))))
    assert rows[0][:3] == ["#", "element", "c.txt score"]  # documents in rank order
    assert [r[1] for r in rows[1:]] == ["A concert", "an orchestra performing a symphony", "a full hall"]
    audit = dict(zip(rows[0], rows[1]))  # the audit trail: which model read the stack, for which claim
    assert audit["audit_model"] and audit["audit_model_identity"] and audit["audit_exported_utc"]
    assert audit["audit_query"].startswith("A concert comprising")


def test_empty_and_unknown_queries_exit_2(tmp_path):
    paths = _files(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n", encoding="utf-8")
    for args in (["--query", "   "], ["--query-file", str(empty)], ["--query-file", str(tmp_path / "missing.txt")],
                 ["--query", "\U00013000\U00013001 \U00013002"]):
        res = _cli("rank", *paths, *args, env_extra=_env(tmp_path))
        assert res.returncode == 2, (args, res.stderr)
        assert res.stdout == "" and res.stderr.startswith("error: ")
        assert "query" in res.stderr
    res = _cli("analyze", paths[0], "--query", "\U00013000", env_extra=_env(tmp_path))
    assert res.returncode == 2 and "[UNK]" in res.stderr and res.stdout == ""


def test_rank_requires_a_query(tmp_path):
    res = _cli("rank", *_files(tmp_path), env_extra=_env(tmp_path))
    assert res.returncode == 2 and "--query" in res.stderr


def test_analyze_with_query_json(tmp_path):
    paths = _files(tmp_path)
    res = _cli("analyze", paths[1], "--query", "steel corrosion", "--quiet", env_extra=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["query"]["text"] == "steel corrosion" and out["query"]["elements"] == ["steel corrosion"]
    assert out["settings"]["method"] == "query"
    ranks = sorted(p["rank"] for p in out["passages"])
    assert ranks == list(range(1, len(out["passages"]) + 1))
    plain = json.loads(_cli("analyze", paths[1], "--quiet", env_extra=_env(tmp_path)).stdout)
    assert "query" not in plain
    assert [w["text"] for w in plain["words"]] == [w["text"] for w in out["words"]]
    assert [w["raw"] for w in plain["words"]] != [w["raw"] for w in out["words"]]
