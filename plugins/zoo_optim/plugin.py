"""Registers the built-in optimizers, param-group policies and learning-rate schedules.

Optimizers ``adam``, ``adamw``, ``sgd``, ``ranger``; param groups ``all``, ``no_decay``,
``stratified``; schedules ``gradual_warmup_v2``, ``guie_cosine``, ``warmup_cosine``, ``cosine``,
``cosine_restarts``, ``constant`` (see each module for the seed system and its constants).
"""

from __future__ import annotations

from zoo import hookimpl
from zoo.registry import ComponentRegistrar

#: a 4-epoch, 1-step-per-epoch horizon for the registry-wide contract tests
SCHED_TEST = {"epochs": 4, "steps_per_epoch": 1}


@hookimpl
def zoo_register_optimizers(registrar: ComponentRegistrar) -> None:
    add = registrar.add
    add("adam", "zoo_optim.optimizers:create_adam", test_kwargs={},
        description="Adam, lr 1e-4, no weight decay (GLR2020 3rd place, GLR2021 1st place, GLR2021 top-100 config)")
    add("adamw", "zoo_optim.optimizers:create_adamw", test_kwargs={},
        description="AdamW, lr 1e-4, weight decay 1e-5 (GUIE 2022 2nd place)")
    add("sgd", "zoo_optim.optimizers:create_sgd", test_kwargs={},
        description="SGD, lr 0.05, momentum 0.9, weight decay 1e-4 (Henkel & Singer 2020)")
    add("ranger", "zoo_optim.optimizers:create_ranger", test_kwargs={},
        description="Ranger = RAdam + Lookahead(alpha .5, k 6) + gradient centralisation, betas (.95, .999), eps 1e-5 "
                    "(GLR2021 top-100 README)")


@hookimpl
def zoo_register_param_groups(registrar: ComponentRegistrar) -> None:
    add = registrar.add
    add("all", "zoo_optim.param_groups:all_params", test_kwargs={},
        description="one group with every trainable parameter (GLR2020 3rd, GLR2021 1st, top-100)")
    add("no_decay", "zoo_optim.param_groups:no_decay", test_kwargs={},
        description="weight decay on >= 2-D weights only; biases, norms, GeM p, PReLU (1-D) and names "
                    "containing an `exclude` token get none")
    add("stratified", "zoo_optim.param_groups:stratified", test_kwargs={"backbone_prefix": "0"},
        description="GUIE 2022 2nd place stratified LR: backbone c * lr (c = 1e-3), neck/head/pooling lr")


@hookimpl
def zoo_register_schedulers(registrar: ComponentRegistrar) -> None:
    registrar.add(
        "gradual_warmup_v2", "zoo_optim.schedulers:GradualWarmupV2",
        description="x10 warm-up over 1 epoch, then cosine restarts T_0=n-1, per epoch (GLR2020 3rd place)",
        test_kwargs=SCHED_TEST,
    )
    registrar.add(
        "guie_cosine", "zoo_optim.schedulers:GuieCosine",
        description="per-epoch cosine, E=n_epochs+1, per-step warm-up from 0.01 in epoch 1 (GUIE 2022 2nd)",
        test_kwargs=SCHED_TEST,
    )
    registrar.add(
        "warmup_cosine", "zoo_optim.schedulers:WarmupCosine",
        description="per-step linear warm-up (1 epoch) then cosine to 0 (GLR2021 1st place)",
        test_kwargs=SCHED_TEST,
    )
    registrar.add(
        "cosine", "zoo_optim.schedulers:Cosine",
        description="CosineAnnealingLR per epoch, T_max=n_epochs (top-100: T_max 12, eta_min 1e-7)",
        test_kwargs=SCHED_TEST,
    )
    registrar.add(
        "cosine_restarts", "zoo_optim.schedulers:CosineRestarts",
        description="CosineAnnealingWarmRestarts(T_0=n_epochs-1) per epoch or per step",
        test_kwargs=SCHED_TEST,
    )
    registrar.add(
        "constant", "zoo_optim.schedulers:Constant",
        description="constant lr after an optional linear warm-up (GLR2019: Adam 3e-4)",
        test_kwargs={**SCHED_TEST, "warmup_steps": 3},
    )
