"""Attention reductions, computed inside the forward pass.

The model runs with a registered attention function ("chumoku"): layers whose attention no reduction
needs go through PyTorch's fused SDPA kernel; the few that are needed compute their probabilities and
hand them to a per-thread `Capture`, which folds them into one score per token at once. A document
therefore never holds [layers x heads x T x T] tensors beyond the layer being reduced.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from .results import METHODS, Settings

IMPLEMENTATION = "chumoku"

_local = threading.local()


class StopForward(Exception):
    """Raised once the last layer a capture needs is folded: the rest of the network is not run."""


def rollout(layers: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Abnar & Zuidema: R = Â_L ··· Â_1 with Â = residual·I + (1-residual)·A, rows renormalised.

    `layers`: head-reduced attention [..., T, T] in layer order. Returns [..., T, T].
    """
    eye = torch.eye(layers[0].shape[-1], dtype=layers[0].dtype, device=layers[0].device)
    result = None
    for a in layers:
        a_hat = residual * eye + (1.0 - residual) * a
        a_hat = a_hat / a_hat.sum(-1, keepdim=True).clamp_min(1e-12)
        result = a_hat if result is None else a_hat @ result
    assert result is not None
    return result


@dataclass
class ChunkBatch:
    """What the capture needs to know about a padded batch of chunks."""

    valid: torch.Tensor  # [B, T] bool, real (non-pad) positions
    keep: torch.Tensor  # [B, T] bool, positions to score (content tokens; specials too if drop_special=False)
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
                 projections: dict[int, torch.Tensor] | None = None, full: bool = False,
                 needs_outputs: bool = False) -> None:
        self.settings = settings
        self.batch = batch
        self.num_layers = num_layers
        self.projections = projections or {}
        self.full = full
        self.needs_outputs = needs_outputs  # a classifier's logits need the whole network
        self.full_layers: list[torch.Tensor] = []
        self.full_value_norms: list[torch.Tensor] = []  # [B, H, T] per layer, for the norm method
        self.layers = set(range(num_layers)) if full else needed_layers(settings, num_layers)
        self._sum: torch.Tensor | None = None
        self._count = 0
        self._rollout: torch.Tensor | None = None

    def wants(self, layer_idx: int | None) -> bool:
        return layer_idx is not None and layer_idx in self.layers

    def finished_at(self, layer_idx: int) -> bool:
        return not self.needs_outputs and layer_idx == max(self.layers)

    # --- per layer -------------------------------------------------------------------------
    def consume(self, layer_idx: int, probs: torch.Tensor, value: torch.Tensor) -> None:
        if self.full:
            self.full_layers.append(probs.detach().float().cpu())
            self.full_value_norms.append(self._value_norms(layer_idx, value.float()).cpu())
            return
        p = probs.float()
        if self.settings.method == "norm":
            p = p * self._value_norms(layer_idx, value.float())[:, :, None, :]
        head = self.settings.head
        if head == "mean":
            a = p.mean(1)
        elif head == "max":
            a = p.amax(1)
        else:
            h = int(head)
            if not -p.shape[1] <= h < p.shape[1]:
                raise ValueError(f"head {h} out of range for {p.shape[1]} heads")
            a = p[:, h]
        if self.settings.method == "rollout":
            a = a * self.batch.valid[:, None, :]  # padding gets no flow
            self._rollout = rollout([a]) if self._rollout is None else rollout([a]) @ self._rollout
            return
        s = self._token_scores(a)
        self._sum = s if self._sum is None else self._sum + s
        self._count += 1

    def _value_norms(self, layer_idx: int, value: torch.Tensor) -> torch.Tensor:
        """||v_j^h W_O^h|| per head and key: how much of the head's output token j can carry."""
        w = self.projections.get(layer_idx)
        heads, dim = value.shape[1], value.shape[-1]
        if w is None or w.shape[-1] != heads * dim:
            return value.norm(dim=-1)
        w_h = w.float().to(value.device).view(w.shape[0], heads, dim).permute(1, 2, 0)  # [H, d, out]
        return torch.einsum("bhtd,hdo->bhto", value, w_h).norm(dim=-1)

    def _token_scores(self, a: torch.Tensor) -> torch.Tensor:
        valid = self.batch.valid.to(a.dtype)  # [B, T]
        method = self.settings.method
        if method in ("received", "norm"):
            if self.batch.causal:
                # Query i spreads its attention over i+1 keys; early keys are seen by more queries.
                # Scale each row to "times the uniform share" and average over the queries that can see j.
                visible = torch.cumsum(valid, dim=1)  # keys visible to query i
                weighted = a * (visible * valid)[:, :, None]
                seen_by = torch.flip(torch.cumsum(torch.flip(valid, [1]), dim=1), [1])  # queries i >= j
                return weighted.sum(1) / seen_by.clamp_min(1.0)
            return (a * valid[:, :, None]).sum(1) / valid.sum(1, keepdim=True).clamp_min(1.0)
        if method == "max":
            return (a * valid[:, :, None]).amax(1)
        if method == "cls":
            return a[torch.arange(a.shape[0]), self._query_row()]
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")

    def _query_row(self) -> torch.Tensor:
        """[CLS] for encoders; for causal models the last real token, the only one that sees them all."""
        if self.batch.causal:
            return self.batch.valid.long().sum(1) - 1
        return torch.zeros(self.batch.valid.shape[0], dtype=torch.long, device=self.batch.valid.device)

    # --- result ------------------------------------------------------------------------------
    def scores(self) -> torch.Tensor:
        """[B, T] scores over the kept positions, each row summing to 1."""
        if self.settings.method == "rollout":
            if self._rollout is None:
                raise RuntimeError("no attention was captured: is the model using the chumoku attention?")
            r = self._rollout
            s = r[torch.arange(r.shape[0]), self._query_row()]
        else:
            if self._sum is None:
                raise RuntimeError("no attention was captured: is the model using the chumoku attention?")
            s = self._sum / self._count
        s = s * self.batch.keep.to(s.dtype)
        return s / s.sum(-1, keepdim=True).clamp_min(1e-12)


