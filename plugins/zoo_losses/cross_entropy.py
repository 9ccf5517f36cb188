"""Softmax cross-entropy with optional label smoothing.

Seed: GLR2019 (TylerYep ``train.py``: ``nn.CrossEntropyLoss``, no smoothing); the GLR2021 top-100
repo also carries a smoothed variant (``labels * 0.9 + 0.005``). Default ``label_smoothing=0.0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo_losses.arcface import LossInputError


class CrossEntropy(nn.Module):
    """Cross-entropy on logits (int64 ``(B,)`` or soft ``(B, C)`` targets), float32 math (AMP-safe)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise LossInputError(f"cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if target.is_floating_point():
            if target.shape != logits.shape:
                raise LossInputError(
                    f"cross_entropy: soft targets {tuple(target.shape)} must match logits {tuple(logits.shape)}"
                )
            target = target.float()
        else:
            target = target.long()
        return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"
