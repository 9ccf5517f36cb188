"""The trainer: runs a recipe's stages (data, model transitions, optimizer + schedule, epochs) on one
process or under torchrun; the epoch loop (:mod:`zoo.train.loop`) and its callbacks (metrics log,
progress, validation, checkpoints: :mod:`zoo.train.callbacks`) do the rest.

Entry point: ``Trainer(cfg, source, run_dir, ...).fit()``; ``zoo train`` builds the source from files.
Seed-system behaviour it reproduces (per-system constants live in the ``configs/_train-*.yaml``
recipes and in the optimizer/scheduler plugins):

* stages as separate runs chained by weights (GLR2020 3rd place steps 0-3, GLR2021 1st place DOLG 3
  steps / hybrid-Swin 4 steps), or chained with ``continue`` keeping optimizer and schedule (GLR2021
  top-100's five 3-epoch stages, GUIE 2022's frozen-backbone last epoch);
* the head rebuilt (re-initialised) when a stage's label map has another class count (GLR2020 step 1
  deletes ``metric_classify.weight``);
* dynamic margins from the stage's class counts aligned with the label map
  (``loss.set_class_counts``), epoch-scheduled margins advanced each epoch (``loss.set_epoch``);
* per-process batch size, DDP across processes, rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from zoo.atomic import write_json
from zoo.data.config import DataConfig
from zoo.runs import WEIGHTS_FILE, save_run_weights
from zoo.data.dataset import SkipReport
from zoo.distributed import DistContext, init_distributed
from zoo.registry import Registry
from zoo.train.callbacks import Callback, CallbackList, EpochState
from zoo.train.checkpoint import RESUME_FILE, Checkpointer, Resume, read_resume
from zoo.train.components import build_loss, build_mixer, build_optimizer, build_sampler
from zoo.train.config import Stage, TrainPlan, resolve_plan
from zoo.train.data import DataSource, RetrievalSet, SeededDataset, Split, epoch_batches
from zoo.train.ema import ModelEMA
from zoo.train.errors import TrainError
from zoo.train.loop import EpochLoop, capped_batches, steps_per_epoch
from zoo.train.progress import ProgressBar
from zoo.train.run_guard import check_resume_config, check_run_folder, clear_run
from zoo.train.runlog import MetricsLog, MetricsLogger, plot_curves, save_run_info
from zoo.train.state import Position, TrainState
from zoo.train.step import TrainStep, make_scaler
from zoo.train.retrieval_validation import RetrievalValidator, read_flip_tta
from zoo.train.selection import LAST_FILE, SELECTION_FILE, Selection, selection_metadata
from zoo.train.stage_checks import ValidationChoice, choose_validation, describe_split, note_world_size
from zoo.train.stage_model import StageModels
from zoo.train.transitions import StageTransitionError
from zoo.train.validation import Validator

log = logging.getLogger(__name__)


__all__ = ["Trainer", "TrainResult", "TrainError", "RESUME_FILE", "WEIGHTS_FILE"]


@dataclass
class TrainResult:
    run_dir: Path
    weights: Path | None
    global_step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    stopped_early: bool = False
    #: which epoch ``weights`` holds (``selection.json``; see :mod:`zoo.train.selection`)
    selection: dict[str, Any] = field(default_factory=dict)
    #: the last epoch's weights when ``weights`` holds the best epoch's (else None: they are the same)
    last_weights: Path | None = None


@dataclass
class StageData:
    """A stage's data and model, prepared before any of it trains."""

    stage: Stage
    split: Split
    val: Split | None
    retrieval: RetrievalSet | None
    validation: ValidationChoice
    rebuilt: bool
    dataset: SeededDataset
    sampler: Any
    num_batches: int


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class Trainer:
    """Runs every stage of ``cfg.train`` on the data of ``source``; writes into ``run_dir``.

    ``max_steps`` stops after that many optimizer steps in total (smoke runs, benchmarks). A folder
    that already holds a run is protected (:mod:`zoo.train.run_guard`): ``resume`` continues it from
    ``run_dir/resume.safetensors`` with the same configuration, ``overwrite`` deletes it and starts again;
    without either the run refuses to start. Nothing is written before the recipe's first stage (its
    data and model) is built.
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
        overwrite: bool = False,
    ) -> None:
        from zoo.plugins import get_registry

        self.cfg = cfg
        self.source = source
        self.run_dir = Path(run_dir)
        self.registry = registry or get_registry()
        self.ctx = ctx or init_distributed(device)
        self.pretrained = pretrained
        self.resume = resume
        self.overwrite = overwrite
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
        self.recipe = str(cfg.get("name"))
        self.metrics = MetricsLog(self.run_dir, enabled=self.ctx.is_main)
        self.state = TrainState()
        self.resolved: dict[str, Any] | None = None  # the resolved recipe, recorded in every checkpoint
        self.models = StageModels(cfg, self.registry, self.plan, self.ctx, pretrained)
        self.group_offset = 0
        self.selection: Selection | None = None  # resolved with the first stage's validation

    @property
    def model(self) -> nn.Module | None:
        return self.state.model

    # -- optimisation ------------------------------------------------------------------------
    def _group_epochs(self, stage: Stage) -> int:
        total = stage.epochs
        for nxt in self.plan.stages[stage.index + 1:]:
            if not nxt.continue_schedule:
                break
            total += nxt.epochs
        return total

    def _setup_optim(self, stage: Stage, steps_per_epoch: int) -> None:
        assert self.state.model is not None
        self.state.optimizer, self.state.scheduler = build_optimizer(
            self.registry, stage, self.state.model, epochs=self._group_epochs(stage), steps_per_epoch=steps_per_epoch)
        self.state.scaler = make_scaler(stage.amp, self.ctx.device)
        self.group_offset = 0

    def _check_continue(self, stage: Stage) -> None:
        assert self.state.optimizer is not None and self.state.model is not None
        in_opt = {id(p) for g in self.state.optimizer.param_groups for p in g["params"]}
        new = [n for n, p in self.state.model.named_parameters() if p.requires_grad and id(p) not in in_opt]
        if new:
            raise StageTransitionError(
                f"stage '{stage.name}' continues the previous optimizer but trains parameters it does not "
                f"hold ({', '.join(new[:3])} ...): set continue: false for this stage (a fresh optimizer) "
                "or do not rebuild/unfreeze the model in it"
            )

    # -- weights -------------------------------------------------------------------------------
    def _save_weights(self, name: str = WEIGHTS_FILE, selection: dict[str, Any] | None = None) -> Path | None:
        """The one place weights for inference are written (every epoch, each stage's end, the run's end);
        ``selection``: what :mod:`zoo.train.selection` says about them (in their metadata)."""
        state = self.state
        assert state.model is not None
        path = self.run_dir / name
        if self.ctx.is_main:
            # self-describing (zoo.runs): the model's resolved config (real head size), label map, data config
            meta = {"global_step": str(state.global_step), **(selection_metadata(selection) if selection else {})}
            config = state.model.recipe_cfg
            save_run_weights(path, state.model.state_dict(), config, state.label_names, metadata=meta)
            if state.ema is not None:
                save_run_weights(path.with_name(path.stem + "_ema.safetensors"), state.ema.state_dict(), config,
                                 state.label_names, metadata=meta)
        return path

    def save_epoch_weights(self, record: dict[str, Any]) -> None:
        """After a complete epoch: the last weights, and the selected ones when this epoch is the best
        (``model.safetensors`` always holds the selection; see :mod:`zoo.train.selection`)."""
        sel = self.selection
        assert sel is not None
        best = sel.update(record)
        if not sel.by_metric:
            self._save_weights(WEIGHTS_FILE, sel.describe(WEIGHTS_FILE, None))
            return
        info = sel.describe(WEIGHTS_FILE, LAST_FILE)
        self._save_weights(LAST_FILE, info)
        if best:
            self._save_weights(WEIGHTS_FILE, info)
            if self.ctx.is_main:
                log.info("epoch %d: new best %s = %.4f -> %s", record.get("epoch", 0), sel.metric,
                         float(record[sel.metric]), self.run_dir / WEIGHTS_FILE)  # type: ignore[index]
        self._write_selection(info)

    def _write_selection(self, info: dict[str, Any]) -> None:
        if self.ctx.is_main:
            write_json(self.run_dir / SELECTION_FILE, info)

    def _save_final_weights(self) -> tuple[Path | None, Path | None]:
        """At the run's end: the final state as the last weights, and as ``model.safetensors`` too when
        the rule is ``last`` or no epoch reported the metric; returns ``(selected, last or None)``."""
        sel = self.selection or Selection(None)
        if (sel.last or {}).get("global_step") != self.state.global_step:
            sel.last = {"global_step": self.state.global_step}  # stopped inside an epoch (--max-steps)
        if not sel.by_metric or sel.best is None:
            if sel.by_metric and self.ctx.is_main:
                log.warning("no epoch reported %s (the run stopped before validating): %s holds the last weights",
                            sel.metric, WEIGHTS_FILE)
            sel = Selection(None, best={**sel.last, "value": None}, last=sel.last)
            self.selection = sel
            info = sel.describe(WEIGHTS_FILE, None)
            self._write_selection(info)
            return self._save_weights(WEIGHTS_FILE, info), None
        info = sel.describe(WEIGHTS_FILE, LAST_FILE)
        self._save_weights(LAST_FILE, info)
        self._write_selection(info)
        return self.run_dir / WEIGHTS_FILE, self.run_dir / LAST_FILE

    # -- main loop -----------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        state = self.state
        check_run_folder(self.run_dir, resume=self.resume, overwrite=self.overwrite)
        self.resolved = resolved = OmegaConf.to_container(self.cfg, resolve=True)  # type: ignore[assignment]
        resume: Resume | None = None
        if self.resume:
            resume = read_resume(self.run_dir, self.recipe)
            check_resume_config(self.run_dir, resolved, resume.header.get("config"))
        _seed_everything(self.plan.seed)
        start = resume.position if resume else Position()
        if resume:
            resume.restore_counters(state)
        # the recipe's data and model are checked before the run folder is touched
        first = self._prepare_stage(self.plan.stages[start.stage], restoring=resume is not None)
        self.selection = Selection.resolve(self.plan.select, retrieval=first.validation.retrieve,
                                           reported=["train_loss", *first.validation.reported()])
        self.selection.restore(state.history)
        self._open_run_folder(resolved, resume)
        stopped = False
        try:
            for stage in self.plan.stages[start.stage:]:
                restoring = resume is not None and stage.index == start.stage
                data = first if stage.index == start.stage else self._prepare_stage(stage, restoring=False)
                stopped = self._run_stage(data, resume if restoring else None)
                if stopped:
                    break
        finally:
            self.metrics.close()
        weights, last = self._save_final_weights()
        self._gather_skips()
        assert self.selection is not None
        if self.ctx.is_main:
            state.skips.write(self.run_dir / "skipped.json")
            if state.skips:
                log.warning("%s; see %s", state.skips.summary(), self.run_dir / "skipped.json")
            plot_curves(self.run_dir, selected=self.selection.best)
            log.info("%s: %s%s", WEIGHTS_FILE, self.selection.summary(),
                     f"; the last epoch's weights: {LAST_FILE}" if last else "")
        info = self.selection.describe(WEIGHTS_FILE, LAST_FILE if last else None)
        # every rank returns once the run folder is complete; this also lets gloo's worker threads
        # release the last collective's tensors before a rank's interpreter exits (a rank that
        # returned at once could abort in interpreter shutdown: "terminate called without an
        # active exception")
        self.ctx.barrier()
        return TrainResult(self.run_dir, weights, state.global_step, state.history, state.skips.rows(), stopped,
                           selection=info, last_weights=last)

    def _open_run_folder(self, resolved: dict[str, Any], resume: Resume | None) -> None:
        """Create (or, with ``overwrite``, empty) the run folder and write the run's description; on
        resume, cut the metrics log back to the checkpoint."""
        self.ctx.barrier()  # every rank has checked the folder before rank 0 writes into it
        if self.ctx.is_main:
            if self.overwrite:
                gone = clear_run(self.run_dir)
                if gone:
                    log.warning("--overwrite: deleted the previous run's %s in %s", ", ".join(gone), self.run_dir)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_run_info(self.run_dir, resolved, self.plan.to_dict(), self.argv, self.registry)
        if resume is not None:
            self.metrics.truncate_after(self.state.global_step)
        self.ctx.barrier()

    def _gather_skips(self) -> None:
        """Merge every rank's skip report into rank 0's (JSON lines in a byte tensor, no pickle)."""
        if not self.ctx.distributed:
            return
        mine = torch.tensor(list((json.dumps(self.state.skips.rows()) + "\n").encode()), dtype=torch.uint8)
        lines = bytes(self.ctx.all_gather_cat(mine).tolist()).decode().splitlines()
        merged = SkipReport()
        for line in lines:
            merged.merge(json.loads(line))
        self.state.skips = merged

    def _prepare_stage(self, stage: Stage, restoring: bool) -> StageData:
        """The stage's training and validation splits, its model, sampler and batch count."""
        kw: dict[str, Any] = {"resample": stage.resample} if stage.resample else {}
        holdout = self.plan.split
        if holdout is not None:
            kw["holdout"] = holdout
        split = self.source.train_split(stage.data, image_size=stage.image_size, augment=stage.augment,
                                        seed=self.plan.seed, **kw)
        if split.num_classes < 1 or len(split.targets) == 0:
            raise TrainError(f"stage {stage.name}: the training data '{stage.data}' has no labelled images")
        self.state.skips.merge(split.skipped)
        self.state.label_names = list(split.label_names)
        key = {"key": stage.data} if holdout is not None else {}
        val = self.source.val_split(image_size=stage.image_size, augment=stage.val_augment, label_names=split.label_names,
                                    **key)
        get_rset = getattr(self.source, "retrieval_set", None)  # DataSources written before retrieval validation
        rset = get_rset(**key) if callable(get_rset) else None
        validation = choose_validation(self.plan.validate, val, rset, split, self.ctx)
        if holdout is not None and self.ctx.is_main:
            describe_split(stage, holdout, split, val)
        note_world_size(stage, self.ctx, self.cfg)
        rebuilt = self.models.setup(self.state, stage, split, restoring=restoring)
        dataset = SeededDataset(split.dataset, self.plan.seed + stage.index)
        sampler = build_sampler(self.registry, stage, split, self.ctx, self.plan.seed)
        n_batches = len(capped_batches(epoch_batches(sampler, 0, stage.batch_size, stage.drop_last), stage))
        if n_batches == 0:
            raise TrainError(
                f"stage {stage.name}: {len(split.targets)} images give no full batch of {stage.batch_size} per "
                f"process (x{self.ctx.world_size}); lower train.batch_size or set drop_last: false"
            )
        return StageData(stage, split, val if validation.classify else None,
                         rset if validation.retrieve else None, validation, rebuilt, dataset, sampler, n_batches)

    def _run_stage(self, data: StageData, resume: Resume | None) -> bool:
        state, ctx, stage = self.state, self.ctx, data.stage
        spe = steps_per_epoch(data.num_batches, stage)
        fresh_optim = not stage.continue_schedule or state.optimizer is None
        if stage.continue_schedule and state.optimizer is not None:
            if data.rebuilt:
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
        if stage.ema is not None and (state.ema is None or data.rebuilt or fresh_optim):
            state.ema = ModelEMA(state.model, **stage.ema)  # type: ignore[arg-type]
        elif stage.ema is None:
            state.ema = None
        loss_fn = build_loss(self.registry, self.cfg.loss, stage, data.split).to(ctx.device)
        mixer = build_mixer(self.registry, stage)
        start_epoch, skip = 1, 0
        if resume is not None:
            resume.restore_training(state)
            start_epoch, skip = resume.start()
        model = self.models.wrap(state)
        step = TrainStep(
            model, loss_fn, state.optimizer, device=ctx.device, amp=stage.amp, accumulate=stage.accumulate,
            clip_grad=stage.clip_grad, channels_last=stage.channels_last, scaler=state.scaler,
            data_config=self.data_cfg,
        )
        validators: list[Callback] = []
        if data.val is not None:
            validators.append(Validator(data.val, ctx=ctx, registry=self.registry, data_config=self.data_cfg,
                                        batch_size=stage.batch_size, amp=stage.amp, workers=self.plan.workers))
        if data.retrieval is not None:
            validators.append(RetrievalValidator(data.retrieval, ctx=ctx, registry=self.registry,
                                                 flip_tta=read_flip_tta(self.cfg), channels_last=stage.channels_last))
        callbacks = CallbackList([
            *validators,
            MetricsLogger(self.metrics, ctx, self.plan.log_every),
            ProgressBar(self.progress and ctx.is_main),
            EpochWeights(self),  # before the checkpoint: a resumed run never lacks an epoch's weights
            Checkpointer(self.run_dir, self.recipe, ctx, self.resolved),
        ])
        loop = EpochLoop(state, ctx, step=step, loss_fn=loss_fn, mixer=mixer, dataset=data.dataset,
                         sampler=data.sampler, num_classes=data.split.num_classes, seed=self.plan.seed,
                         workers=self.plan.workers, callbacks=callbacks, max_steps=self.max_steps)
        for epoch in range(start_epoch, stage.last_epoch + 1):
            if loop.run(stage, epoch, self.group_offset + epoch - 1, skip):
                return True
            skip = 0
        if ctx.is_main and len(self.plan.stages) > 1:
            self._save_weights(f"stage{stage.index}-{stage.name}.safetensors")
        return False


class EpochWeights(Callback):
    """Hands each complete epoch's record to :meth:`Trainer.save_epoch_weights` (last and selected weights)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def on_epoch_end(self, state: TrainState, epoch: EpochState) -> None:
        self.trainer.save_epoch_weights(epoch.record)
