"""Quick start: heavy modules only when needed, cached documents without the weights, identity hashing memoised.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import EN_TEXT, REPO

import attn_core as ac
from attn_core.models import DIGEST_MEMO_FILE, model_identity


def _python(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_package_and_cli_parser_import_no_torch():
    out = _python(
        "import sys, attn_core as ac, attn_core.cli as cli\n"
        "doc = ac.document_from_text('A tunnel carries packets.', 'a.txt', 'en')\n"
        "cli.build_parser().parse_args(['batch', 'x', '--out', 'y'])\n"
        "print(ac.Settings().method, doc.language, 'torch' in sys.modules, 'transformers' in sys.modules)")
    assert out == "received en False False"


def test_lazy_names_resolve_like_eager_imports():
    from attn_core import Reader, models  # a name and a submodule

    assert ac.Reader is Reader and models.load_model is ac.load_model
    assert set(ac.__all__) <= set(dir(ac))
    try:
        ac.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_a_cached_document_is_answered_without_loading_the_weights(en_bert_dir, tmp_path):
    store = ac.ResultStore(tmp_path / "r.sqlite")
    doc = ac.document_from_text(EN_TEXT, "a.txt", "en")
    first = ac.Reader(ac.load_model(str(en_bert_dir), lazy=True), store=store)
    assert not first.model.loaded  # settings were validated from the config alone
    cold = first.read(doc)
    assert first.model.loaded and cold.cached_chunks == 0
    second = ac.Reader(ac.load_model(str(en_bert_dir), lazy=True), store=store)  # as a new process would
    warm = second.read(doc)
    assert not second.model.loaded and warm.cached_chunks == len(warm.chunks)
    assert [w.score for w in warm.words] == [w.score for w in cold.words]
    second.passage_index(doc)  # passages are embedded alone by default (pooling.py): that needs the weights
    assert second.model.loaded


def test_weight_digests_are_memoised_on_disk(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(b"w" * 1000)
    (folder / "vocab.txt").write_text("[PAD]\n", encoding="utf-8")
    first = model_identity("m", folder, None)
    memo = ac.data_dir() / DIGEST_MEMO_FILE
    entries = json.loads(memo.read_text(encoding="utf-8"))
    assert len(entries) == 2 and all(len(v) == 64 for v in entries.values())
    # a new process finds the digest on disk: the file is not read again (here: it cannot be)
    out = _python("import os, builtins\n"
                  f"os.environ['CHUMOKU_DATA_DIR'] = {str(ac.data_dir())!r}\n"
                  "from pathlib import Path\nfrom attn_core.models import model_identity\n"
                  "real_open = builtins.open\n"
                  "def guarded(p, *a, **k):\n"
                  "    assert not str(p).endswith('.safetensors'), 'weights re-hashed'\n"
                  "    return real_open(p, *a, **k)\n"
                  "builtins.open = guarded\n"
                  f"print(model_identity('m', Path({str(folder)!r}), None))")
    assert out == first
    weights.write_bytes(b"v" * 1001)  # new weights: new size and mtime, new identity
    assert model_identity("m", folder, None) != first
    memo.write_text("{not json", encoding="utf-8")  # a damaged memo only costs a re-hash
    assert model_identity("m", folder, None) != first
