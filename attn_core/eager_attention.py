"""The torch forward passes of the analysis: the attention function registered with transformers, which
feeds a `Capture`, and the plain pass that gives the last hidden state.

Layers whose attention no reduction needs go through PyTorch's fused SDPA kernel; a needed layer computes its
probabilities here and hands them to the thread's `Capture` (attention.py), and once the last needed layer
is folded the rest of the network is skipped. This is the only module of the analysis that needs torch: a
process reading from a verified ONNX export (runtime.py) never imports it.
"""
from __future__ import annotations

from typing import Any

import torch

from .attention import Capture, StopForward, capturing, current_capture

IMPLEMENTATION = "chumoku"

_SDPA: dict[str, Any] = {}  # transformers' SDPA helpers, filled by install_capture


def _attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
               **kwargs: Any) -> tuple[torch.Tensor, None]:
    repeat_kv, sdpa_attention_forward = _SDPA["repeat_kv"], _SDPA["forward"]
    capture = current_capture()
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


def run_captured(net: Any, capture: Capture, **inputs: Any) -> Any:
    """`net(**inputs)` under inference mode with `capture` fed; None when the pass stopped early because
    everything the reduction needs was captured (later layers would be wasted work)."""
    with torch.inference_mode(), capturing(capture):
        try:
            return net(**inputs)
        except StopForward:
            return None


def encoder_hidden_state(net: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The encoder's last hidden state [B, T, D] (every layer on SDPA, nothing captured)."""
    with torch.inference_mode():
        return net(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
