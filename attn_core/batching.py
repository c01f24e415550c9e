"""Padded batches of token sequences: the one padding path of analysis, guided reading, retrieval and
faithfulness, and the one device-aware batch size.

Every stage that runs the model builds the same thing: sequences of token ids, longest first (so padding
is small and the slowest batch reports progress early), right-padded with the tokenizer's pad id, with a
mask of the real positions. Keeping that in one place means a fix (a tokenizer without a pad id, a GPU
batch size) reaches every stage at once.

A batch is built as numpy arrays (what ONNX Runtime reads) and becomes torch tensors on the model's device
only when a torch network asks for them, so a process reading from an ONNX export never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import numpy as np

# Tokens per padded batch. On CPU larger batches stop paying off (2 cores, cache-bound matrix products);
# on a GPU, memory is the limit and 16k tokens of a base-size encoder fit easily.
CPU_BATCH_TOKENS = 2048
CUDA_BATCH_TOKENS = 16384


def default_batch_tokens(device: str, *, scale: int = 1) -> int:
    """Tokens per batch for this device; `scale` > 1 for passes that keep no attention (embeddings)."""
    base = CUDA_BATCH_TOKENS if str(device).startswith("cuda") else CPU_BATCH_TOKENS
    return base * scale


def length_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of at most `batch_tokens` padded tokens, longest first.

    A sequence longer than the budget still gets a batch of its own (it must run somewhere).
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@dataclass(frozen=True)
class PaddedBatch:
    """Right-padded ids [B, T] (int64) and the mask of real positions [B, T] (bool), as numpy arrays, with
    their torch tensors on `device` made on first use."""

    ids: np.ndarray
    mask: np.ndarray
    lengths: tuple[int, ...]
    device: str = "cpu"

    def on_device(self, array: np.ndarray) -> Any:
        """An array of this batch (a mask of positions to keep…) as a torch tensor on the model's device."""
        import torch  # only a torch forward asks (module docstring)

        return torch.from_numpy(array).to(self.device)

    @cached_property
    def input_ids(self) -> Any:
        """The ids as a torch tensor on the model's device."""
        return self.on_device(self.ids)

    @cached_property
    def valid(self) -> Any:
        """The mask of real positions as a torch bool tensor on the model's device."""
        return self.on_device(self.mask)

    @property
    def attention_mask(self) -> Any:
        return self.valid.long()


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's pad id; 0 for models that have none (GPT-2): masked positions never matter."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return 0 if pad is None else int(pad)


def pad_batch(seqs: Sequence[Sequence[int]], pad: int, device: str = "cpu") -> PaddedBatch:
    """The padded arrays of a batch of id sequences (`device`: where its torch tensors go)."""
    lengths = tuple(len(s) for s in seqs)
    width = max(lengths) if lengths else 0
    ids = np.full((len(seqs), width), pad, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=bool)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = np.asarray(s, dtype=np.int64)
        mask[b, : len(s)] = True
    return PaddedBatch(ids, mask, lengths, str(device))
