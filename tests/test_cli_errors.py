"""Every user-caused CLI error is one line on stderr and exit code 2, never a traceback."""
from __future__ import annotations

import json

import pytest
from conftest import EN_TEXT
from test_cli import _cli


def _env(tmp_path):
    return {"CHUMOKU_DATA_DIR": str(tmp_path / "data")}


def _one_line_error(res, *fragments: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for f in fragments:
        assert f in errors[0], errors[0]


@pytest.mark.parametrize("args,fragment", [
    (("--layer", "99"), "layer '99' does not exist"),
    (("--head", "-999"), "head '-999' does not exist"),
    (("--layer", "deepest"), "layer 'deepest' does not exist"),
    (("--head", "9" * 5000), "head '99999999999999999999' does not exist"),
])
def test_bad_layer_or_head(tmp_path, args, fragment):
    src = tmp_path / "doc.txt"
    src.write_text(EN_TEXT, encoding="utf-8")
    _one_line_error(_cli("analyze", str(src), *args, "--quiet", env_extra=_env(tmp_path)), fragment)


def test_out_that_is_a_file_or_cannot_be_created(tmp_path):
    src = tmp_path / "doc.txt"
    src.write_text(EN_TEXT, encoding="utf-8")
    taken = tmp_path / "taken"
    taken.write_text("a file", encoding="utf-8")
    _one_line_error(_cli("analyze", str(src), "--out", str(taken), env_extra=_env(tmp_path)), "give a folder")
    _one_line_error(_cli("analyze", str(src), "--out", str(taken / "below"), env_extra=_env(tmp_path)),
                    "cannot create the folder")
    _one_line_error(_cli("rank", str(src), "--query", "proxy", "--out", str(taken), env_extra=_env(tmp_path)),
                    "give a folder")
    assert taken.read_text(encoding="utf-8") == "a file"


def test_unreadable_path_is_reported_and_the_other_files_still_run(tmp_path):
    src = tmp_path / "doc.txt"
    src.write_text(EN_TEXT, encoding="utf-8")
    res = _cli("analyze", str(tmp_path / "missing.txt"), str(src), "--quiet", env_extra=_env(tmp_path))
    assert res.returncode == 2 and "Traceback" not in res.stderr and json.loads(res.stdout)["document"]
    from attn_core.cli import UsageError, prepare_out_dir

    with pytest.raises(UsageError, match="NUL byte"):  # argv cannot carry NUL; the check guards the API
        prepare_out_dir("out\x00dir")


def test_same_file_name_twice_never_overwrites(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "doc.txt").write_text(EN_TEXT, encoding="utf-8")
    (tmp_path / "b" / "doc.txt").write_text("A different document about tea and cakes.", encoding="utf-8")
    out = tmp_path / "out"
    res = _cli("analyze", str(tmp_path / "a" / "doc.txt"), str(tmp_path / "b" / "doc.txt"), "--out", str(out),
               "--quiet", env_extra=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    first = json.loads((out / "doc.txt.json").read_text(encoding="utf-8"))
    second = json.loads((out / "doc.txt-2.json").read_text(encoding="utf-8"))
    assert first["document"]["sha256"] != second["document"]["sha256"]
    assert "tea" in {w["text"] for w in second["words"]}
