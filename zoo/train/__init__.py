"""zoo.train: the training engine behind ``zoo train``.

Modules (each small, named for what it holds):

* :mod:`zoo.train.config`: the recipe's ``train:`` section -> :class:`~zoo.train.config.TrainPlan` of stages.
* :mod:`zoo.train.engine`: :class:`~zoo.train.engine.Trainer` (stages: data, model, optimizer; the run).
* :mod:`zoo.train.loop`: the epoch loop; :mod:`zoo.train.callbacks`: what it tells the callbacks below.
* :mod:`zoo.train.runlog`: metrics log callback, curves PNG, run info; :mod:`zoo.train.progress`: progress bar;
  :mod:`zoo.train.validation`: validation callback (GAP from the metric registry, accuracy);
  :mod:`zoo.train.checkpoint`: resumable state in one safetensors file + JSON header (no pickle), the
  checkpointing callback and resume.
* :mod:`zoo.train.state`: what a run holds between steps; :mod:`zoo.train.components`: a stage's
  optimizer, schedule, loss, sampler and mixer from the trainer's registry; :mod:`zoo.train.stage_model`:
  the model a stage trains (build, transition, DDP wrap); :mod:`zoo.train.stage_checks`: validation
  labels, the recipe's world size and hold-out, checked and reported at a stage's start.
* :mod:`zoo.train.step`: :class:`~zoo.train.step.TrainStep` (AMP forward/backward, accumulation, clipping).
* :mod:`zoo.train.transitions`: freezing, head re-initialisation, stage start weights.
* :mod:`zoo.train.data`: per-stage splits, deterministic batches, in-memory source; :mod:`zoo.train.files`:
  CSV / image-folder source over the data plugins.
* :mod:`zoo.train.run_guard`: run-folder protection (existing runs, resume with a changed config);
  :mod:`zoo.train.errors`: the user errors; :mod:`zoo.train.ema`: weight EMA.

The distributed context (torchrun / DDP; NCCL on GPUs, gloo on CPU) is :mod:`zoo.distributed`,
shared with embedding.

Optimizers, param-group policies and schedules are plugins (``plugins/zoo_optim``).
"""

from __future__ import annotations

__all__ = ["Trainer", "TrainResult", "resolve_plan"]


def __getattr__(name: str):  # lazy: importing zoo.train does not import torch
    if name in ("Trainer", "TrainResult"):
        from zoo.train import engine

        return getattr(engine, name)
    if name == "resolve_plan":
        from zoo.train.config import resolve_plan

        return resolve_plan
    raise AttributeError(f"module 'zoo.train' has no attribute '{name}'")
