"""The trainer: runs a recipe's stages (model transitions, optimizer + schedule, epochs, validation,
checkpoints, resume) on one process or under torchrun.

Entry point: ``Trainer(cfg, source, run_dir, ...).fit()``; ``zoo train`` builds the source from files.
Seed-system behaviour it reproduces (per-system constants live in the ``configs/_train-*.yaml``
recipes and in the optimizer/scheduler plugins):

* stages as separate runs chained by weights (GLR2020 3rd place steps 0-3, GLR2021 1st place DOLG 3
  steps / hybrid-Swin 4 steps), or chained with ``continue`` keeping optimizer and schedule (GLR2021
  top-100's five 3-epoch stages, GUIE 2022's frozen-backbone last epoch);
* the head rebuilt (re-initialised) when a stage's label map has another class count (GLR2020 step 1
  deletes ``metric_classify.weight``);
* dynamic margins from the stage's training-split class counts aligned with the label map
  (``loss.set_class_counts``), epoch-scheduled margins advanced each epoch (``loss.set_epoch``);
* per-process batch size, DDP across processes, rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from zoo.assembly import build_model
from zoo.data.config import DataConfig
from zoo.recipes import apply_overrides
from zoo.runs import WEIGHTS_FILE, save_run_weights
from zoo.registry import Registry, ZooError
from zoo.train.checkpoint import prefixed, read_train_state, save_train_state
from zoo.train.config import Stage, TrainPlan, resolve_plan
from zoo.data.dataset import SkipReport
from zoo.data.dataset import collate as collate_batch
from zoo.train.data import DataSource, SeededDataset, Split, epoch_batches
from zoo.train.distributed import DistContext, init_distributed
from zoo.train.ema import ModelEMA
from zoo.train.runlog import MetricsLog, plot_curves, save_run_info
from zoo.train.step import TrainStep, make_scaler
from zoo.train.transitions import (
    StageTransitionError,
    apply_trainable,
    load_init,
    reinit_modules,
    transfer_weights,
)
from zoo.train.validation import accuracy, gap_score

log = logging.getLogger(__name__)

RESUME_FILE = "resume.safetensors"


class TrainError(ZooError):
    """Training cannot start or continue as configured."""


@dataclass
class TrainResult:
    run_dir: Path
    weights: Path | None
    global_step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    stopped_early: bool = False


@dataclass
class _Position:
    """Where the run is: stage, 1-based epoch within it, micro-batches done in that epoch."""

    stage: int = 0
    epoch: int = 1
    batches_done: int = 0
    epoch_complete: bool = False


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _kwargs(spec: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (spec or {}).items() if k != "type"}


class Trainer:
    """Runs every stage of ``cfg.train`` on the data of ``source``; writes into ``run_dir``.

    ``max_steps`` stops after that many optimizer steps in total (smoke runs, benchmarks); ``resume``
    continues from ``run_dir/resume.safetensors`` (a fresh start when there is none yet).
    """

    def __init__(
        self,
        cfg: DictConfig,
        source: DataSource,
        run_dir: str | Path,
        *,
        registry: Registry | None = None,
        device: str | None = None,
        pretrained: bool = False,
        resume: bool = False,
        progress: bool = True,
        max_steps: int | None = None,
        ctx: DistContext | None = None,
        argv: list[str] | None = None,
    ) -> None:
        from zoo.plugins import get_registry

        self.cfg = cfg
        self.source = source
        self.run_dir = Path(run_dir)
        self.registry = registry or get_registry()
        self.ctx = ctx or init_distributed(device)
        self.pretrained = pretrained
        self.resume = resume
        self.progress = progress
        self.max_steps = max_steps
        self.argv = list(argv or sys.argv)
        self.plan: TrainPlan = resolve_plan(cfg)
        self.data_cfg = DataConfig.from_recipe(cfg)
        if cfg.get("model") is None or (cfg.model.get("head") or {}).get("type") in (None, "null"):
            raise TrainError(
                f"recipe '{cfg.get('name')}' has no model.head: training needs a classification head "
                "(e.g. model.head={type: subcenter_arcface}); see configs/default-finetune.yaml"
            )
        if cfg.get("loss") is None or cfg.loss.get("type") is None:
            raise TrainError(f"recipe '{cfg.get('name')}' has no loss section (e.g. loss={{type: arcface_dynamic}})")
        self.metrics = MetricsLog(self.run_dir, enabled=self.ctx.is_main)
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.skips = SkipReport()
        self.label_names: list[str] = []
        self.model: nn.Module | None = None
        self.model_key: tuple[Any, ...] | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.scaler: Any = None
        self.ema: ModelEMA | None = None
        self.group_offset = 0
        self.meters = {"loss_sum": 0.0, "count": 0.0}

    # -- model -----------------------------------------------------------------------------
    def _stage_cfg(self, stage: Stage, num_classes: int) -> DictConfig:
        cfg = OmegaConf.create(OmegaConf.to_container(self.cfg, resolve=True))
        OmegaConf.set_struct(cfg, False)
        cfg.model.head.num_classes = int(num_classes)
        if stage.model_overrides:
            cfg = apply_overrides(cfg, stage.model_overrides, what=str(self.cfg.get("name")))
        return cfg

    def _build(self, stage: Stage, num_classes: int, pretrained: str | None) -> nn.Module:
        """``pretrained``: None, ``imagenet`` (timm's ImageNet init through ``model.backbone.pretrained``)
        or ``manifest`` (the recipe's verified weights from the weights manifest, e.g. the embedded
        default's offline EfficientNet-Lite0)."""
        cfg = self._stage_cfg(stage, num_classes)
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

    def _setup_model(self, stage: Stage, split: Split, restoring: bool) -> bool:
        """Build or transition the model for ``stage``; returns True if it was (re)built."""
        key = (split.num_classes, tuple(stage.model_overrides))
        rebuilt = False
        if self.model is None:
            init = None
            if self.pretrained and not restoring:
                init = "manifest" if stage.init == "pretrained" else ("imagenet" if stage.init == "previous" else None)
            elif stage.init == "pretrained" and not restoring:
                log.warning("stage %s: init: pretrained skipped (--no-pretrained)", stage.name)
            self.model = self._build(stage, split.num_classes, pretrained=init)
            rebuilt = True
        elif key != self.model_key:
            new = self._build(stage, split.num_classes, pretrained=None)
            moved = transfer_weights(self.model, new)
            log.info("stage %s: model rebuilt (%d tensors carried over, %d new)", stage.name, moved["copied"], moved["new"])
            self.model = new
            rebuilt = True
        self.model_key = key
        if not restoring:
            if stage.init not in ("previous", "pretrained", "none", ""):
                load_init(self.model, stage.init, strict=stage.init_strict, drop=stage.init_drop)
            if stage.reinit:
                done = reinit_modules(self.model, stage.reinit, self.plan.seed + 7919 * (stage.index + 1))
                log.info("stage %s: re-initialised %s", stage.name, ", ".join(done))
        counts = apply_trainable(
            self.model, freeze=stage.freeze, trainable=stage.trainable,
            freeze_first_n_params=stage.freeze_first_n_params,
        )
        log.info("stage %s: %d parameter tensors train, %d frozen", stage.name, counts["trainable"], counts["frozen"])
        self.model.to(self.ctx.device)
        if stage.channels_last:
            self.model.to(memory_format=torch.channels_last)
        return rebuilt

    def _wrap(self) -> nn.Module:
        assert self.model is not None
        if not self.ctx.distributed:
            return self.model
        from torch.nn.parallel import DistributedDataParallel as DDP

        model: nn.Module = self.model
        if self.plan.sync_bn and self.ctx.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            self.model = model
        ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
        return DDP(model, device_ids=ids, broadcast_buffers=True)

    # -- optimisation ------------------------------------------------------------------------
    def _group_epochs(self, stage: Stage) -> int:
        total = stage.epochs
        for nxt in self.plan.stages[stage.index + 1:]:
            if not nxt.continue_schedule:
                break
            total += nxt.epochs
        return total

    def _setup_optim(self, stage: Stage, steps_per_epoch: int) -> None:
        assert self.model is not None
        pg_cfg = _kwargs(stage.param_groups)
        groups = self.registry.create("param_groups", stage.param_groups["type"], self.model, lr=stage.lr, **pg_cfg)
        self.optimizer = self.registry.create("optimizer", stage.optimizer["type"], groups, **{"lr": stage.lr, **_kwargs(stage.optimizer)})
        self.scheduler = self.registry.create(
            "scheduler", stage.scheduler["type"], self.optimizer, epochs=self._group_epochs(stage),
            steps_per_epoch=steps_per_epoch, **_kwargs(stage.scheduler),
        )
        self.scaler = make_scaler(stage.amp, self.ctx.device)
        self.group_offset = 0

    def _check_continue(self, stage: Stage) -> None:
        assert self.optimizer is not None and self.model is not None
        in_opt = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        new = [n for n, p in self.model.named_parameters() if p.requires_grad and id(p) not in in_opt]
        if new:
            raise StageTransitionError(
                f"stage '{stage.name}' continues the previous optimizer but trains parameters it does not "
                f"hold ({', '.join(new[:3])} ...): set continue: false for this stage (a fresh optimizer) "
                "or do not rebuild/unfreeze the model in it"
            )

    def _build_loss(self, stage: Stage, split: Split) -> nn.Module:
        spec = {**OmegaConf.to_container(self.cfg.loss, resolve=True), **stage.loss}  # type: ignore[dict-item]
        loss = self.registry.create("loss", str(spec.pop("type")), **spec)
        if hasattr(loss, "set_class_counts"):
            counts = split.class_counts()
            if (counts == 0).any():
                log.warning("%d classes have no training image in stage %s", int((counts == 0).sum()), stage.name)
            loss.set_class_counts(counts)
        return loss.to(self.ctx.device)

    def _sampler(self, stage: Stage, split: Split) -> Any:
        spec = stage.sampler
        kw = dict(num_replicas=self.ctx.world_size, rank=self.ctx.rank, seed=self.plan.seed,
                  shuffle=True, drop_last=stage.drop_last, **_kwargs(spec))
        if self.registry.has("sampler", spec["type"]):
            return self.registry.create("sampler", spec["type"], split.targets, **kw)
        if spec["type"] != "distributed":
            self.registry.get("sampler", spec["type"])  # raises with close matches
        from torch.utils.data import DistributedSampler

        return DistributedSampler(split.dataset, num_replicas=kw["num_replicas"], rank=kw["rank"],  # type: ignore[arg-type]
                                  shuffle=True, seed=kw["seed"], drop_last=kw["drop_last"])

    def _mixer(self, stage: Stage) -> Any:
        if not stage.mixer:
            return None
        return self.registry.create("augmentation", stage.mixer["type"], **_kwargs(stage.mixer))

    # -- checkpoints --------------------------------------------------------------------------
    def _header(self, pos: _Position) -> dict[str, Any]:
        return {
            "position": pos.__dict__.copy(),
            "global_step": self.global_step,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "meters": dict(self.meters),
            "ema_updates": self.ema.updates if self.ema else None,
            "history": self.history,
            "skipped": self.skips.rows(),
            "label_names_count": len(self.label_names),
            "recipe": str(self.cfg.get("name")),
        }

    def _save(self, pos: _Position) -> None:
        assert self.model is not None and self.optimizer is not None
        if self.ctx.is_main:
            save_train_state(
                self.run_dir / RESUME_FILE, model_state=self.model.state_dict(), optimizer=self.optimizer,
                header=self._header(pos), ema_state=self.ema.state_dict() if self.ema else None,
            )
        self.ctx.barrier()

    def _save_weights(self, name: str = WEIGHTS_FILE) -> Path | None:
        assert self.model is not None
        path = self.run_dir / name
        if self.ctx.is_main:
            # self-describing (zoo.runs): the model's resolved config (real head size), label map, data config
            meta = {"global_step": str(self.global_step)}
            config = self.model.recipe_cfg
            save_run_weights(path, self.model.state_dict(), config, self.label_names, metadata=meta)
            if self.ema is not None:
                save_run_weights(path.with_name(path.stem + "_ema.safetensors"), self.ema.state_dict(), config,
                                 self.label_names, metadata=meta)
        return path

    # -- main loop -----------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _seed_everything(self.plan.seed)
        restore: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
        if self.resume and (self.run_dir / RESUME_FILE).is_file():
            restore = read_train_state(self.run_dir / RESUME_FILE)
            if restore[1].get("recipe") != str(self.cfg.get("name")):
                raise TrainError(
                    f"{self.run_dir / RESUME_FILE} belongs to recipe '{restore[1].get('recipe')}', not "
                    f"'{self.cfg.get('name')}': pick another --out or drop --resume"
                )
        elif self.resume:
            log.warning("--resume: no %s yet in %s, starting from the beginning", RESUME_FILE, self.run_dir)
        if self.ctx.is_main:
            save_run_info(self.run_dir, OmegaConf.to_container(self.cfg, resolve=True),  # type: ignore[arg-type]
                          self.plan.to_dict(), self.argv)
        start = _Position(**restore[1]["position"]) if restore else _Position()
        if restore:
            self.global_step = int(restore[1]["global_step"])
            self.history = list(restore[1]["history"])
            self.skips.merge(restore[1]["skipped"])
            self.metrics.truncate_after(self.global_step)
        stopped = False
        try:
            for stage in self.plan.stages[start.stage:]:
                restoring = restore is not None and stage.index == start.stage
                stopped = self._run_stage(stage, restore if restoring else None, start if restoring else None)
                if stopped:
                    break
        finally:
            self.metrics.close()
        weights = self._save_weights()
        self._gather_skips()
        if self.ctx.is_main:
            self.skips.write(self.run_dir / "skipped.json")
            if self.skips:
                log.warning("%s; see %s", self.skips.summary(), self.run_dir / "skipped.json")
            plot_curves(self.run_dir)
        return TrainResult(self.run_dir, weights, self.global_step, self.history, self.skips.rows(), stopped)

    def _gather_skips(self) -> None:
        """Merge every rank's skip report into rank 0's (JSON lines in a byte tensor, no pickle)."""
        if not self.ctx.distributed:
            return
        mine = torch.tensor(list((json.dumps(self.skips.rows()) + "\n").encode()), dtype=torch.uint8)
        lines = bytes(self.ctx.all_gather_cat(mine).tolist()).decode().splitlines()
        merged = SkipReport()
        for line in lines:
            merged.merge(json.loads(line))
        self.skips = merged

    def _run_stage(self, stage: Stage, restore: Any, pos: _Position | None) -> bool:
        ctx = self.ctx
        kw = {"resample": stage.resample} if stage.resample else {}
        split = self.source.train_split(stage.data, image_size=stage.image_size, augment=stage.augment,
                                        seed=self.plan.seed, **kw)
        if split.num_classes < 1 or len(split.targets) == 0:
            raise TrainError(f"stage {stage.name}: the training data '{stage.data}' has no labelled images")
        self.skips.merge(split.skipped)
        self.label_names = list(split.label_names)
        val = self.source.val_split(image_size=stage.image_size, augment=stage.val_augment, label_names=split.label_names)
        rebuilt = self._setup_model(stage, split, restoring=restore is not None)
        dataset = SeededDataset(split.dataset, self.plan.seed + stage.index)
        sampler = self._sampler(stage, split)
        n_batches = len(epoch_batches(sampler, 0, stage.batch_size, stage.drop_last))
        if n_batches == 0:
            raise TrainError(
                f"stage {stage.name}: {len(split.targets)} images give no full batch of {stage.batch_size} per "
                f"process (x{ctx.world_size}); lower train.batch_size or set drop_last: false"
            )
        spe = math.ceil(n_batches / stage.accumulate)
        fresh_optim = not stage.continue_schedule or self.optimizer is None
        if stage.continue_schedule and self.optimizer is not None:
            if rebuilt:
                raise StageTransitionError(
                    f"stage '{stage.name}' continues the previous optimizer but its model is rebuilt "
                    "(class count or model_overrides changed): set continue: false"
                )
            self._check_continue(stage)
            self.group_offset += self.plan.stages[stage.index - 1].epochs
        if fresh_optim:
            self._setup_optim(stage, spe)
            if stage.continue_schedule:  # resuming inside a chained group: schedule offset
                first = stage.index
                while first > 0 and self.plan.stages[first].continue_schedule:
                    first -= 1
                self.group_offset = sum(s.epochs for s in self.plan.stages[first:stage.index])
        if stage.ema is not None and (self.ema is None or rebuilt or fresh_optim):
            self.ema = ModelEMA(self.model, **stage.ema)  # type: ignore[arg-type]
        elif stage.ema is None:
            self.ema = None
        loss_fn = self._build_loss(stage, split)
        mixer = self._mixer(stage)
        start_epoch, skip = 1, 0
        if restore is not None:
            tensors, header = restore
            assert self.model is not None and self.optimizer is not None
            self.model.load_state_dict(prefixed(tensors, "model/"))
            from zoo.train.checkpoint import optimizer_from_flat, restore_rng

            optimizer_from_flat(self.optimizer, tensors, header["optimizer"])
            if header.get("scheduler") is not None:
                self.scheduler.load_state_dict(header["scheduler"])
            if header.get("scaler"):
                self.scaler.load_state_dict(header["scaler"])
            if self.ema is not None and header.get("ema_updates") is not None:
                self.ema.load_state_dict(prefixed(tensors, "ema/"), header["ema_updates"])
            self.meters = dict(header["meters"])
            restore_rng(tensors, header["rng"])
            assert pos is not None
            start_epoch, skip = pos.epoch, pos.batches_done
            if pos.epoch_complete:
                start_epoch, skip = pos.epoch + 1, 0
        model = self._wrap()
        step = TrainStep(
            model, loss_fn, self.optimizer, device=ctx.device, amp=stage.amp, accumulate=stage.accumulate,  # type: ignore[arg-type]
            clip_grad=stage.clip_grad, channels_last=stage.channels_last, scaler=self.scaler,
            data_config=self.data_cfg,
        )
        for epoch in range(start_epoch, stage.last_epoch + 1):
            if self._run_epoch(stage, epoch, skip, model, step, loss_fn, mixer, dataset, sampler, val, split):
                return True
            skip = 0
        if ctx.is_main and len(self.plan.stages) > 1:
            self._save_weights(f"stage{stage.index}-{stage.name}.safetensors")
        return False

    def _run_epoch(self, stage: Stage, epoch: int, skip: int, model: nn.Module, step: TrainStep,
                   loss_fn: nn.Module, mixer: Any, dataset: SeededDataset, sampler: Any, val: Split | None,
                   split: Split) -> bool:
        ctx = self.ctx
        sched_epoch = self.group_offset + epoch - 1  # 0-based position in the schedule group
        batches = epoch_batches(sampler, stage.index * 100_000 + epoch, stage.batch_size, stage.drop_last)
        spe = math.ceil(len(batches) / stage.accumulate)
        if skip == 0:
            self.meters = {"loss_sum": 0.0, "count": 0.0}
            if hasattr(self.scheduler, "set_epoch"):
                self.scheduler.set_epoch(sched_epoch, spe)
        if hasattr(loss_fn, "set_epoch"):
            loss_fn.set_epoch(sched_epoch + 1)
        dataset.set_epoch(stage.index * 100_000 + epoch)
        gen = torch.Generator().manual_seed(self.plan.seed * 1_000_003 + stage.index * 1009 + epoch)
        loader = DataLoader(
            dataset, batch_sampler=batches[skip:], num_workers=self.plan.workers, collate_fn=collate_batch,
            pin_memory=ctx.device.type == "cuda", generator=gen,
            persistent_workers=False,
        )
        model.train()
        if stage.freeze_bn_stats:  # fine-tuning on few images: keep the pretrained BN statistics
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        bar = None
        if self.progress and ctx.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(batches), initial=skip, desc=f"{stage.name} epoch {epoch}/{stage.last_epoch}",
                       leave=False, dynamic_ncols=True)
        t0, seen = time.perf_counter(), 0
        # running sums stay on the device (no host sync per step): [loss * n, n] for the log window
        window = torch.zeros(2, dtype=torch.float64, device=ctx.device)
        epoch_acc = torch.tensor([self.meters["loss_sum"], self.meters["count"]], dtype=torch.float64, device=ctx.device)
        stopped = False
        for b, batch in enumerate(loader, start=skip):
            self.skips.add_batch(batch.get("skipped"))
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
                if bar is not None:
                    bar.update(1)
                continue
            images, targets = batch["image"], batch["target"]
            if mixer is not None:
                if images.dtype == torch.uint8:
                    images = self.data_cfg.normalize(images.to(ctx.device), channels_last=False)
                g = torch.Generator().manual_seed(self.plan.seed + 31 * self.global_step + b)
                images, targets = mixer(images, targets, split.num_classes, g)
            loss = step(images, targets, last_micro=last_micro, divisor=micro)
            n = images.shape[0]
            seen += n
            window[0] += loss.double() * n
            window[1] += n
            epoch_acc[0] += loss.double() * n
            epoch_acc[1] += n
            if not last_micro:
                continue
            self.global_step += 1
            lr = float(self.optimizer.param_groups[0]["lr"])  # type: ignore[union-attr]  # the lr this step used
            if hasattr(self.scheduler, "set_epoch"):
                self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)  # type: ignore[arg-type]
            if bar is not None:
                bar.update(micro)
            if self.global_step % max(1, self.plan.log_every) == 0 or b + 1 == len(batches):
                ips = seen * ctx.world_size / max(1e-9, time.perf_counter() - t0)
                tot = ctx.all_reduce_sum(window.tolist())
                mean_loss = tot[0] / max(1.0, tot[1])
                self.metrics.write({"kind": "train", "stage": stage.index, "epoch": epoch,
                                    "global_step": self.global_step, "loss": mean_loss, "lr": lr, "img_per_s": ips,
                                    "time": time.time()})
                if bar is not None:
                    bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", img_s=f"{ips:.1f}")
                window.zero_()
            self.meters = {"loss_sum": float(epoch_acc[0]), "count": float(epoch_acc[1])} if (
                stage.checkpoint_every_steps and self.global_step % stage.checkpoint_every_steps == 0) else self.meters
            if stage.checkpoint_every_steps and self.global_step % stage.checkpoint_every_steps == 0 and b + 1 < len(batches):
                self._save(_Position(stage.index, epoch, b + 1, False))
            if self.max_steps is not None and self.global_step >= self.max_steps:
                stopped = True
                break
        if bar is not None:
            bar.close()
        if not hasattr(self.scheduler, "set_epoch") and self.scheduler is not None:
            self.scheduler.step()
        if stopped:
            return True
        self.meters = {"loss_sum": float(epoch_acc[0]), "count": float(epoch_acc[1])}
        tot = ctx.all_reduce_sum([self.meters["loss_sum"], self.meters["count"]])
        record: dict[str, Any] = {"kind": "val", "stage": stage.index, "epoch": epoch, "global_step": self.global_step,
                                  "train_loss": tot[0] / max(1.0, tot[1])}
        if val is not None and len(val.targets):
            record.update(self._validate(val, stage))
        self.history.append(record)
        self.metrics.write(record)
        if ctx.is_main:
            log.info("stage %s epoch %d/%d: %s", stage.name, epoch, stage.last_epoch,
                     ", ".join(f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float)))
        self._save(_Position(stage.index, epoch, len(batches), True))
        self._save_weights()
        return False

    @torch.no_grad()
    def _validate(self, val: Split, stage: Stage) -> dict[str, float]:
        ctx = self.ctx
        model = self.ema.module if self.ema is not None else self.model
        assert model is not None
        was_training = model.training
        model.eval()
        idx = list(range(ctx.rank, len(val.targets), ctx.world_size))
        batches = [idx[i:i + stage.batch_size] for i in range(0, len(idx), stage.batch_size)]
        loader = DataLoader(val.dataset, batch_sampler=batches, num_workers=self.plan.workers, collate_fn=collate_batch)
        preds, confs, targets = [], [], []
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(stage.amp)
        for batch in loader:
            self.skips.add_batch(batch.get("skipped"))
            if batch["image"] is None:
                continue
            x = batch["image"].to(ctx.device)
            if x.dtype == torch.uint8:
                x = self.data_cfg.normalize(x, channels_last=False)
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
        return {"gap": gap_score(pred, conf, tgt), "accuracy": accuracy(pred, tgt), "val_images": float(len(tgt))}
