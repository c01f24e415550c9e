from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

EN_TEXT = (
    "A method for managing session initiation protocol messages. The server receives a request "
    "from a client and forwards it to a backup server. The cluster stores the dialog state.\n\n"
    "[0001] The invention relates to networks. A tunnel carries packets between two hosts.\n"
    "[0002] Each packet has a header and a payload. The proxy inspects the header of every packet.\n"
)
JA_TEXT = (
    "【０００１】本発明は、バルーンカテーテルに関する。東京は日本の首都です。\n"
    "【０００２】自然言語処理の注意機構を可視化します。カテーテルは血管に挿入される。\n"
)


@pytest.fixture(scope="session", autouse=True)
def _models_dir(tmp_path_factory):
    """One converted multilingual model for the whole session (each test still has its own data dir)."""
    os.environ.setdefault("CHUMOKU_MODELS_DIR", str(tmp_path_factory.mktemp("chumoku-models")))


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    """Every test gets its own result store."""
    monkeypatch.setenv("CHUMOKU_DATA_DIR", str(tmp_path / "chumoku-data"))


@pytest.fixture(autouse=True)
def _main_module():
    """AppTest runs the dashboard as `__main__` and leaves it in sys.modules; a later test that spawns
    processes would then make every child re-run dashboard.py in bare mode before its target (CI saw a
    child fail that way). Each test starts and ends with the interpreter's own main module."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is not beside this checkout (it exists in CI and on dev machines)")
    return CORPUS


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def en_bert_dir(models_dir) -> Path:
    from tiny_models import build_english_bert

    return build_english_bert(models_dir / "en-bert", EN_TEXT * 2)


@pytest.fixture(scope="session")
def ja_bert_dir(models_dir) -> Path:
    from tiny_models import build_japanese_bert

    return build_japanese_bert(models_dir / "ja-bert", JA_TEXT)


@pytest.fixture(scope="session")
def gpt2_dir(models_dir) -> Path:
    from tiny_models import build_gpt2

    return build_gpt2(models_dir / "gpt2", EN_TEXT * 3)


@pytest.fixture(scope="session")
def classifier_dir(models_dir) -> Path:
    from tiny_models import build_english_bert

    return build_english_bert(models_dir / "en-cls", EN_TEXT * 2, num_labels=2)


@pytest.fixture(scope="session")
def en_bert(en_bert_dir):
    from attn_core.models import load_model

    return load_model(str(en_bert_dir))


@pytest.fixture(scope="session")
def ja_bert(ja_bert_dir):
    from attn_core.models import load_model

    return load_model(str(ja_bert_dir))


@pytest.fixture(scope="session")
def gpt2(gpt2_dir):
    from attn_core.models import load_model

    return load_model(str(gpt2_dir))


@pytest.fixture(scope="session")
def classifier(classifier_dir):
    from attn_core.models import load_model

    return load_model(str(classifier_dir))


@pytest.fixture(scope="session")
def minilm():
    from attn_core.models import load_model

    return load_model(None)


@pytest.fixture
def fresh_models(tmp_path, monkeypatch):
    """An empty models folder: no ONNX export or tokenizer check exists yet (the session's folder may hold one)."""
    monkeypatch.setenv("CHUMOKU_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


@pytest.fixture
def fresh_app_caches():
    """AppTest shares st.cache_resource (the Readers) and st.cache_data across instances in one process: the
    models may be shared (read-only), but results memoised by another test must not hide what this test checks."""
    import streamlit as st

    import attn_core as ac
    from pages import _common as ui

    def clear() -> None:
        st.cache_data.clear()
        for model_id in (ac.DEFAULT_MODEL_ID, ac.MULTILINGUAL_MODEL_ID):
            ui.get_reader(model_id).clear(include_store=False)

    clear()
    yield
    clear()
