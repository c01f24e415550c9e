"""A model folder's config and fast tokenizer, read straight from its files (no transformers, no torch).

Importing transformers costs a new process about a second before it reads a file, and torch another second:
most of a CLI run on a 100-page patent once the forward pass runs on ONNX Runtime (runtime.py). What such a
run needs of the model is its config (layers, heads, window, kind) and its tokenizer, and for a fast
tokenizer both are plain files: `config.json` and `tokenizer.json`, which the `tokenizers` library reads in
milliseconds and which transformers' fast tokenizers wrap.

Wrapping is where the two could differ (transformers may adjust the backend from `tokenizer_config.json`), so
these files are used only for a folder whose tokenizer was checked against transformers' own: the process
that builds and verifies the ONNX export (`python -m attn_core prepare`, the dashboard's background child)
tokenises a set of probe texts both ways and keeps a record when ids, offsets, specials and token strings all
agree. The record is keyed by the tokenizer and config files (name, size, mtime) and both libraries' versions,
so an edited file or an upgrade means a new check. Without a record, models.py loads through transformers.
"""
from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any, Sequence

from tokenizers import Tokenizer

from .cache import make_key, models_dir, write_atomically

AGREEMENT_VERSION = "2"  # bump when the probe texts or what is compared change: old records are not reused
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json")
SPECIAL_NAMES = ("unk_token", "pad_token", "bos_token", "eos_token", "cls_token", "sep_token", "mask_token")
# Probe texts: the scripts and the awkward characters documents bring (full-width forms, combining marks,
# control whitespace, an emoji, unknown kanji), specials written as text, and the corner cases of a probe.
PROBE_TEXTS = (
    "", " ", "x", "passage: x", "query: x",
    "1. A method of transmitting data packets between a client and a server, comprising: (a) receiving…",
    "FIG. 3 shows the apparatus 10; see U.S. Pat. No. 7,272,630 B2 (2007-09-18) at col. 4, ll. 12–20.",
    "【請求項１】  基板上に形成された第１の電極と、前記第１の電極に対向する第２の電極とを備える。",
    "特許法（昭和三十四年法律第百二十一号）第二十九条　産業上利用することができる発明をした者は…",
    "Ｃａｆé naïve ＡＢＣ①　全角　ｶﾀｶﾅ 😀 \u0301e \t\n\r tab\u00a0nbsp \u200b zero-width 𠮷野家 鱻 〓",
    "[CLS] [SEP] [UNK] [PAD] [MASK] <s> </s> <unk> <pad> <mask> <|endoftext|>",
    "Das Verfahren nach Anspruch 1, wobei — «les revendications» — Ωμέγα, Москва, 한국어, ไทย, العربية.",
)


class FileConfig:
    """config.json as attributes, the way the code reads a transformers config (`getattr(config, name, default)`)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.model_type = ""
        self.architectures: list[str] | None = None
        self.__dict__.update(data)
        labels = data.get("id2label")
        if isinstance(labels, dict):  # JSON keys are strings; transformers turns them into ints
            self.id2label = {int(k) if str(k).lstrip("-").isdigit() else k: v for k, v in labels.items()}

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class FileTokenizer:
    """The subset of transformers' fast-tokenizer interface Chumoku uses, over a `tokenizers.Tokenizer`."""

    is_fast = True

    def __init__(self, backend: Tokenizer, specials: dict[str, str], model_max_length: int | None,
                 model_input_names: Sequence[str] = ("input_ids", "token_type_ids", "attention_mask")) -> None:
        backend.no_padding()  # a tokenizer.json may carry a fixed padding or truncation (MiniLM's pads to 128);
        backend.no_truncation()  # transformers turns both off for a call that asks for neither
        self.backend = backend
        self.model_input_names = list(model_input_names)  # transformers returns token_type_ids only if listed
        self.model_max_length = model_max_length if model_max_length is not None else int(1e30)
        for name in SPECIAL_NAMES:
            token = specials.get(name)
            token_id = backend.token_to_id(token) if token else None
            setattr(self, name, token if token_id is not None else None)
            setattr(self, f"{name}_id", token_id)

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __call__(self, text: str | Sequence[str], text_pair: str | None = None, add_special_tokens: bool = True,
                 return_offsets_mapping: bool = False, verbose: bool = False) -> dict[str, Any]:
        if isinstance(text, str):
            enc = self.backend.encode(text, text_pair, add_special_tokens=add_special_tokens)
            out: dict[str, Any] = {"input_ids": list(enc.ids)}
            if "token_type_ids" in self.model_input_names:
                out["token_type_ids"] = list(enc.type_ids)
            if return_offsets_mapping:
                out["offset_mapping"] = list(enc.offsets)
            return out
        encs = self.backend.encode_batch(list(text), add_special_tokens=add_special_tokens)
        out = {"input_ids": [list(e.ids) for e in encs]}
        if return_offsets_mapping:
            out["offset_mapping"] = [list(e.offsets) for e in encs]
        return out

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> Any:
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        return [self.backend.id_to_token(int(i)) for i in ids]


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _special_token(value: Any) -> str | None:
    """A special token as tokenizer_config.json / special_tokens_map.json write it: a string or {"content": …}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def read_folder(folder: Path) -> tuple[FileConfig, FileTokenizer] | None:
    """The folder's config and fast tokenizer from its files; None when it has no tokenizer.json or a file
    cannot be read."""
    config = _json(folder / "config.json")
    if not config or not (folder / "tokenizer.json").is_file():
        return None
    try:
        backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception:  # noqa: BLE001 - a tokenizer.json the library cannot read: transformers decides
        return None
    settings = _json(folder / "tokenizer_config.json")
    specials = {name: _special_token(v) for name, v in _json(folder / "special_tokens_map.json").items()}
    specials.update({name: _special_token(settings[name]) for name in SPECIAL_NAMES if name in settings})
    limit = settings.get("model_max_length")
    names = settings.get("model_input_names")
    extra = {"model_input_names": names} if isinstance(names, list) and all(isinstance(n, str) for n in names) else {}
    return FileConfig(config), FileTokenizer(backend, {k: v for k, v in specials.items() if v},
                                             int(limit) if isinstance(limit, (int, float)) else None, **extra)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def agreement_path(folder: Path) -> Path:
    """Where the record of this folder's tokenizer check lives (keyed by its files and the libraries)."""
    parts = [AGREEMENT_VERSION, str(folder.resolve()), _version("transformers"), _version("tokenizers")]
    for name in TOKENIZER_FILES:
        try:
            st = (folder / name).stat()
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{name}:-")
    return models_dir() / "tokenizers" / f"{make_key(*parts)[:24]}.json"


