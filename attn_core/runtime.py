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
written to a temporary name and renamed; the first analysis with a new layer choice pays the export (seconds
for MiniLM). Encoder models only (BERT, RoBERTa, e5…); causal LMs and classifiers keep torch.
"""
from __future__ import annotations

import contextlib
import copy
import enum
import logging
import os
import re
import sys
import threading
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .cache import make_key, models_dir
from .errors import SettingsError
from .models import LoadedModel
from .results import ModelKind

EXPORT_VERSION = "1"  # bump when the exported graph's outputs change: old files are not reused


class Runtime(enum.StrEnum):
    TORCH = "torch"
    ONNX = "onnx"  # fp32
    ONNX_INT8 = "onnx-int8"  # dynamic int8 quantisation of the fp32 export


RUNTIMES = tuple(r.value for r in Runtime)


def available() -> bool:
    """Whether ONNX Runtime and the exporter are installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript"))


class _Graph(torch.nn.Module):
    """The encoder with eager attention, returning the last hidden state and the chosen layers' probabilities."""

    def __init__(self, net: torch.nn.Module, layers: tuple[int, ...]) -> None:
        super().__init__()
        self.net = net
        self.layers = layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(input_ids=input_ids, attention_mask=attention_mask, output_attentions=bool(self.layers))
        return (out.last_hidden_state, *(out.attentions[i] for i in self.layers))


class OnnxRunner:
    """Exported graphs of one model and their ONNX Runtime sessions, created on first use, shared by threads."""

    def __init__(self, base: LoadedModel, int8: bool) -> None:
        self.base = base
        self.int8 = int8
        self._sessions: dict[tuple[int, ...], Any] = {}
        self._lock = threading.Lock()

    def _path(self, layers: tuple[int, ...], int8: bool) -> Path:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.base.info.identity)[:80]
        digest = make_key(EXPORT_VERSION, self.base.info.identity, repr(layers))[:16]
        folder = models_dir() / "onnx"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}-{digest}{'-int8' if int8 else ''}.onnx"

    def _export(self, layers: tuple[int, ...], target: Path) -> None:
        """Export a private copy (the shared model keeps its attention implementation while others read)."""
        net = copy.deepcopy(self.base.model.base_model).eval()
        net.set_attn_implementation("eager")
        graph = _Graph(net, layers)
        longest = int(getattr(self.base.config, "max_position_embeddings", 512) or 512)
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=longest)
        probe = torch.ones((2, 16), dtype=torch.long)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        exporter_log = logging.getLogger("torch.onnx")
        level = exporter_log.level
        exporter_log.setLevel(logging.ERROR)  # a one-time export must not print pages of exporter notes
        try:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), \
                    contextlib.redirect_stdout(sys.stderr):  # stdout may be the CLI's JSON
                warnings.simplefilter("ignore")
                torch.onnx.export(graph, (probe, torch.ones_like(probe)), str(tmp), dynamo=True, verbose=False,
                                  dynamic_shapes={"input_ids": {0: batch, 1: seq},
                                                  "attention_mask": {0: batch, 1: seq}},
                                  input_names=["input_ids", "attention_mask"],
                                  output_names=["hidden"] + [f"probs_{i}" for i in layers])
            os.replace(tmp, target)
        finally:
            exporter_log.setLevel(level)
            tmp.unlink(missing_ok=True)

    def _quantise(self, source: Path, target: Path) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        root = logging.getLogger()
        quiet = logging.NullHandler()
        root.addHandler(quiet)  # the quantiser logs an advisory on the root logger; without a handler there,
        try:  # logging would install a stderr handler for the whole process (basicConfig)
            quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8)
        finally:
            root.removeHandler(quiet)
        os.replace(tmp, target)

    def session(self, layers: tuple[int, ...]) -> Any:
        with self._lock:
            if layers in self._sessions:
                return self._sessions[layers]
            import onnxruntime as ort

            fp32 = self._path(layers, False)
            if not fp32.is_file():
                self._export(layers, fp32)
            path = fp32
            if self.int8:
                path = self._path(layers, True)
                if not path.is_file():
                    self._quantise(fp32, path)
            options = ort.SessionOptions()
            options.intra_op_num_threads = max(1, torch.get_num_threads())
            options.log_severity_level = 3
            sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._sessions[layers] = sess
            return sess

    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[int] = ()
            ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """(last hidden state [B, T, D], {layer: attention probabilities [B, H, T, T]}) as CPU tensors."""
        key = tuple(sorted(set(int(i) for i in layers)))
        outs = self.session(key).run(None, {"input_ids": input_ids.cpu().numpy().astype(np.int64),
                                            "attention_mask": attention_mask.cpu().numpy().astype(np.int64)})
        return torch.from_numpy(outs[0]), {i: torch.from_numpy(p) for i, p in zip(key, outs[1:])}


def with_runtime(model: LoadedModel, runtime: str | Runtime) -> LoadedModel:
    """`model` read through `runtime`: the same tokenizer and weights, its identity marked with the runtime.

    SettingsError when the runtime is unknown, not installed, or cannot run this kind of model."""
    try:
        rt = Runtime(str(runtime).strip().lower())
    except ValueError:
        raise SettingsError(f"unknown runtime {str(runtime)[:20]!r}: use one of {', '.join(RUNTIMES)}") from None
    if rt is Runtime.TORCH:
        return model
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
