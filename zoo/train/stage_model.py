"""The model a stage trains: built from the recipe (with the stage's class count and model overrides),
initialised (ImageNet, the recipe's verified weights, a checkpoint), carried over from the previous
stage or rebuilt with its tensors transferred, frozen / re-initialised as the stage says, and wrapped
for DDP."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from zoo.assembly import build_model
from zoo.distributed import DistContext
from zoo.recipes import apply_overrides
from zoo.registry import Registry
from zoo.train.config import Stage, TrainPlan
from zoo.train.data import Split
from zoo.train.errors import TrainError
from zoo.train.state import TrainState
from zoo.train.transitions import apply_trainable, load_init, reinit_modules, transfer_weights

log = logging.getLogger(__name__)


class StageModels:
    """Builds and transitions ``state.model`` stage by stage (``pretrained``: start from pretrained
    weights, ``--no-pretrained`` turns it off)."""

    def __init__(self, cfg: DictConfig, registry: Registry, plan: TrainPlan, ctx: DistContext,
                 pretrained: bool) -> None:
        self.cfg, self.registry, self.plan, self.ctx, self.pretrained = cfg, registry, plan, ctx, pretrained
        self.key: tuple[object, ...] | None = None  # (class count, model overrides) of the model built

    def stage_cfg(self, stage: Stage, num_classes: int) -> DictConfig:
        cfg = OmegaConf.create(OmegaConf.to_container(self.cfg, resolve=True))
        OmegaConf.set_struct(cfg, False)
        cfg.model.head.num_classes = int(num_classes)
        if stage.model_overrides:
            cfg = apply_overrides(cfg, stage.model_overrides, what=str(self.cfg.get("name")))
        return cfg

    def build(self, stage: Stage, num_classes: int, pretrained: str | None) -> nn.Module:
        """``pretrained``: None, ``imagenet`` (timm's ImageNet init through ``model.backbone.pretrained``)
        or ``manifest`` (the recipe's verified weights from the weights manifest, e.g. the embedded
        default's offline EfficientNet-Lite0)."""
        cfg = self.stage_cfg(stage, num_classes)
        if pretrained == "imagenet":
            cfg.model.backbone.pretrained = True
        torch.manual_seed(self.plan.seed + 1000 * stage.index)
        model = build_model(cfg, self.registry)
        if getattr(model, "head", None) is None:
            raise TrainError("the model has no head; training needs one")
        if pretrained == "manifest":
            from zoo.weights.loading import load_pretrained

            entry = load_pretrained(model, cfg, registry=self.registry)
            log.info("stage %s: initialised from weights '%s'", stage.name, getattr(entry, "name", "?"))
        return model

    def setup(self, state: TrainState, stage: Stage, split: Split, restoring: bool) -> bool:
        """Build or transition the model for ``stage``; returns True if it was (re)built."""
        key = (split.num_classes, tuple(stage.model_overrides))
        rebuilt = False
        if state.model is None:
            init = None
            if self.pretrained and not restoring:
                init = "manifest" if stage.init == "pretrained" else ("imagenet" if stage.init == "previous" else None)
            elif stage.init == "pretrained" and not restoring:
                log.warning("stage %s: init: pretrained skipped (--no-pretrained)", stage.name)
            state.model = self.build(stage, split.num_classes, pretrained=init)
            rebuilt = True
        elif key != self.key:
            new = self.build(stage, split.num_classes, pretrained=None)
            moved = transfer_weights(state.model, new)
            log.info("stage %s: model rebuilt (%d tensors carried over, %d new)", stage.name, moved["copied"], moved["new"])
            state.model = new
            rebuilt = True
        self.key = key
        model = state.model
        if not restoring:
            if stage.init not in ("previous", "pretrained", "none", ""):
                load_init(model, stage.init, strict=stage.init_strict, drop=stage.init_drop)
            if stage.reinit:
                done = reinit_modules(model, stage.reinit, self.plan.seed + 7919 * (stage.index + 1))
                log.info("stage %s: re-initialised %s", stage.name, ", ".join(done))
        counts = apply_trainable(
            model, freeze=stage.freeze, trainable=stage.trainable,
            freeze_first_n_params=stage.freeze_first_n_params,
        )
        log.info("stage %s: %d parameter tensors train, %d frozen", stage.name, counts["trainable"], counts["frozen"])
        model.to(self.ctx.device)
        if stage.channels_last:
            model.to(memory_format=torch.channels_last)
        return rebuilt

    def wrap(self, state: TrainState) -> nn.Module:
        """The model the step runs: DDP-wrapped (SyncBatchNorm with ``sync_bn`` on CUDA) under torchrun."""
        assert state.model is not None
        if not self.ctx.distributed:
            return state.model
        from torch.nn.parallel import DistributedDataParallel as DDP

        model: nn.Module = state.model
        if self.plan.sync_bn and self.ctx.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            state.model = model
        ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
        return DDP(model, device_ids=ids)  # buffers (BN statistics) follow rank 0 each forward: DDP's default
