"""Config and tokenizer read from a model folder's files (model_files.py): used only once checked against
transformers' tokenizer, and then a process reading from a verified ONNX export imports neither torch nor
transformers."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EN_TEXT, JA_TEXT, REPO

from attn_core import model_files
from attn_core.models import MULTILINGUAL_MODEL_ID, default_model_path, load_model


@pytest.fixture(scope="module")
def e5():
    model = load_model(MULTILINGUAL_MODEL_ID)  # not lazy: config and tokenizer through transformers
    if model.info.fallback_reason:
        pytest.skip(model.info.fallback_reason)
    return model


def _corpus_texts() -> list[str]:
    texts = [EN_TEXT, JA_TEXT]
    corpus = REPO.parent / "shared" / "corpus"
    for path in sorted(corpus.glob("*/*.txt"))[:6]:
        texts.append(path.read_text(encoding="utf-8", errors="replace")[:20000])
    return texts


def _same_tokens(files: model_files.FileTokenizer, reference, texts: list[str]) -> None:
    assert not isinstance(reference, model_files.FileTokenizer)
    for text in texts:
        for specials in (False, True):
            a = files(text, add_special_tokens=specials, return_offsets_mapping=True)
            b = reference(text, add_special_tokens=specials, return_offsets_mapping=True, verbose=False)
            assert a["input_ids"] == list(b["input_ids"])
            assert [tuple(o) for o in a["offset_mapping"]] == [tuple(o) for o in b["offset_mapping"]]
    assert files.unk_token_id == reference.unk_token_id and files.pad_token_id == reference.pad_token_id
    assert len(files) == len(reference)


def test_minilm_files_tokenize_like_transformers(minilm, fresh_models):
    """MiniLM's tokenizer.json pads to 128 and truncates: the file tokenizer must not, like transformers."""
    folder = default_model_path()
    config, files = model_files.read_folder(folder)
    _same_tokens(files, minilm.tokenizer, _corpus_texts())
    assert config.num_hidden_layers == minilm.num_layers and config.model_type == "bert"
    assert model_files.disagreement(files, minilm.tokenizer) is None


def test_e5_files_tokenize_like_transformers(e5):
    config, files = model_files.read_folder(Path(e5.path))
    _same_tokens(files, e5.tokenizer, _corpus_texts())
    assert config.chumoku["prefixes"]  # the conversion's own record is read from config.json as well


def test_a_folder_is_read_from_its_files_only_after_the_check(en_bert_dir, en_bert, fresh_models, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(en_bert_dir, folder)
    assert model_files.checked_parts(folder) is None
    assert type(load_model(str(folder), lazy=True).tokenizer).__module__.startswith("transformers")
    assert model_files.check_and_record(folder, load_model(str(folder), lazy=True).tokenizer) is None
    config, files = model_files.checked_parts(folder)
    light = load_model(str(folder), lazy=True)
    assert isinstance(light.tokenizer, model_files.FileTokenizer)
    assert light.info == load_model(str(folder)).info  # as through transformers: identity, window, kind, prefixes
    assert light.num_layers == en_bert.num_layers and light.info.identity.split("@")[1] == \
        en_bert.info.identity.split("@")[1]
    # an edited tokenizer file is a new tokenizer: checked again before its files are trusted
    settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=1), encoding="utf-8")
    assert model_files.checked_parts(folder) is None


def test_a_tokenizer_that_differs_is_never_recorded(en_bert_dir, e5, ja_bert, fresh_models, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(en_bert_dir, folder)
    why = model_files.check_and_record(folder, e5.tokenizer)  # another model's tokenizer as the reference
    assert why is not None and "differ" in why
    assert model_files.checked_parts(folder) is None
    assert model_files.check_and_record(folder, ja_bert.tokenizer) == \
        "transformers reads this model with a slow tokenizer"  # MeCab BERT: no offsets to compare
    assert model_files.checked_parts(folder) is None
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "config.json").write_text("{}", encoding="utf-8")
    assert model_files.check_and_record(slow, e5.tokenizer) == \
        "no tokenizer.json or config.json the tokenizers library can read"


@pytest.mark.skipif(not __import__("attn_core.runtime", fromlist=["available"]).available(),
                    reason="onnxruntime is not installed")
def test_after_prepare_a_cli_analysis_imports_neither_torch_nor_transformers(en_bert_dir, fresh_models, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text(EN_TEXT * 3, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    prepared = subprocess.run([sys.executable, "-m", "attn_core", "prepare", "--model", str(en_bert_dir)], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=600)
    assert prepared.returncode == 0, prepared.stderr
    probe = ("import json, sys; from attn_core.cli import main; rc = main(sys.argv[1:]); "
             "print(json.dumps({'rc': rc, 'loaded': sorted(m for m in ('torch', 'transformers') if m in sys.modules)}))")
    outs = {}
    for name, extra in (("auto", []), ("torch", ["--runtime", "torch"])):
        res = subprocess.run([sys.executable, "-c", probe, "analyze", str(src), "--model", str(en_bert_dir),
                              "--out", str(tmp_path / name), "--quiet", *extra], cwd=REPO,
                             env=dict(env, CHUMOKU_DATA_DIR=str(tmp_path / f"data-{name}")),
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        assert "Loading weights" not in res.stderr  # no transformers progress bar, whichever path loaded it
        report = json.loads(res.stdout.strip().splitlines()[-1])
        assert report["rc"] == 0
        outs[name] = (report["loaded"], json.loads((tmp_path / name / "a.txt.json").read_text(encoding="utf-8")))
    assert outs["auto"][0] == []  # answered from the export: no torch, no transformers in the process
    assert outs["torch"][0] == ["torch", "transformers"]
    auto, torch_out = outs["auto"][1], outs["torch"][1]
    assert auto["model"]["identity"] == torch_out["model"]["identity"]
    assert [w["text"] for w in auto["words"]] == [w["text"] for w in torch_out["words"]]
    assert max(abs(a["raw"] - b["raw"]) for a, b in zip(auto["words"], torch_out["words"])) < 1e-4
    assert [p["rank"] for p in auto["passages"]] == [p["rank"] for p in torch_out["passages"]]
