"""Attention reductions, computed as each layer's probabilities appear.

The torch model runs with a registered attention function (eager_attention.py): layers whose attention no
reduction needs go through PyTorch's fused SDPA kernel; the few that are needed compute their probabilities
and hand them to a per-thread `Capture`, which folds them into one score per token at once. A document
therefore never holds [layers x heads x T x T] tensors beyond the layer being reduced.

The ONNX Runtime backend (runtime.py) hands the same `Capture` numpy arrays instead of torch tensors. The
folding is written once against the array API standard (array_api_compat gives torch and numpy one
namespace), so every reduction means the same on both runtimes, and a process reading from a verified ONNX
export never imports torch (seconds of a CLI run).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
from array_api_compat import array_namespace, to_device
from array_api_compat import device as array_device

from .results import METHODS, Settings

_local = threading.local()


class StopForward(Exception):
    """Raised once the last layer a capture needs is folded: the rest of the network is not run."""


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor (any device or dtype) or array as a float32 numpy array on the CPU."""
    xp = array_namespace(x)
    return np.asarray(to_device(xp.astype(x, xp.float32, copy=False), "cpu"))


def rollout(layers: list[Any], residual: float = 0.5) -> Any:
    """Abnar & Zuidema: R = Â_L ··· Â_1 with Â = residual·I + (1-residual)·A, rows renormalised.

    `layers`: head-reduced attention [..., T, T] in layer order (torch tensors or numpy arrays).
    Returns [..., T, T] of the same kind.
    """
    xp = array_namespace(layers[0])
    eye = xp.eye(layers[0].shape[-1], dtype=layers[0].dtype, device=array_device(layers[0]))
    result = None
    for a in layers:
        a_hat = residual * eye + (1.0 - residual) * a
        a_hat = a_hat / xp.clip(xp.sum(a_hat, axis=-1, keepdims=True), min=1e-12)
        result = a_hat if result is None else a_hat @ result
    assert result is not None
    return result


@dataclass
class ChunkBatch:
    """What the capture needs to know about a padded batch of chunks (arrays of the forward's kind: torch
    tensors on the model's device, or numpy arrays for ONNX Runtime)."""

    valid: Any  # [B, T] bool, real (non-pad) positions
    keep: Any  # [B, T] bool, positions to score (content tokens; specials too if drop_special=False)
    causal: bool


def needed_layers(settings: Settings, num_layers: int) -> set[int]:
    """The layers whose attention a reduction reads (the forward stops after the last of them)."""
    layer = settings.layer
    if settings.method == "rollout" or layer == "all":
        return set(range(num_layers))
    if layer == "last":
        return {num_layers - 1}
    idx = int(layer)
    if not -num_layers <= idx < num_layers:
        raise ValueError(f"layer {idx} out of range for a {num_layers}-layer model")
    return {idx % num_layers}