def disagreement(files: FileTokenizer, reference: Any) -> str | None:
    """Where the file tokenizer differs from transformers' (`reference`) on the probe texts; None if nowhere."""
    for name in SPECIAL_NAMES:
        if getattr(files, f"{name}_id") != getattr(reference, f"{name}_id", None):
            return f"{name} id differs"
    if len(files) != len(reference):
        return "vocabulary size differs"
    ref_limit = getattr(reference, "model_max_length", None)
    if min(files.model_max_length, 100_000) != min(ref_limit if isinstance(ref_limit, int) else 10**30, 100_000):
        return "model_max_length differs"
    for text in PROBE_TEXTS:
        for specials in (False, True):
            a = files(text, add_special_tokens=specials, return_offsets_mapping=True)
            b = reference(text, add_special_tokens=specials, return_offsets_mapping=True, verbose=False)
            if list(a["input_ids"]) != list(b["input_ids"]):
                return f"ids differ on {text[:30]!r}"
            if [tuple(o) for o in a["offset_mapping"]] != [tuple(o) for o in b["offset_mapping"]]:
                return f"offsets differ on {text[:30]!r}"
            if files.convert_ids_to_tokens(a["input_ids"]) != reference.convert_ids_to_tokens(b["input_ids"]):
                return f"token strings differ on {text[:30]!r}"
    for first, second in (("x", "y"), (PROBE_TEXTS[5], PROBE_TEXTS[7])):  # a query and a passage (guided.py)
        a, b = files(first, second), reference(first, second)
        if list(a["input_ids"]) != list(b["input_ids"]):
            return "pair ids differ"
        if list(a.get("token_type_ids") or []) != list(b.get("token_type_ids") or []):
            return "pair token type ids differ"
    batch = list(PROBE_TEXTS[5:8])
    if files(batch, add_special_tokens=False)["input_ids"] != \
            [list(x) for x in reference(batch, add_special_tokens=False, verbose=False)["input_ids"]]:
        return "batched ids differ"
    return None


def check_and_record(folder: Path, reference: Any) -> str | None:
    """Compare the folder's file tokenizer with transformers' and keep a record when they agree. Returns
    None when they agree (now or by an earlier record), else why the files are not used."""
    record = agreement_path(folder)
    if record.is_file():
        return None
    if not getattr(reference, "is_fast", False):
        return "transformers reads this model with a slow tokenizer"
    parts = read_folder(folder)
    if parts is None:
        return "no tokenizer.json or config.json the tokenizers library can read"
    try:
        why = disagreement(parts[1], reference)
    except Exception as exc:  # noqa: BLE001 - a tokenizer that fails on a probe is simply not trusted
        why = f"the comparison failed: {type(exc).__name__}: {exc}"[:200]
    if why is None:
        record.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(record, json.dumps({"folder": str(folder.resolve()), "agrees": True,
                                             "probes": len(PROBE_TEXTS)}).encode("utf-8"))
    return why


def checked_parts(folder: Path) -> tuple[FileConfig, FileTokenizer] | None:
    """The folder's config and tokenizer from its files, if its tokenizer was checked against transformers'."""
    try:
        if not agreement_path(folder).is_file():
            return None
    except OSError:  # no usable models folder: transformers reads
        return None
    return read_folder(folder)
