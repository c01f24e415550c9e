"""Padded batches of token sequences: the one padding path of analysis, guided reading, retrieval and
faithfulness, and the one device-aware batch size.

Every stage that runs the model builds the same thing: sequences of token ids, longest first (so padding
is small and the slowest batch reports progress early), right-padded with the tokenizer's pad id, with a
mask of the real positions. Keeping that in one place means a fix (a tokenizer without a pad id, a GPU
batch size) reaches every stage at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

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
    """Right-padded ids [B, T] and the mask of real positions [B, T] (bool), on the model's device."""

    input_ids: torch.Tensor
    valid: torch.Tensor
    lengths: tuple[int, ...]

    @property
    def attention_mask(self) -> torch.Tensor:
        return self.valid.long()


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's pad id; 0 for models that have none (GPT-2): masked positions never matter."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return 0 if pad is None else int(pad)


def pad_batch(seqs: Sequence[Sequence[int]], pad: int, device: str = "cpu") -> PaddedBatch:
    """The padded tensors of a batch of id sequences."""
    lengths = tuple(len(s) for s in seqs)
    width = max(lengths) if lengths else 0
    input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    valid = torch.zeros((len(seqs), width), dtype=torch.bool)
    for b, s in enumerate(seqs):
        input_ids[b, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        valid[b, : len(s)] = True
    return PaddedBatch(input_ids.to(device), valid.to(device), lengths)
