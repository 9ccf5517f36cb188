"""Exponential moving average of the weights (optional, ``train.ema: {decay: 0.9998}``).

None of the five seed systems uses an EMA (GUIE 2022 2nd place keeps SWA checkpoints); it is an
option. Defaults: decay 0.9998 with the usual warm-up ``min(decay, (1 + n) / (10 + n))`` so early
averages are not dominated by the initial weights; buffers (BN statistics) are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """Keeps ``ema = d * ema + (1 - d) * weights`` after every optimizer step."""

    def __init__(self, model: nn.Module, decay: float = 0.9998, warmup: bool = True) -> None:
        if not 0.0 < float(decay) < 1.0:
            from zoo.registry import ZooError

            raise ZooError(f"train.ema.decay must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        own = self.module.state_dict()
        for k, v in model.state_dict().items():
            e = own[k]
            if e.dtype.is_floating_point:
                e.mul_(d).add_(v.detach().to(e.dtype), alpha=1.0 - d)
            else:
                e.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = int(updates)