@contextmanager
def capturing(capture: Capture) -> Iterator[Capture]:
    previous = getattr(_local, "capture", None)
    _local.capture = capture
    try:
        yield capture
    finally:
        _local.capture = previous


_SDPA: dict[str, Any] = {}  # transformers' SDPA helpers, filled by install_capture


def _attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
               **kwargs: Any) -> tuple[torch.Tensor, None]:
    repeat_kv, sdpa_attention_forward = _SDPA["repeat_kv"], _SDPA["forward"]
    capture: Capture | None = getattr(_local, "capture", None)
    layer_idx = getattr(module, "layer_idx", None)
    if capture is None or not capture.wants(layer_idx):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=dropout, **kwargs)
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    logits = torch.matmul(query, key.transpose(2, 3)) * scaling
    is_causal = kwargs.get("is_causal")
    is_causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    if attention_mask is None:
        if is_causal and query.shape[2] > 1:
            q, k = query.shape[2], key.shape[2]
            allowed = torch.ones(q, k, dtype=torch.bool, device=query.device).tril(k - q)
            logits = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
    elif attention_mask.dtype == torch.bool:
        logits = logits.masked_fill(~attention_mask[..., : key.shape[2]], torch.finfo(logits.dtype).min)
    else:
        logits = logits + attention_mask[..., : key.shape[2]]
    probs = torch.softmax(logits.float(), dim=-1).to(query.dtype)
    capture.consume(layer_idx, probs, value)
    if capture.finished_at(layer_idx):
        raise StopForward
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return out, None


def install_capture(model: Any) -> None:
    """Route the model's attention through `_attention` (SDPA unless a capture asks for a layer)."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    # imported once here (model loading is serialised), never per attention call from a serving thread
    _SDPA.update(repeat_kv=repeat_kv, forward=sdpa_attention_forward)
    AttentionInterface.register(IMPLEMENTATION, _attention)
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)
    model.set_attn_implementation(IMPLEMENTATION)
