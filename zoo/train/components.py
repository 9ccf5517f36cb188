"""A stage's registered training components, built from the trainer's own registry: param groups,
optimizer and schedule, loss (with dynamic-margin class counts), index sampler, batch mixer."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from torch import nn

from zoo.distributed import DistContext
from zoo.registry import Registry
from zoo.train.config import Stage
from zoo.train.data import Split

log = logging.getLogger(__name__)


def component_kwargs(spec: dict[str, Any] | None) -> dict[str, Any]:
    """A ``{type: name, **kwargs}`` spec's keyword arguments."""
    return {k: v for k, v in (spec or {}).items() if k != "type"}


def build_optimizer(registry: Registry, stage: Stage, model: nn.Module, *, epochs: int,
                    steps_per_epoch: int) -> tuple[Any, Any]:
    """``(optimizer, scheduler)`` over ``stage.param_groups`` of ``model``; the schedule spans ``epochs``."""
    groups = registry.create("param_groups", stage.param_groups["type"], model, lr=stage.lr,
                             **component_kwargs(stage.param_groups))
    optimizer = registry.create("optimizer", stage.optimizer["type"], groups,
                                **{"lr": stage.lr, **component_kwargs(stage.optimizer)})
    scheduler = registry.create("scheduler", stage.scheduler["type"], optimizer, epochs=epochs,
                                steps_per_epoch=steps_per_epoch, **component_kwargs(stage.scheduler))
    return optimizer, scheduler


def build_loss(registry: Registry, loss_cfg: DictConfig, stage: Stage, split: Split) -> nn.Module:
    """The recipe's loss with the stage's options; dynamic margins get the class counts over all rows
    of the stage's data (:meth:`zoo.train.data.Split.class_counts`)."""
    spec = {**OmegaConf.to_container(loss_cfg, resolve=True), **stage.loss}  # type: ignore[dict-item]
    loss = registry.create("loss", str(spec.pop("type")), **spec)
    if hasattr(loss, "set_class_order"):  # GLR2021 top-100 margin_order=first_seen (upstream's misalignment)
        loss.set_class_order(split.targets)
    if hasattr(loss, "set_class_counts"):
        trained = np.bincount(split.targets[split.targets >= 0], minlength=split.num_classes)
        if (trained == 0).any():
            log.warning("%d classes have no training image in stage %s", int((trained == 0).sum()), stage.name)
        loss.set_class_counts(split.class_counts())
    return loss


def build_sampler(registry: Registry, stage: Stage, split: Split, ctx: DistContext, seed: int) -> Any:
    """The stage's index sampler over this process's share (``distributed``: torch's DistributedSampler)."""
    spec = stage.sampler
    kw = dict(num_replicas=ctx.world_size, rank=ctx.rank, seed=seed, shuffle=True, drop_last=stage.drop_last,
              **component_kwargs(spec))
    if registry.has("sampler", spec["type"]):
        return registry.create("sampler", spec["type"], split.targets, **kw)
    if spec["type"] != "distributed":
        registry.get("sampler", spec["type"])  # raises with close matches
    from torch.utils.data import DistributedSampler

    return DistributedSampler(split.dataset, num_replicas=kw["num_replicas"], rank=kw["rank"],  # type: ignore[arg-type]
                              shuffle=True, seed=kw["seed"], drop_last=kw["drop_last"])


def build_mixer(registry: Registry, stage: Stage) -> Any:
    """The stage's batch mixer (None without one)."""
    if not stage.mixer:
        return None
    return registry.create("augmentation", stage.mixer["type"], **component_kwargs(stage.mixer))
