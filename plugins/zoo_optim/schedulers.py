"""Learning-rate schedules as closed-form functions of the optimizer step.

Every schedule here is a :class:`StepSchedule`: the trainer calls ``set_epoch(e, steps)`` at each
epoch start and ``step()`` after every optimizer step, and the schedule sets each group's lr to
``lr_at(epoch, fraction_of_epoch, base_lr)``. Per-epoch schedules keep the lr constant within an
epoch, which reproduces the upstream ``scheduler.step(epoch)`` calls exactly while giving one
stepping rule, a JSON state and exact mid-epoch resume. Factories take
``(optimizer, *, epochs, steps_per_epoch, **cfg)``; ``epochs`` is the full schedule length (before
any ``stop_at``; summed over stages chained with ``continue``), ``steps_per_epoch`` the optimizer
steps per epoch.

* ``gradual_warmup_v2``: GLR2020 3rd place ``GradualWarmupSchedulerV2(multiplier=10, total_epoch=1)``
  over ``CosineAnnealingWarmRestarts(T_0=n_epochs-1)``, stepped per epoch with ``step(epoch-1)``:
  epoch 1 = lr, epoch 2 = 10 lr, epoch 3 = 10 lr (the cosine starts at T_cur=0), epoch e >= 4 =
  ``10 lr (1 + cos(pi ((e-2) mod T_0) / T_0)) / 2``. ``after: cosine`` gives top-100's README variant
  over ``CosineAnnealingLR(T_max)``.
* ``guie_cosine``: GUIE 2022 2nd place: epoch e (1-based) uses ``0.5 lr (1 + cos(pi e / E))`` with
  ``E = n_epochs + 1``; during epoch 1 a per-step warm-up ``lr (0.01 (1 - a) + a)``, ``a = step /
  iters_per_epoch``.
* ``warmup_cosine``: per-step linear warm-up from ``warmup_start`` x lr over ``warmup_epochs`` (1),
  then cosine to ``min_lr_ratio`` x lr over the remaining steps (GLR2021 1st place ``schedule="cosine"``,
  ``warmup=1``; Henkel & Singer 2020 cosine + 1 warm-up epoch).
* ``cosine``: ``CosineAnnealingLR(T_max, eta_min)`` per epoch (GLR2021 top-100 ``config.py``:
  T_max=12, eta_min=1e-7).
* ``cosine_restarts``: ``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)`` per epoch or per step.
* ``constant``: lr, optionally after a linear warm-up.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from zoo.registry import ZooError


class SchedulerConfigError(ZooError, ValueError):
    """A schedule configuration that cannot be built."""


class StepSchedule:
    """Base class: sets every param group's lr from the schedule position after each ``step()``.

    The position is ``(epoch, step_in_epoch, steps_per_epoch)`` plus the total ``last_step``; the
    trainer calls :meth:`set_epoch` at each epoch start (stages chained with ``continue`` may change
    the batch size and so the steps per epoch) and :meth:`step` after each optimizer step.
    """

    interval = "step"

    def __init__(self, optimizer: torch.optim.Optimizer, *, epochs: int = 1, steps_per_epoch: int = 1) -> None:
        if int(epochs) < 1 or int(steps_per_epoch) < 1:
            raise SchedulerConfigError(
                f"{type(self).__name__}: epochs ({epochs}) and steps_per_epoch ({steps_per_epoch}) must be >= 1"
            )
        self.optimizer = optimizer
        self.epochs = int(epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self._apply()

    # -- to implement -------------------------------------------------------------------
    def lr_at(self, epoch: int, frac: float, base_lr: float) -> float:
        """lr for 0-based ``epoch`` at fraction ``frac`` in [0, 1) of it."""
        raise NotImplementedError

    def _apply(self) -> None:
        frac = self.step_in_epoch / self.steps_per_epoch
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = float(self.lr_at(self.epoch, frac, base))

    # -- torch-scheduler-like API ---------------------------------------------------------
    def set_epoch(self, epoch: int, steps_per_epoch: int | None = None) -> None:
        """Move to the start of 0-based ``epoch`` (with its number of optimizer steps)."""
        if steps_per_epoch is not None:
            self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.epoch, self.step_in_epoch = int(epoch), 0
        self._apply()

    def step(self) -> None:
        self.last_step += 1
        self.step_in_epoch += 1
        if self.step_in_epoch >= self.steps_per_epoch:
            self.epoch += 1
            self.step_in_epoch = 0
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_step": self.last_step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "steps_per_epoch": self.steps_per_epoch, "base_lrs": list(self.base_lrs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state["last_step"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.steps_per_epoch = int(state["steps_per_epoch"])
        self.base_lrs = [float(v) for v in state["base_lrs"]]
        self._apply()


def _warmup_progress(sched: StepSchedule, epoch: int, frac: float, warmup_epochs: float,
                     warmup_steps: int | None) -> float | None:
    """Fraction of the warm-up done (None once it is over)."""
    if warmup_steps is not None:
        w = int(warmup_steps)
        return sched.last_step / w if sched.last_step < w else None
    w = float(warmup_epochs)
    t = epoch + frac
    return t / w if t < w else None


class GradualWarmupV2(StepSchedule):
    """GLR2020 3rd place: GradualWarmupSchedulerV2(multiplier 10, total_epoch 1) over cosine restarts
    (T_0 = n_epochs - 1), per epoch; ``after='cosine'`` uses CosineAnnealingLR(T_max) instead."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, epochs: int = 1, steps_per_epoch: int = 1,
        multiplier: float = 10.0, total_epoch: int = 1, after: str = "cosine_restarts",
        t_0: int | None = None, t_max: int | None = None, eta_min: float = 0.0,
    ) -> None:
        if after not in ("cosine_restarts", "cosine", "none"):
            raise SchedulerConfigError(
                f"gradual_warmup_v2: after must be cosine_restarts, cosine or none, got '{after}'"
            )
        if float(multiplier) < 1:
            raise SchedulerConfigError(f"gradual_warmup_v2: multiplier must be >= 1, got {multiplier}")
        self.multiplier = float(multiplier)
        self.total_epoch = int(total_epoch)
        self.after = after
        if after == "cosine":
            self.period = int(t_max if t_max is not None else epochs)
        else:
            self.period = int(t_0 if t_0 is not None else max(1, int(epochs) - 1))
        self.eta_min = float(eta_min)
        super().__init__(optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch)

    def lr_at(self, epoch: int, frac: float, base_lr: float) -> float:
        e0 = epoch  # upstream calls scheduler.step(epoch - 1) at the start of (1-based) epoch e
        if e0 <= self.total_epoch:
            if self.multiplier == 1.0:
                return base_lr * e0 / max(1, self.total_epoch)
            return base_lr * ((self.multiplier - 1.0) * e0 / max(1, self.total_epoch) + 1.0)
        peak = base_lr * self.multiplier
        if self.after == "none":
            return peak
        # the first epoch past the warm-up reads the wrapped schedule at T_cur=0; later epochs call
        # after_scheduler.step(e0 - total_epoch), so T_cur=1 is never used (upstream behaviour)
        t = 0 if e0 == self.total_epoch + 1 else e0 - self.total_epoch
        if self.after == "cosine_restarts":
            t = t % self.period
        return self.eta_min + (peak - self.eta_min) * (1.0 + math.cos(math.pi * t / self.period)) / 2.0