class Capture:
    """Folds each needed layer's attention into [B, T] scores as soon as it exists."""

    def __init__(self, settings: Settings, num_layers: int, batch: ChunkBatch,
                 projections: dict[int, Any] | None = None, full: bool = False,
                 needs_outputs: bool = False) -> None:
        self.settings = settings
        self.batch = batch
        self.xp = array_namespace(batch.valid)
        self.num_layers = num_layers
        self.projections = projections or {}
        self.full = full
        self.needs_outputs = needs_outputs  # a classifier's logits need the whole network
        self.full_layers: list[np.ndarray] = []  # [B, H, T, T] per layer, on the CPU
        self.full_value_norms: list[np.ndarray] = []  # [B, H, T] per layer, for the norm method
        self.layers = set(range(num_layers)) if full else needed_layers(settings, num_layers)
        self._sum: Any = None
        self._count = 0
        self._rollout: Any = None

    def wants(self, layer_idx: int | None) -> bool:
        return layer_idx is not None and layer_idx in self.layers

    def finished_at(self, layer_idx: int) -> bool:
        return not self.needs_outputs and layer_idx == max(self.layers)

    def _as(self, x: Any, dtype: Any) -> Any:
        return self.xp.astype(x, dtype, copy=False)  # no copy when it already has that dtype

    # --- per layer -------------------------------------------------------------------------
    def consume(self, layer_idx: int, probs: Any, value: Any) -> None:
        """Fold one layer's probabilities [B, H, T, T]; `value` [B, H, T, d] is read by the norm method only."""
        xp = self.xp
        if self.full:
            self.full_layers.append(to_numpy(probs))
            self.full_value_norms.append(to_numpy(self._value_norms(layer_idx, self._as(value, xp.float32))))
            return
        p = self._as(probs, xp.float32)
        if self.settings.method == "norm":
            p = p * self._value_norms(layer_idx, self._as(value, xp.float32))[:, :, None, :]
        head = self.settings.head
        if head == "mean":
            a = xp.mean(p, axis=1)
        elif head == "max":
            a = xp.max(p, axis=1)
        else:
            h = int(head)
            if not -p.shape[1] <= h < p.shape[1]:
                raise ValueError(f"head {h} out of range for {p.shape[1]} heads")
            a = p[:, h]
        if self.settings.method == "rollout":
            a = a * self._as(self.batch.valid, a.dtype)[:, None, :]  # padding gets no flow
            self._rollout = rollout([a]) if self._rollout is None else rollout([a]) @ self._rollout
            return
        s = self._token_scores(a)
        self._sum = s if self._sum is None else self._sum + s
        self._count += 1

    def _value_norms(self, layer_idx: int, value: Any) -> Any:
        """||v_j^h W_O^h|| per head and key: how much of the head's output token j can carry."""
        xp = self.xp
        w = self.projections.get(layer_idx)
        heads, dim = value.shape[1], value.shape[-1]
        if w is None or w.shape[-1] != heads * dim:
            return xp.linalg.vector_norm(value, axis=-1)
        w = to_device(self._as(w, xp.float32), array_device(value))
        w_h = xp.permute_dims(xp.reshape(w, (w.shape[0], heads, dim)), (1, 2, 0))  # [H, d, out]
        return xp.linalg.vector_norm(value @ w_h[None], axis=-1)

    def _token_scores(self, a: Any) -> Any:
        xp = self.xp
        valid = self._as(self.batch.valid, a.dtype)  # [B, T]
        method = self.settings.method
        if method in ("received", "norm"):
            if self.batch.causal:
                # Query i spreads its attention over i+1 keys; early keys are seen by more queries.
                # Scale each row to "times the uniform share" and average over the queries that can see j.
                visible = xp.cumulative_sum(valid, axis=1)  # keys visible to query i
                weighted = a * (visible * valid)[:, :, None]
                seen_by = xp.flip(xp.cumulative_sum(xp.flip(valid, axis=1), axis=1), axis=1)  # queries i >= j
                return xp.sum(weighted, axis=1) / xp.clip(seen_by, min=1.0)
            return xp.sum(a * valid[:, :, None], axis=1) / xp.clip(xp.sum(valid, axis=1, keepdims=True), min=1.0)
        if method == "max":
            return xp.max(a * valid[:, :, None], axis=1)
        if method == "cls":
            return a[xp.arange(a.shape[0], device=array_device(a)), self._query_row()]
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")

    def _query_row(self) -> Any:
        """[CLS] for encoders; for causal models the last real token, the only one that sees them all."""
        xp, valid = self.xp, self.batch.valid
        if self.batch.causal:
            return xp.sum(self._as(valid, xp.int64), axis=1) - 1
        return xp.zeros(valid.shape[0], dtype=xp.int64, device=array_device(valid))

    # --- result ------------------------------------------------------------------------------
    def scores(self) -> Any:
        """[B, T] scores over the kept positions, each row summing to 1."""
        xp = self.xp
        if self.settings.method == "rollout":
            if self._rollout is None:
                raise RuntimeError("no attention was captured: is the model using the chumoku attention?")
            r = self._rollout
            s = r[xp.arange(r.shape[0], device=array_device(r)), self._query_row()]
        else:
            if self._sum is None:
                raise RuntimeError("no attention was captured: is the model using the chumoku attention?")
            s = self._sum / self._count
        s = s * self._as(self.batch.keep, s.dtype)
        return s / xp.clip(xp.sum(s, axis=-1, keepdims=True), min=1e-12)

    def cpu_scores(self) -> np.ndarray:
        """`scores()` as a float32 numpy array on the CPU."""
        return to_numpy(self.scores())


@contextmanager
def capturing(capture: Capture) -> Iterator[Capture]:
    previous = getattr(_local, "capture", None)
    _local.capture = capture
    try:
        yield capture
    finally:
        _local.capture = previous


def current_capture() -> Capture | None:
    """The capture this thread's forward pass feeds (None outside `capturing`)."""
    return getattr(_local, "capture", None)
