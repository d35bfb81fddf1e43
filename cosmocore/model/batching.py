"""Padding, position ids and pooling for batches of token rows: shared by the policy's
recompute and every rollout engine, so both sides lay out a batch the same way."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)`` ``[B, W]`` with each row right-aligned (pads first, mask 0 there)."""
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids as ``generate`` derives them from a padding mask (pads get 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0) * mask.long()


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over unmasked positions; ``where`` (not a product) so NaNs that fully masked pad
    rows may produce in attention cannot leak in."""
    keep = mask.bool().unsqueeze(-1)
    total = torch.where(keep, hidden.float(), torch.zeros((), dtype=torch.float32, device=hidden.device)).sum(1)
    return total / mask.float().sum(1, keepdim=True).clamp(min=1.0)
