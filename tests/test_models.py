from __future__ import annotations

import socket
import time

import pytest

from attn_core import DEFAULT_MODEL_ID, load_model
from attn_core.models import detect_kind, model_identity


def test_hub_fallback_is_fast_when_network_is_blocked(monkeypatch, en_bert):
    """With HF_HUB_OFFLINE unset and every connection hanging, the app must not wait for hub retries.

    (`en_bert` only makes sure the transformers modules are imported, so the clock measures the fallback.)"""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    real_create = socket.create_connection

    def hang(*args, **kwargs):  # a blackholed network: connects never complete
        time.sleep(30)
        return real_create(*args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.perf_counter()
    m = load_model("some-org/model-that-is-not-cached")
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0, elapsed
    assert m.info.id == DEFAULT_MODEL_ID
    assert "some-org/model-that-is-not-cached" in m.info.fallback_reason
    assert m.info.kind == "encoder"


def test_offline_default_is_real_minilm(minilm):
    assert minilm.info.id == DEFAULT_MODEL_ID and minilm.info.fallback_reason is None
    assert minilm.num_layers == 6 and minilm.num_heads == 12
    assert minilm.info.max_tokens == 256  # sentence-transformers' max_seq_length for this model
    assert minilm.info.device == "cpu"
    assert minilm.model.config._attn_implementation == "chumoku"


def test_identity_follows_the_weights(tmp_path, en_bert_dir, models_dir):
    import shutil

    from conftest import EN_TEXT
    from tiny_models import build_english_bert

    a = model_identity("m", en_bert_dir, None)
    other = build_english_bert(models_dir / "en-bert-seed1", EN_TEXT * 2, seed=1)
    b = model_identity("m", other, None)
    assert a != b  # same name, different weights
    copy = tmp_path / "copy"
    shutil.copytree(en_bert_dir, copy)
    assert model_identity("m", copy, None) == a  # same weights, other folder


def test_kinds(en_bert, gpt2, classifier):
    assert (en_bert.kind, gpt2.kind, classifier.kind) == ("encoder", "causal", "classifier")

    class Cfg:
        architectures = ["RobertaForSequenceClassification"]
        model_type = "roberta"

    assert detect_kind(Cfg) == "classifier"


def test_bad_local_folder_is_a_typed_error(tmp_path):
    from attn_core.errors import ModelLoadError

    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError):
        load_model(str(tmp_path))
