"""Registers the built-in optimizers, param-group policies and learning-rate schedules.

Optimizers ``adam``, ``adamw``, ``sgd``, ``ranger``; param groups ``all``, ``no_decay``,
``stratified``; schedules ``gradual_warmup_v2``, ``guie_cosine``, ``warmup_cosine``, ``cosine``,
``cosine_restarts``, ``constant`` (see each module for the seed system and its constants).
"""

from __future__ import annotations

from zoo import hookimpl
from zoo.registry import ComponentRegistrar
from zoo_optim import optimizers, param_groups, schedulers

#: a 4-epoch, 1-step-per-epoch horizon for the registry-wide contract tests
SCHED_TEST = {"epochs": 4, "steps_per_epoch": 1}


@hookimpl
def zoo_register_optimizers(registrar: ComponentRegistrar) -> None:
    registrar.add("adam", optimizers.create_adam, test_kwargs={})
    registrar.add("adamw", optimizers.create_adamw, test_kwargs={})
    registrar.add("sgd", optimizers.create_sgd, test_kwargs={})
    registrar.add("ranger", optimizers.create_ranger, test_kwargs={})


@hookimpl
def zoo_register_param_groups(registrar: ComponentRegistrar) -> None:
    registrar.add("all", param_groups.all_params, test_kwargs={})
    registrar.add("no_decay", param_groups.no_decay, test_kwargs={})
    registrar.add("stratified", param_groups.stratified, test_kwargs={"backbone_prefix": "0"})


@hookimpl
def zoo_register_schedulers(registrar: ComponentRegistrar) -> None:
    registrar.add(
        "gradual_warmup_v2", schedulers.GradualWarmupV2,
        description="x10 warm-up over 1 epoch, then cosine restarts T_0=n-1, per epoch (GLR2020 3rd place)",
        test_kwargs=SCHED_TEST,
    )
    registrar.add(
        "guie_cosine", schedulers.GuieCosine,
        description="per-epoch cosine, E=n_epochs+1, per-step warm-up from 0.01 in epoch 1 (GUIE 2022 2nd)",
        test_kwargs=SCHED_TEST,
    )
    registrar.add(
        "warmup_cosine", schedulers.WarmupCosine,
        description="per-step linear warm-up (1 epoch) then cosine to 0 (GLR2021 1st place)",
        test_kwargs=SCHED_TEST,
    )
    registrar.add(
        "cosine", schedulers.Cosine,
        description="CosineAnnealingLR per epoch, T_max=n_epochs (top-100: T_max 12, eta_min 1e-7)",
        test_kwargs=SCHED_TEST,
    )
    registrar.add(
        "cosine_restarts", schedulers.CosineRestarts,
        description="CosineAnnealingWarmRestarts(T_0=n_epochs-1) per epoch or per step",
        test_kwargs=SCHED_TEST,
    )
    registrar.add(
        "constant", schedulers.Constant,
        description="constant lr after an optional linear warm-up (GLR2019: Adam 3e-4)",
        test_kwargs={**SCHED_TEST, "warmup_steps": 3},
    )
