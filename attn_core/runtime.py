"""An optional ONNX Runtime backend for the analysis forward pass: fp32, or int8 with dynamic quantisation.

On a CPU without a fast PyTorch kernel for every layer, ONNX Runtime runs the same encoder graph faster
(graph fusions; int8 matrix products). The project exports the graph itself from the loaded model, with the
outputs the engine needs: the last hidden state (passage embeddings, pooling.py) and the attention
probabilities of exactly the layers the reduction reads (the last one by default). The probabilities are
folded by the same `attention.Capture` as the torch path, so every reduction except "norm" (which needs each
head's value vectors) means the same thing on both runtimes.

A runtime is part of the model's identity ("…+onnx-int8"): its scores and embeddings never mix with another
runtime's in the store, and every export names it. Query embeddings go through the same runtime, so a query
and the passages it is compared with share one embedding space. Query-guided reading and the faithfulness
test keep running the torch model: the deletion test then asks whether a runtime's highlight finds the words
the real model relies on. The benchmark (benchmarks/bench_engine.py --runtimes) prints speed and the
faithfulness ratio of each runtime beside torch; a runtime may become a default only if its deletion ratio
stays within 5% of torch's.

Exports are cached on disk under the models folder, one file per (model identity, layers read, precision),
written to a temporary folder and renamed; the first analysis with a new layer choice pays the export (seconds
for MiniLM). Encoder models only (BERT, RoBERTa, e5…); causal LMs and classifiers keep torch.

The default runtime is "auto": the fp32 export, once it has been verified against the torch model on a probe
batch (every attention probability within 1e-4), and torch until then. fp32 ONNX Runtime computes the same
function (measured over the whole corpus: deletion ratios identical to torch's on every document), so "auto"
keeps the torch identity and cache entries stay valid across the switch; it is ≈ 1.4x faster on these CPUs,
and a process answered from the export imports neither torch nor transformers (≈ 2 s of a CLI run): the
capture folds numpy arrays (attention.py), batches are padded as numpy (batching.py), and config and tokenizer
come from the folder's files once checked against transformers' (model_files.py). The export is built by
`python -m attn_core prepare`, or by the dashboard in a child process at the lowest CPU priority after its
first model load; a CLI run never waits for one. int8 is not the default: over the corpus its deletion ratio
moved by more than the 5% allowed (README, "Runtimes").
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import model_files
from .cache import make_key, models_dir, write_atomically
from .errors import SettingsError
from .models import LoadedModel
from .results import ModelKind, Runtime

EXPORT_VERSION = "1"  # bump when the exported graph's outputs change: old files are not reused
VERIFY_TOLERANCE = 1e-4  # largest difference of an attention probability allowed for "auto" to use an export

log = logging.getLogger(__name__)


RUNTIMES = tuple(r.value for r in Runtime)


def available() -> bool:
    """Whether ONNX Runtime and the exporter are installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript"))


# One background export at a time per process: a fresh dashboard asks for both offline models at once (the
# page preloads MiniLM while a Japanese upload loads e5), and two exporters side by side held ≈ 1 GB and both
# cores; one after the other, the second starts as soon as the first is done.
_ONE_BACKGROUND_EXPORT = threading.Lock()


def session_threads() -> int:
    """ONNX Runtime's intra-op threads: torch's count when torch is loaded (the two agree on one machine), else
    OMP_NUM_THREADS when set (a Ray worker limits it to its CPUs), else 0 (ONNX Runtime's default, one per
    physical core, as torch)."""
    if "torch" in sys.modules:
        return max(1, sys.modules["torch"].get_num_threads())
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "") or 0))
    except ValueError:
        return 0


