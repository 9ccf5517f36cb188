"""zoo.train: the training engine behind ``zoo train``.

Modules (each small, named for what it holds):

* :mod:`zoo.train.config`: the recipe's ``train:`` section -> :class:`~zoo.train.config.TrainPlan` of stages.
* :mod:`zoo.train.engine`: :class:`~zoo.train.engine.Trainer` (stages, epochs, validation, checkpoints, resume).
* :mod:`zoo.train.step`: :class:`~zoo.train.step.TrainStep` (AMP forward/backward, accumulation, clipping).
* :mod:`zoo.train.transitions`: freezing, head re-initialisation, stage start weights.
* :mod:`zoo.train.checkpoint`: resumable state in one safetensors file + JSON header (no pickle).
* :mod:`zoo.train.distributed`: torchrun / DDP context (NCCL on GPUs, gloo on CPU).
* :mod:`zoo.train.data`: per-stage splits, deterministic batches, in-memory source; :mod:`zoo.train.files`:
  CSV / image-folder source over the data plugins.
* :mod:`zoo.train.validation`: GAP and accuracy; :mod:`zoo.train.ema`: weight EMA;
  :mod:`zoo.train.runlog`: metrics log, curves PNG, run info.

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
