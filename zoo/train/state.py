"""What a training run holds between optimizer steps: the objects a checkpoint saves and restores.

:class:`TrainState` is shared by the trainer (which builds its parts stage by stage), the epoch loop
(which advances it) and the callbacks (which log, validate and checkpoint it). :class:`Position` says
where in the schedule a checkpoint was taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from zoo.data.dataset import SkipReport
from zoo.train.ema import ModelEMA


@dataclass
class Position:
    """Where the run is: stage, 1-based epoch within it, micro-batches done in that epoch."""

    stage: int = 0
    epoch: int = 1
    batches_done: int = 0
    epoch_complete: bool = False


def fresh_meters() -> dict[str, float]:
    """The epoch's running loss sums (loss x images, images) at the start of an epoch."""
    return {"loss_sum": 0.0, "count": 0.0}


@dataclass
class TrainState:
    """The model, its optimisation objects and the run's counters (everything ``resume`` restores)."""

    model: nn.Module | None = None
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None
    ema: ModelEMA | None = None
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    skips: SkipReport = field(default_factory=SkipReport)
    label_names: list[str] = field(default_factory=list)
    meters: dict[str, float] = field(default_factory=fresh_meters)

    @property
    def eval_model(self) -> nn.Module:
        """The weights validation and the saved EMA file use: the EMA copy when there is one."""
        model = self.ema.module if self.ema is not None else self.model
        assert model is not None
        return model