class OnnxRunner:
    """Exported graphs of one model and their ONNX Runtime sessions, created on first use, shared by threads.

    `verified_only` (the "auto" runtime): serve only from an export checked against torch
    (onnx_export.max_difference); `ready` says whether one is on disk, and until then the caller runs torch.
    `background`: a missing export is then built in a low-priority child process (the dashboard), never in the
    caller's."""

    def __init__(self, base: LoadedModel, int8: bool, *, verified_only: bool = False, background: bool = False) -> None:
        self.base = base
        self.int8 = int8
        self.verified_only = verified_only
        self.background = background
        self._sessions: dict[tuple[int, ...], Any] = {}
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()  # one export at a time per model in this process
        self._building: dict[tuple[int, ...], threading.Thread] = {}
        self.rejected: dict[tuple[int, ...], str] = {}  # layers -> why its export is not used

    def key(self, layers: Sequence[int] = ()) -> tuple[int, ...]:
        """The export that serves these layers; hidden-state-only requests of "auto" use the analysis graph
        of the last layer (one export, not two: its extra output costs one layer's probabilities)."""
        key = tuple(sorted(set(int(i) for i in layers)))
        if not key and self.verified_only:
            key = (self.base.num_layers - 1,)
        return key

    def export_path(self, layers: Sequence[int] = (), int8: bool = False) -> Path:
        """Where the export serving these layers lives (it may not exist yet)."""
        layers = self.key(layers)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.base.info.identity)[:80]
        digest = make_key(EXPORT_VERSION, self.base.info.identity, repr(layers))[:16]
        return models_dir() / "onnx" / f"{name}-{digest}{'-int8' if int8 else ''}.onnx"  # made by onnx_export.export_graph

    @staticmethod
    def _verified_path(path: Path) -> Path:
        return path.with_name(path.name + ".verified.json")

    def _open(self, path: Path) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = session_threads()
        options.log_severity_level = 3
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def build(self, layers: Sequence[int] = ()) -> Path:
        """Export (and verify, for "auto") the graph for these layers now, unless it is on disk already.

        Returns the file a session opens; for "auto", RuntimeError when the export differs from torch."""
        key = self.key(layers)
        with self._build_lock:
            fp32 = self.export_path(key, False)
            marker = self._verified_path(fp32)
            if not fp32.is_file() or (self.verified_only and not marker.is_file()):
                self._export_and_verify(key, fp32, marker)
            if self.verified_only:
                self._check_tokenizer_files()
            if not self.int8:
                return fp32
            path = self.export_path(key, True)
            if not path.is_file():
                from .onnx_export import quantise

                quantise(fp32, path)
            return path

    def _check_tokenizer_files(self) -> None:
        """Let later processes read this folder's tokenizer from its files, without transformers, once it has
        been checked to agree with transformers' own (model_files.py): with the verified export, such a
        process imports neither torch nor transformers."""
        folder = Path(self.base.path)
        if isinstance(self.base.tokenizer, model_files.FileTokenizer) or not folder.is_dir():
            return
        try:
            why = model_files.check_and_record(folder, self.base.tokenizer)
        except OSError as exc:
            why = str(exc)
        if why is not None:
            log.info("the tokenizer of %s is read through transformers: %s", self.base.info.id, why)

    def _export_and_verify(self, key: tuple[int, ...], fp32: Path, marker: Path) -> None:
        """Make the missing pieces of an export: the graph, and for "auto" the check against torch (torch is
        imported here, in the process that builds, never by one that only reads an export)."""
        from . import onnx_export

        graph = onnx_export.eager_graph(self.base, key)
        if not fp32.is_file():
            onnx_export.export_graph(graph, fp32, self.base.config)
        if self.verified_only and not marker.is_file():
            worst = onnx_export.max_difference(graph, self._open(fp32), self.base.config)
            if worst > VERIFY_TOLERANCE:
                raise RuntimeError(f"the ONNX export differs from torch by {worst:.1e} "
                                   f"(> {VERIFY_TOLERANCE:.0e}); torch is used")
            write_atomically(marker, json.dumps({"max_difference": worst, "tolerance": VERIFY_TOLERANCE,
                                                 "identity": self.base.info.identity}).encode("utf-8"))

    def ready(self, layers: Sequence[int] = ()) -> bool:
        """Whether `run` serves these layers now (for "auto": a verified export is on disk). When it does not
        and `background` is set, the export starts in a background child process for later calls."""
        if not self.verified_only:
            return True
        key = self.key(layers)
        with self._lock:
            if key in self._sessions:
                return True
            if key in self.rejected:
                return False
        try:
            fp32 = self.export_path(key, False)
            on_disk = fp32.is_file() and self._verified_path(fp32).is_file()
        except OSError as exc:  # no usable models folder (CHUMOKU_MODELS_DIR): torch reads, and says why
            self.rejected[key] = f"no models folder for the ONNX export: {exc}"
            return False
        if on_disk:
            try:
                self.session(key)
                return True
            except Exception as exc:  # a damaged file: torch serves; the files are derived, so they go and
                self.discard(key)  # the next build (a background one, `prepare`) makes them again
                log.warning("the ONNX export of %s could not be opened (%s); removed", self.base.info.id, exc)
        if self.background:
            self.build_in_background(key)
        return False

    def discard(self, layers: Sequence[int] = ()) -> None:
        """Remove the export of these layers (graph, weights, verification, int8), e.g. a damaged one."""
        fp32 = self.export_path(layers, False)
        for path in (fp32, fp32.with_name(fp32.name + ".data"), self._verified_path(fp32),
                     self.export_path(layers, True)):
            path.unlink(missing_ok=True)

    def build_in_background(self, layers: Sequence[int] = ()) -> threading.Thread | None:
        """Start `build` in a child process at the lowest CPU priority (once per layer choice), watched by a
        daemon thread, which is returned: the export is seconds of Python-heavy tracing that must not hold
        this process's GIL or cores while reviewers read, and a crash or out-of-memory there never reaches
        the server."""
        key = self.key(layers)
        with self._lock:
            if key in self._building or key in self.rejected:
                return self._building.get(key)
            thread = threading.Thread(target=self._build_in_child, args=(key,), daemon=True,
                                      name=f"chumoku-onnx-export-{self.base.info.id}")
            self._building[key] = thread
        thread.start()
        return thread

    def building(self, layers: Sequence[int] = ()) -> bool:
        """Whether a background export of these layers is running."""
        thread = self._building.get(self.key(layers))
        return thread is not None and thread.is_alive()

    def _build_in_child(self, key: tuple[int, ...]) -> None:
        """`python -m attn_core prepare` for this model and layer choice; its last line is the reason when
        no verified export comes out (torch keeps serving)."""
        last = self.base.num_layers - 1
        layer = "last" if key == (last,) else "all" if len(key) > 1 else str(key[0])
        root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        cmd = [sys.executable, "-m", "attn_core", "prepare", "--model", self.base.info.id, "--layer", layer]
        if shutil.which("nice"):
            cmd = ["nice", "-n", "19", *cmd]
        try:
            with _ONE_BACKGROUND_EXPORT:
                res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
            output = (res.stdout.strip() or res.stderr.strip() or f"exit status {res.returncode}").splitlines()[-1]
        except (OSError, subprocess.TimeoutExpired) as exc:
            output = f"the ONNX export did not finish: {exc}"
        fp32 = self.export_path(key)
        if not (fp32.is_file() and self._verified_path(fp32).is_file()):
            self.rejected[key] = output.split("torch (no ONNX export: ", 1)[-1].rstrip(")")[:300]
            log.warning("ONNX export of %s not used: %s", self.base.info.id, self.rejected[key])

    def session(self, layers: Sequence[int] = ()) -> Any:
        key = self.key(layers)
        with self._lock:
            if key in self._sessions:
                return self._sessions[key]
        path = self.build(key)
        with self._lock:
            if key not in self._sessions:
                self._sessions[key] = self._open(path)
            return self._sessions[key]

    def run(self, input_ids: np.ndarray, valid: np.ndarray, layers: Sequence[int] = ()
            ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """(last hidden state [B, T, D], {layer: attention probabilities [B, H, T, T]}) of a padded batch
        (ids and the mask of real positions, numpy)."""
        key = self.key(layers)
        outs = self.session(key).run(None, {"input_ids": np.asarray(input_ids, dtype=np.int64),
                                            "attention_mask": np.asarray(valid, dtype=np.int64)})
        return outs[0], dict(zip(key, outs[1:]))


def with_runtime(model: LoadedModel, runtime: str | Runtime, *, background: bool = False) -> LoadedModel:
    """`model` read through `runtime`: the same tokenizer and weights, its identity marked with the runtime
    (except "auto", which computes the same function as torch and keeps torch's identity).

    "auto" is torch for models it cannot serve (not an encoder, on a GPU, ONNX Runtime not installed).
    `background` ("auto" only): build a missing export in a background process (long-lived processes).
    SettingsError when the runtime is unknown, not installed, or cannot run this kind of model."""
    rt = Runtime.parse(runtime)
    if rt is Runtime.TORCH:
        return model
    if rt is Runtime.AUTO:
        if model.kind != ModelKind.ENCODER or model.info.device != "cpu" or not available():
            return model
        wrapped = LoadedModel(model.info, tokenizer=model.tokenizer, path=model.path, config=model.config,
                              loader=lambda: model.model)
        wrapped.runner = OnnxRunner(model, int8=False, verified_only=True, background=background)
        return wrapped
    if model.kind != ModelKind.ENCODER:
        raise SettingsError(f"the {rt} runtime reads encoder models only; {model.info.id!r} is a "
                            f"{model.kind} model: use --runtime torch")
    if not available():
        raise SettingsError(f"the {rt} runtime needs onnxruntime, onnx and onnxscript (pip install -r requirements.txt)")
    info = replace(model.info, identity=f"{model.info.identity}+{rt}")
    wrapped = LoadedModel(info, tokenizer=model.tokenizer, path=model.path, config=model.config,
                          loader=lambda: model.model)  # the torch network stays shared, loaded on first use
    wrapped.runner = OnnxRunner(model, int8=rt is Runtime.ONNX_INT8)
    return wrapped


def runtime_label(model: LoadedModel) -> str:
    """What runs this model's analysis now, for status lines ("auto" may switch once its export is ready)."""
    runner = model.runner
    if runner is None:
        return "torch"
    if not runner.verified_only:
        return "ONNX Runtime int8" if runner.int8 else "ONNX Runtime"
    if runner.ready():
        return "ONNX Runtime (verified against torch)"
    key = runner.key()
    if key in runner.rejected:
        return "torch (no ONNX export: " + runner.rejected[key].splitlines()[0][:120] + ")"
    return "torch (ONNX export being built)" if runner.building(key) else "torch"
