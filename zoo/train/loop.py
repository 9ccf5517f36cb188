"""The epoch loop: batches of one epoch through the training step, and nothing else.

Per epoch: the schedule's epoch position (``scheduler.set_epoch``, ``loss.set_epoch``), the epoch's
deterministic batches (capped at ``max_steps_per_epoch`` optimizer steps), a loader with its own
generator, then for every micro-batch: optional batch mixing, :class:`zoo.train.step.TrainStep`, and
after each optimizer step the per-step schedule and the EMA. Logging, progress, validation and
checkpoints are callbacks (:mod:`zoo.train.callbacks`).

Determinism (bit-identical resume): the batch order is a pure function of (seed, stage, epoch, rank);
augmentation randomness is seeded per sample (:class:`zoo.train.data.SeededDataset`); mixing uses a
generator seeded from (seed, global step, batch); a resumed epoch skips the batches already done.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from zoo.data.dataset import collate as collate_batch
from zoo.distributed import DistContext
from zoo.train.callbacks import Callback, EpochState
from zoo.train.config import Stage
from zoo.train.data import SeededDataset, epoch_batches
from zoo.train.errors import TrainError
from zoo.train.state import TrainState, fresh_meters
from zoo.train.step import TrainStep

log = logging.getLogger(__name__)


def epoch_seed(stage: Stage, epoch: int) -> int:
    """The epoch key of the sampler and the per-sample seeds (unique per stage and epoch)."""
    return stage.index * 100_000 + epoch


def capped_batches(batches: list[list[int]], stage: Stage) -> list[list[int]]:
    """The first ``max_steps_per_epoch`` optimizer steps' worth of an epoch's micro-batches (GLR2019's
    ``MAX_STEPS_PER_EPOCH``); all of them without a cap."""
    if stage.max_steps_per_epoch is None:
        return batches
    return batches[: stage.max_steps_per_epoch * stage.accumulate]


def stage_batches(sampler: Any, stage: Stage, epoch: int) -> list[list[int]]:
    """This process's micro-batches of ``epoch`` (capped, see :func:`capped_batches`)."""
    return capped_batches(epoch_batches(sampler, epoch_seed(stage, epoch), stage.batch_size, stage.drop_last), stage)


def steps_per_epoch(num_batches: int, stage: Stage) -> int:
    """Optimizer steps of an epoch of ``num_batches`` micro-batches (the last step may be shorter)."""
    return math.ceil(num_batches / stage.accumulate)


class EpochLoop:
    """Runs the epochs of one stage; ``run`` returns True when ``max_steps`` stopped the run."""

    def __init__(
        self,
        state: TrainState,
        ctx: DistContext,
        *,
        step: TrainStep,
        loss_fn: nn.Module,
        mixer: Any,
        dataset: SeededDataset,
        sampler: Any,
        num_classes: int,
        seed: int,
        workers: int,
        callbacks: Callback,
        max_steps: int | None = None,
    ) -> None:
        self.state, self.ctx = state, ctx
        self.step, self.loss_fn, self.mixer = step, loss_fn, mixer
        self.dataset, self.sampler = dataset, sampler
        self.num_classes, self.seed, self.workers = num_classes, seed, workers
        self.callbacks = callbacks
        self.max_steps = max_steps

    def _start(self, stage: Stage, epoch: int, sched_epoch: int, skip: int, spe: int) -> None:
        """Schedule position, per-sample seeds and train mode for the epoch."""
        state = self.state
        if skip == 0:
            state.meters = fresh_meters()
            if hasattr(state.scheduler, "set_epoch"):
                state.scheduler.set_epoch(sched_epoch, spe)
        if hasattr(self.loss_fn, "set_epoch"):
            self.loss_fn.set_epoch(sched_epoch + 1)
        self.dataset.set_epoch(epoch_seed(stage, epoch))
        model = self.step.model
        model.train()
        if stage.freeze_bn_stats:  # fine-tuning on few images: keep the pretrained BN statistics
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def run(self, stage: Stage, epoch: int, sched_epoch: int, skip: int = 0) -> bool:
        """Epoch ``epoch`` of ``stage`` (``sched_epoch``: its 0-based position in the schedule group),
        from micro-batch ``skip`` on."""
        state, ctx, cbs = self.state, self.ctx, self.callbacks
        batches = stage_batches(self.sampler, stage, epoch)
        self._start(stage, epoch, sched_epoch, skip, steps_per_epoch(len(batches), stage))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + stage.index * 1009 + epoch)
        loader = DataLoader(
            self.dataset, batch_sampler=batches[skip:], num_workers=self.workers, collate_fn=collate_batch,
            pin_memory=ctx.device.type == "cuda", generator=gen, persistent_workers=False,
        )
        ep = EpochState(stage, epoch, len(batches), skip, loss_sum=torch.tensor(
            [state.meters["loss_sum"], state.meters["count"]], dtype=torch.float64, device=ctx.device))
        cbs.on_epoch_start(state, ep)
        stopped = False
        for b, batch in enumerate(loader, start=skip):
            ep.batch = b
            state.skips.add_batch(batch.get("skipped"))
            window_start = (b // stage.accumulate) * stage.accumulate
            micro = min(stage.accumulate, len(batches) - window_start)
            last_micro = b + 1 == window_start + micro
            if batch["image"] is None:  # every image of the batch was unreadable
                if ctx.distributed or stage.accumulate > 1:
                    raise TrainError(
                        f"every image of batch {b} (epoch {epoch}) was unreadable, which a DDP or accumulating "
                        "run cannot skip in step with the other ranks; remove the files listed in skipped.json"
                    )
                log.warning("batch %d of epoch %d: every image unreadable, step skipped", b, epoch)
                cbs.on_batch_end(state, ep, None, 0)
                continue
            images, targets = batch["image"], batch["target"]
            if self.mixer is not None:
                if images.dtype == torch.uint8:
                    images = self.step.normalize(images.to(ctx.device))  # type: ignore[misc]
                g = torch.Generator().manual_seed(self.seed + 31 * state.global_step + b)
                images, targets = self.mixer(images, targets, self.num_classes, g)
            loss = self.step(images, targets, last_micro=last_micro, divisor=micro)
            n = images.shape[0]
            ep.loss_sum[0] += loss.double() * n
            ep.loss_sum[1] += n
            cbs.on_batch_end(state, ep, loss, n)
            if not last_micro:
                continue
            state.global_step += 1
            ep.micro = micro
            ep.lr = float(state.optimizer.param_groups[0]["lr"])  # the lr this step used
            if hasattr(state.scheduler, "set_epoch"):
                state.scheduler.step()
            if state.ema is not None:
                state.ema.update(state.model)  # type: ignore[arg-type]
            cbs.on_step_end(state, ep)
            if self.max_steps is not None and state.global_step >= self.max_steps:
                stopped = True
                break
        cbs.on_loop_end(state, ep)
        if not hasattr(state.scheduler, "set_epoch") and state.scheduler is not None:
            state.scheduler.step()
        if stopped:
            return True
        state.meters = {"loss_sum": float(ep.loss_sum[0]), "count": float(ep.loss_sum[1])}
        tot = ctx.all_reduce_sum([state.meters["loss_sum"], state.meters["count"]])
        ep.record = {"kind": "val", "stage": stage.index, "epoch": epoch, "global_step": state.global_step,
                     "train_loss": tot[0] / max(1.0, tot[1])}
        cbs.on_epoch_end(state, ep)
        return False