class GuieCosine(StepSchedule):
    """GUIE 2022 2nd place: per-epoch ``0.5 lr (1 + cos(pi e / (n_epochs + 1)))`` (e 1-based) with a
    per-step warm-up ``lr (0.01 (1 - a) + a)`` during epoch 1."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, epochs: int = 1, steps_per_epoch: int = 1,
        warmup_epochs: int = 1, warmup_start: float = 0.01, extra_epochs: int = 1,
    ) -> None:
        self.warmup_epochs = int(warmup_epochs)
        self.warmup_start = float(warmup_start)
        self.horizon = int(epochs) + int(extra_epochs)
        super().__init__(optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch)

    def lr_at(self, epoch: int, frac: float, base_lr: float) -> float:
        if epoch < self.warmup_epochs:
            alpha = (epoch + frac) / self.warmup_epochs
            return base_lr * (self.warmup_start * (1.0 - alpha) + alpha)
        return 0.5 * base_lr * (1.0 + math.cos(math.pi * (epoch + 1) / self.horizon))


class WarmupCosine(StepSchedule):
    """Per-step linear warm-up then cosine decay over the whole schedule (GLR2021 1st place
    ``schedule="cosine"`` with ``warmup=1`` epoch; Henkel & Singer 2020)."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, epochs: int = 1, steps_per_epoch: int = 1,
        warmup_epochs: float = 1.0, warmup_steps: int | None = None, warmup_start: float = 0.0,
        min_lr_ratio: float = 0.0,
    ) -> None:
        self.warmup_start = float(warmup_start)
        self.min_lr_ratio = float(min_lr_ratio)
        self.warmup_epochs = float(warmup_epochs)
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch)

    def lr_at(self, epoch: int, frac: float, base_lr: float) -> float:
        a = _warmup_progress(self, epoch, frac, self.warmup_epochs, self.warmup_steps)
        if a is not None:
            return base_lr * (self.warmup_start * (1.0 - a) + a)
        if self.warmup_steps is not None:
            start = self.warmup_steps / self.steps_per_epoch
        else:
            start = self.warmup_epochs
        progress = min(1.0, max(0.0, (epoch + frac - start) / max(1e-12, self.epochs - start)))
        ratio = self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return base_lr * ratio


