"""Optimizer factories: ``factory(param_groups, lr=..., **cfg) -> torch.optim.Optimizer``.

Defaults per seed system:

* ``adam``: GLR2020 3rd place (``Adam(lr=1e-4)``, no weight decay); GLR2021 1st place
  (``default_config.py``: Adam, weight decay 0 unless set, 1e-4 for DOLG-B7); GLR2019 (lr 3e-4);
  GLR2021 top-100 ``config.py`` (Adam lr 1e-4).
* ``adamw``: GUIE 2022 2nd place (AdamW, lr 1e-4, weight decay 1e-5 on every group).
* ``sgd``: Henkel & Singer 2020 (SGD lr 0.05, momentum 0.9, weight decay 1e-4).
* ``ranger``: GLR2021 top-100 README (Ranger lr 3e-3, see :mod:`zoo_optim.ranger`).

``adam``, ``adamw`` and ``sgd`` use torch's **fused** update (one kernel over all parameters) whenever
every parameter is a float tensor on a device torch has fused kernels for (CPU, CUDA); ``fused: false``
in the recipe's optimizer block turns it off. Measured on the 2-core dev box (EfficientNet-B0 + head):
Adam's step 3-4x faster than torch's default per-tensor loop (benchmarks/README.md, issue 10/13.6). On
CUDA the fused update also keeps the step counter on the device and takes GradScaler's inf check
in-kernel, so the optimizer step reads nothing back to the host.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from zoo.registry import ZooError
from zoo_optim.ranger import Ranger


class OptimizerConfigError(ZooError, ValueError):
    """An optimizer configuration that cannot be built."""


def _groups(param_groups: Sequence[Any]) -> list[Any]:
    """The groups as a list, each dict group's ``params`` as a list (iterated more than once)."""
    groups = [{**g, "params": [g["params"]] if isinstance(g["params"], torch.Tensor) else list(g["params"])}
              if isinstance(g, dict) else g for g in param_groups]
    if not groups:
        raise OptimizerConfigError(
            "the optimizer got no parameters: every parameter is frozen. Check train.freeze / "
            "train.trainable in the recipe (or the stage) so that something trains."
        )
    return groups


#: devices with torch's fused Adam/AdamW/SGD kernels (torch >= 2.4 for the CPU ones)
FUSED_DEVICES = ("cpu", "cuda")


def pick_fused(groups: Sequence[Any], fused: bool | None) -> bool | None:
    """``fused`` as given, or (``None``) True when every parameter is a float tensor on a device with
    torch's fused optimizer kernels, else None (torch's default implementation)."""
    if fused is not None:
        return bool(fused)
    params = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    if params and all(isinstance(p, torch.Tensor) and torch.is_floating_point(p) and p.device.type in FUSED_DEVICES
                      for p in params):
        return True
    return None


def _betas(betas: Sequence[float]) -> tuple[float, float]:
    b = tuple(float(v) for v in betas)
    if len(b) != 2:
        raise OptimizerConfigError(f"betas must have two values, got {list(betas)}")
    return b  # type: ignore[return-value]


def create_adam(
    param_groups: Sequence[Any], lr: float = 1e-4, betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, fused: bool | None = None,
) -> torch.optim.Optimizer:
    """Adam, lr 1e-4, no weight decay (GLR2020 3rd place, GLR2021 1st place, GLR2021 top-100 config)."""
    groups = _groups(param_groups)
    return torch.optim.Adam(
        groups, lr=float(lr), betas=_betas(betas), eps=float(eps),
        weight_decay=float(weight_decay), amsgrad=bool(amsgrad), fused=pick_fused(groups, fused),
    )


def create_adamw(
    param_groups: Sequence[Any], lr: float = 1e-4, betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8, weight_decay: float = 1e-5, amsgrad: bool = False, fused: bool | None = None,
) -> torch.optim.Optimizer:
    """AdamW, lr 1e-4, weight decay 1e-5 (GUIE 2022 2nd place)."""
    groups = _groups(param_groups)
    return torch.optim.AdamW(
        groups, lr=float(lr), betas=_betas(betas), eps=float(eps),
        weight_decay=float(weight_decay), amsgrad=bool(amsgrad), fused=pick_fused(groups, fused),
    )


def create_sgd(
    param_groups: Sequence[Any], lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 1e-4,
    nesterov: bool = False, dampening: float = 0.0, fused: bool | None = None,
) -> torch.optim.Optimizer:
    """SGD, lr 0.05, momentum 0.9, weight decay 1e-4 (Henkel & Singer 2020)."""
    groups = _groups(param_groups)
    return torch.optim.SGD(
        groups, lr=float(lr), momentum=float(momentum), weight_decay=float(weight_decay),
        nesterov=bool(nesterov), dampening=float(dampening), fused=pick_fused(groups, fused),
    )


def create_ranger(
    param_groups: Sequence[Any], lr: float = 3e-3, alpha: float = 0.5, k: int = 6,
    n_sma_threshold: float = 5.0, betas: Sequence[float] = (0.95, 0.999), eps: float = 1e-5,
    weight_decay: float = 0.0, use_gc: bool = True,
) -> torch.optim.Optimizer:
    """Ranger = RAdam + Lookahead(alpha .5, k 6) + gradient centralisation, betas (.95, .999), eps 1e-5
    (GLR2021 top-100, lr 3e-3)."""
    return Ranger(
        _groups(param_groups), lr=float(lr), alpha=float(alpha), k=int(k),
        n_sma_threshold=float(n_sma_threshold), betas=_betas(betas), eps=float(eps),
        weight_decay=float(weight_decay), use_gc=bool(use_gc),
    )
