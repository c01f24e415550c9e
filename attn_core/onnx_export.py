"""Building an ONNX export of a loaded torch encoder: the graph, its quantised copy, and the check against torch.

The graph is the encoder with eager attention, returning the last hidden state and the attention
probabilities of exactly the layers a reduction reads; runtime.py opens and serves it. Everything here needs
torch and runs only in the process that builds an export (`python -m attn_core prepare`, the dashboard's
background child, or a first `--runtime onnx` run), so a process that reads a finished export never imports it.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .models import LoadedModel


class ExportGraph(torch.nn.Module):
    """The encoder with eager attention, returning the last hidden state and the chosen layers' probabilities."""

    def __init__(self, net: torch.nn.Module, layers: tuple[int, ...]) -> None:
        super().__init__()
        self.net = net
        self.layers = layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(input_ids=input_ids, attention_mask=attention_mask, output_attentions=bool(self.layers))
        return (out.last_hidden_state, *(out.attentions[i] for i in self.layers))


def eager_graph(base: LoadedModel, layers: tuple[int, ...]) -> ExportGraph:
    """A private eager copy of the encoder (the shared model keeps its attention implementation while
    others read)."""
    net = copy.deepcopy(base.model.base_model).eval()
    net.set_attn_implementation("eager")
    return ExportGraph(net, layers)


def export_graph(graph: ExportGraph, target: Path, config: Any) -> None:
    """Export into a private folder, then move the weights file (if the exporter wrote one beside the graph)
    and the graph into place: the graph names its weights file, so both keep the target's name."""
    layers = graph.layers
    longest = int(getattr(config, "max_position_embeddings", 512) or 512)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=longest)
    probe = torch.ones((2, 16), dtype=torch.long)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(".export-*"):  # left by a process killed while exporting
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 3600:
                shutil.rmtree(stale, ignore_errors=True)
    work = target.with_name(f".export-{os.getpid()}-{threading.get_ident()}")
    work.mkdir(parents=True, exist_ok=True)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # a one-time export must not print pages of exporter notes
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), \
                contextlib.redirect_stdout(sys.stderr):  # stdout may be the CLI's JSON
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (probe, torch.ones_like(probe)), str(work / target.name), dynamo=True,
                              verbose=False, dynamic_shapes={"input_ids": {0: batch, 1: seq},
                                                             "attention_mask": {0: batch, 1: seq}},
                              input_names=["input_ids", "attention_mask"],
                              output_names=["hidden"] + [f"probs_{i}" for i in layers])
        weights = work / (target.name + ".data")
        if weights.is_file():
            os.replace(weights, target.with_name(weights.name))
        os.replace(work / target.name, target)
    finally:
        exporter_log.setLevel(level)
        shutil.rmtree(work, ignore_errors=True)


def quantise(source: Path, target: Path) -> None:
    """The int8 copy of an fp32 export (dynamic quantisation of the matrix products' weights)."""
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


def max_difference(graph: ExportGraph, session: Any, config: Any) -> float:
    """Largest difference between the export's and the torch model's attention probabilities (and last
    hidden state, scaled by its largest value) on a padded probe batch of random token ids."""
    gen = torch.Generator().manual_seed(0)
    vocab = int(getattr(config, "vocab_size", 1000) or 1000)
    ids = torch.randint(0, vocab, (2, 48), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    with torch.no_grad():
        ref = [t.numpy() for t in graph(ids, mask)]
    got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    valid = mask.numpy().astype(bool)
    worst = 0.0
    for r, g in zip(ref, got):
        if r.ndim == 3:  # hidden [B, T, D]: relative to its scale, valid positions only
            d = np.abs(r - g)[valid].max() / max(1e-6, float(np.abs(r[valid]).max()))
        else:  # probabilities [B, H, T, T]: every valid query row, every key
            d = max(float(np.abs(r[b][:, valid[b]][:, :, valid[b]] - g[b][:, valid[b]][:, :, valid[b]]).max())
                    for b in range(r.shape[0]))
        worst = max(worst, float(d))
    return worst