class Cosine(StepSchedule):
    """``CosineAnnealingLR(T_max, eta_min)`` stepped per epoch (GLR2021 top-100: T_max 12,
    eta_min 1e-7), optionally after ``warmup_epochs`` of per-step linear warm-up."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, epochs: int = 1, steps_per_epoch: int = 1,
        t_max: int | None = None, eta_min: float = 0.0, warmup_epochs: int = 0,
    ) -> None:
        self.t_max = int(t_max) if t_max is not None else int(epochs)
        self.eta_min = float(eta_min)
        self.warmup_epochs = int(warmup_epochs)
        super().__init__(optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch)

    def lr_at(self, epoch: int, frac: float, base_lr: float) -> float:
        if epoch < self.warmup_epochs:
            return base_lr * (epoch + frac + 1.0 / self.steps_per_epoch) / self.warmup_epochs
        t = epoch - self.warmup_epochs
        return self.eta_min + (base_lr - self.eta_min) * (1.0 + math.cos(math.pi * t / self.t_max)) / 2.0


class CosineRestarts(StepSchedule):
    """``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)``; ``interval`` epoch (default, T_0 =
    n_epochs - 1 as GLR2020 3rd place) or step (T_0 in optimizer steps)."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, epochs: int = 1, steps_per_epoch: int = 1,
        t_0: int | None = None, t_mult: int = 1, eta_min: float = 0.0, interval: str = "epoch",
    ) -> None:
        if interval not in ("epoch", "step"):
            raise SchedulerConfigError(f"cosine_restarts: interval must be epoch or step, got '{interval}'")
        if int(t_mult) < 1:
            raise SchedulerConfigError(f"cosine_restarts: t_mult must be >= 1, got {t_mult}")
        self.t_0 = int(t_0) if t_0 is not None else max(1, int(epochs) - 1)
        self.t_mult = int(t_mult)
        self.eta_min = float(eta_min)
        self.unit = interval
        super().__init__(optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch)

    def lr_at(self, epoch: int, frac: float, base_lr: float) -> float:
        t = epoch if self.unit == "epoch" else self.last_step
        period = self.t_0
        while t >= period:
            t -= period
            period *= self.t_mult
        return self.eta_min + (base_lr - self.eta_min) * (1.0 + math.cos(math.pi * t / period)) / 2.0


class Constant(StepSchedule):
    """Constant lr (GLR2019: Adam 3e-4), optionally after a linear warm-up from ``warmup_start`` x lr."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, epochs: int = 1, steps_per_epoch: int = 1,
        warmup_epochs: float = 0.0, warmup_steps: int | None = None, warmup_start: float = 0.0,
    ) -> None:
        self.warmup_epochs = float(warmup_epochs)
        self.warmup_steps = warmup_steps
        self.warmup_start = float(warmup_start)
        super().__init__(optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch)

    def lr_at(self, epoch: int, frac: float, base_lr: float) -> float:
        a = _warmup_progress(self, epoch, frac, self.warmup_epochs, self.warmup_steps)
        if a is not None:
            return base_lr * (self.warmup_start * (1.0 - a) + a)
        return base_lr
