"""What the epoch loop tells the rest of the trainer, and when.

The loop (:mod:`zoo.train.loop`) only feeds batches through the training step; everything else it
does through callbacks, called in list order on every rank (some of them run collectives):

* ``on_epoch_start`` before the first batch of an epoch (or of its resumed remainder);
* ``on_batch_end`` after each micro-batch (``loss`` is None when every image of it was unreadable);
* ``on_step_end`` after each optimizer step (``state.global_step`` already counts it);
* ``on_epoch_end`` after a complete epoch, with ``epoch.record`` holding the epoch's train loss;
* ``on_loop_end`` whenever the loop leaves an epoch, complete or stopped early (``--max-steps``).

The callbacks: :class:`zoo.train.runlog.MetricsLogger` (metrics log, history),
:class:`zoo.train.progress.ProgressBar`, :class:`zoo.train.validation.Validator` and
:class:`zoo.train.checkpoint.Checkpointer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from zoo.train.config import Stage
from zoo.train.state import TrainState


@dataclass
class EpochState:
    """Where the epoch loop is, as its callbacks see it."""

    stage: Stage
    epoch: int  # 1-based within the stage
    num_batches: int  # micro-batches of the whole epoch on this process
    skip: int = 0  # micro-batches done before a resume
    batch: int = -1  # index of the micro-batch just run
    micro: int = 0  # micro-batches in the optimizer step just taken
    lr: float = 0.0  # the learning rate that step used (param group 0)
    #: ``[sum of loss x images, images]`` of the epoch so far, on the device (no host sync per step)
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(2, dtype=torch.float64))
    last_log: dict[str, Any] | None = None  # the latest train record written (progress shows it)
    record: dict[str, Any] = field(default_factory=dict)  # the end-of-epoch record

    @property
    def last_batch(self) -> bool:
        return self.batch + 1 == self.num_batches


class Callback:
    """Base class: every hook does nothing."""

    def on_epoch_start(self, state: TrainState, epoch: EpochState) -> None:
        pass

    def on_batch_end(self, state: TrainState, epoch: EpochState, loss: torch.Tensor | None, images: int) -> None:
        pass

    def on_step_end(self, state: TrainState, epoch: EpochState) -> None:
        pass

    def on_epoch_end(self, state: TrainState, epoch: EpochState) -> None:
        pass

    def on_loop_end(self, state: TrainState, epoch: EpochState) -> None:
        pass


class CallbackList(Callback):
    """Calls each hook of ``callbacks`` in order."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_epoch_start(self, state: TrainState, epoch: EpochState) -> None:
        for cb in self.callbacks:
            cb.on_epoch_start(state, epoch)

    def on_batch_end(self, state: TrainState, epoch: EpochState, loss: torch.Tensor | None, images: int) -> None:
        for cb in self.callbacks:
            cb.on_batch_end(state, epoch, loss, images)

    def on_step_end(self, state: TrainState, epoch: EpochState) -> None:
        for cb in self.callbacks:
            cb.on_step_end(state, epoch)

    def on_epoch_end(self, state: TrainState, epoch: EpochState) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(state, epoch)

    def on_loop_end(self, state: TrainState, epoch: EpochState) -> None:
        for cb in self.callbacks:
            cb.on_loop_end(state, epoch)
