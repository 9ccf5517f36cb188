"""One training step: forward, loss, backward, and (every ``accumulate`` micro-batches) clip, step.

Shared by the trainer and ``benchmarks/train_step.py`` so what is benchmarked is what trains. AMP:
``bf16`` autocast, or ``fp16`` autocast with a ``GradScaler`` (GLR2020 3rd place / GLR2021 1st place /
GUIE 2022 trained with apex AMP O1, top-100 with ``torch.cuda.amp.GradScaler``). Logits are cast to
float32 before the loss, as every seed system does. A batch mixer's :class:`MixedTargets` makes the
step's loss ``lam * L(x, y_a) + (1 - lam) * L(x, y_b)`` (:func:`mixed_loss`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from zoo.data.config import DataConfig


def autocast_dtype(amp: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)


def make_scaler(amp: str, device: torch.device) -> Any:
    """A ``torch.amp.GradScaler`` for fp16 (disabled otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))


@dataclass(frozen=True)
class MixedTargets:
    """The targets of a mixed batch (FMix / CutMix / MixUp): each image is ``lam`` of the image of
    ``targets`` and ``1 - lam`` of the image of ``shuffled`` (``targets[perm]``).

    Its loss is ``lam * L(x, targets) + (1 - lam) * L(x, shuffled)`` of the recipe's loss, as GLR2021
    top-100's training loop computes it (``utils.py`` L309-312: ``loss_function(outputs,
    labels['target']) * labels['lam'] + loss_function(outputs, labels['shuffled_target']) * (1.0 -
    labels['lam'])``); see :func:`mixed_loss`.
    """

    targets: torch.Tensor
    shuffled: torch.Tensor
    lam: float

    def to(self, device: Any, non_blocking: bool = False) -> "MixedTargets":
        return MixedTargets(self.targets.to(device, non_blocking=non_blocking),
                            self.shuffled.to(device, non_blocking=non_blocking), self.lam)


def mixed_loss(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], logits: torch.Tensor,
               targets: "torch.Tensor | MixedTargets") -> torch.Tensor:
    """``loss_fn(logits, targets)``, or the ``lam``-weighted sum of the two losses of a mixed batch."""
    if isinstance(targets, MixedTargets):
        lam = float(targets.lam)
        return lam * loss_fn(logits, targets.targets) + (1.0 - lam) * loss_fn(logits, targets.shuffled)
    return loss_fn(logits, targets)


class TrainStep:
    """Callable running one micro-batch; returns the detached loss (no host sync). ``targets`` are
    int64 class ids or a mixer's :class:`MixedTargets`."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        *,
        device: torch.device,
        amp: str = "off",
        accumulate: int = 1,
        clip_grad: float | None = None,
        channels_last: bool = False,
        scaler: Any = None,
        on_step: Callable[[], None] | None = None,
        data_config: DataConfig | None = None,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.device = device
        self.dtype = autocast_dtype(amp)
        self.accumulate = max(1, int(accumulate))
        self.clip_grad = clip_grad
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.scaler = scaler if scaler is not None else make_scaler(amp, device)
        self.on_step = on_step
        self.last_grad_norm: torch.Tensor | None = None
        self.data_config = data_config  # normalises uint8 batches on the device

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``B x 3 x H x W`` on the device -> the model's normalised float input (:meth:`DataConfig.normalize`)."""
        if self.data_config is None:
            raise ValueError("uint8 images need TrainStep(data_config=...) to normalise them")
        return self.data_config.normalize(images, channels_last=False)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """A batch as the model takes it: on the device, normalised (uint8 in), in the step's memory
        format. The CUDA prefetcher calls it on its side stream; on a prepared batch every part is a no-op."""
        images = images.to(self.device, non_blocking=True)
        if images.dtype == torch.uint8:
            images = self.normalize(images)
        return images.contiguous(memory_format=self.memory_format)

    def _sync_context(self, sync: bool) -> Any:
        no_sync = getattr(self.model, "no_sync", None)
        return contextlib.nullcontext() if sync or no_sync is None else no_sync()

    def __call__(self, images: torch.Tensor, targets: "torch.Tensor | MixedTargets", *, last_micro: bool = True,
                 divisor: int | None = None) -> torch.Tensor:
        images = self.prepare(images)
        targets = targets.to(self.device, non_blocking=True)
        with self._sync_context(last_micro):
            with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
                out = self.model(images)
                logits = out["logits"] if isinstance(out, dict) else out
            loss = mixed_loss(self.loss_fn, logits.float(), targets)
            scaled = loss / float(divisor or self.accumulate)
            self.scaler.scale(scaled).backward()
        if last_micro:
            if self.clip_grad:
                self.scaler.unscale_(self.optimizer)
                params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
                self.last_grad_norm = torch.nn.utils.clip_grad_norm_(params, self.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            if self.on_step is not None:
                self.on_step()
        return loss.detach()
