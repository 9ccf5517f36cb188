"""The progress bar of an epoch (tqdm, rank 0 only): micro-batches done, latest loss, lr and speed."""

from __future__ import annotations

from typing import Any

import torch

from zoo.train.callbacks import Callback, EpochState
from zoo.train.state import TrainState


class ProgressBar(Callback):
    """One bar per epoch; shows the values of the latest train record the metrics logger wrote."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def on_epoch_start(self, state: TrainState, epoch: EpochState) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=epoch.num_batches, initial=epoch.skip, leave=False, dynamic_ncols=True,
                        desc=f"{epoch.stage.name} epoch {epoch.epoch}/{epoch.stage.last_epoch}")

    def on_batch_end(self, state: TrainState, epoch: EpochState, loss: torch.Tensor | None, images: int) -> None:
        if self.bar is not None and loss is None:  # a skipped batch still counts as done
            self.bar.update(1)

    def on_step_end(self, state: TrainState, epoch: EpochState) -> None:
        if self.bar is None:
            return
        self.bar.update(epoch.micro)
        rec = epoch.last_log
        if rec is not None and rec.get("global_step") == state.global_step:
            self.bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}", img_s=f"{rec['img_per_s']:.1f}")

    def on_loop_end(self, state: TrainState, epoch: EpochState) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
