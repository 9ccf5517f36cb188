"""Validation each epoch: the head's top-1 class and confidence on the validation split -> GAP and accuracy.

GAP is the registered ``gap`` metric (``zoo_metrics``: GLR2020 3rd place
``util.py::global_average_precision_score``, identical in GUIE 2022), taken from the trainer's
registry. Confidence = the head's max cosine, as GLR2020 3rd place validates. Queries whose label is
not among the training classes (target -1) count as queries without a target: they take a rank in
GAP but are never correct, and accuracy ignores them.
"""

from __future__ import annotations


import numpy as np
import torch
from torch.utils.data import DataLoader

from zoo.data.dataset import collate as collate_batch
from zoo.distributed import DistContext
from zoo.data.config import DataConfig
from zoo.registry import Registry
from zoo.train.callbacks import Callback, EpochState
from zoo.train.data import Split
from zoo.train.state import TrainState
from zoo.train.step import autocast_dtype


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Top-1 accuracy over queries with a target (``target >= 0``)."""
    pred, target = np.asarray(pred), np.asarray(target)
    known = target >= 0
    return float((pred[known] == target[known]).mean()) if known.any() else float("nan")


class Validator(Callback):
    """Adds ``gap``, ``accuracy`` and ``val_images`` to each complete epoch's record (every rank
    predicts its share of ``val``; the predictions are gathered)."""

    def __init__(
        self,
        val: Split | None,
        *,
        ctx: DistContext,
        registry: Registry,
        data_config: DataConfig,
        batch_size: int,
        amp: str,
        workers: int,
    ) -> None:
        self.val, self.ctx = val, ctx
        self.gap = registry.create("metric", "gap")
        self.data_config = data_config
        self.batch_size, self.amp, self.workers = batch_size, amp, workers

    def on_epoch_end(self, state: TrainState, epoch: EpochState) -> None:
        if self.val is not None and len(self.val.targets):
            epoch.record.update(self.evaluate(state))

    @torch.no_grad()
    def evaluate(self, state: TrainState) -> dict[str, float]:
        assert self.val is not None
        ctx, val = self.ctx, self.val
        model = state.eval_model
        was_training = model.training
        model.eval()
        idx = list(range(ctx.rank, len(val.targets), ctx.world_size))
        batches = [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        loader = DataLoader(val.dataset, batch_sampler=batches, num_workers=self.workers, collate_fn=collate_batch)
        preds, confs, targets = [], [], []
        dtype = autocast_dtype(self.amp)
        for batch in loader:
            state.skips.add_batch(batch.get("skipped"))
            if batch["image"] is None:
                continue
            x = batch["image"].to(ctx.device)
            if x.dtype == torch.uint8:
                x = self.data_config.normalize(x, channels_last=False)
            with torch.autocast(ctx.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = model(x)["logits"].float()
            conf, pred = logits.max(1)
            preds.append(pred.cpu())
            confs.append(conf.cpu())
            targets.append(batch["target"])
        if was_training:
            model.train()
        cat = (lambda xs, dt: torch.cat(xs) if xs else torch.zeros(0, dtype=dt))
        pred = ctx.all_gather_cat(cat(preds, torch.int64)).numpy()
        conf = ctx.all_gather_cat(cat(confs, torch.float32)).numpy()
        tgt = ctx.all_gather_cat(cat(targets, torch.int64)).numpy()
        return {"gap": self.gap(pred, conf, tgt), "accuracy": accuracy(pred, tgt), "val_images": float(len(tgt))}
