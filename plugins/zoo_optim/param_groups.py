"""Param-group policies: ``factory(model, lr=..., **cfg) -> list[dict]``.

Only parameters with ``requires_grad`` are returned (frozen ones never enter the optimizer). Every
group carries a ``name`` used in the logs.

* ``all``: one group (GLR2020 3rd place, GLR2021 1st place, top-100: ``model.parameters()``).
* ``no_decay``: weight decay on matrices/kernels only; biases, norm weights and other 1-D
  parameters (GeM ``p``, PReLU) get ``weight_decay=0`` (the common timm/HF exclusion rule).
* ``stratified``: GUIE 2022 2nd place, backbone ``lr = c * lr`` with ``c = 1e-3``
  (``backbone_lr_scale_factor``), every other part (neck, head, pooling) ``lr``, all with
  ``weight_decay = 1e-5``; the backbone group is group 0 as upstream.
"""

from __future__ import annotations

from typing import Any, Iterable

from torch import nn

from zoo.registry import ZooError


class ParamGroupError(ZooError, ValueError):
    """A param-group policy configuration that cannot be applied."""


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _is_no_decay(name: str, param: nn.Parameter, extra: Iterable[str]) -> bool:
    return param.ndim <= 1 or name.endswith(".bias") or any(tok in name for tok in extra)


def _group(name: str, params: list[nn.Parameter], lr: float, weight_decay: float | None) -> dict[str, Any]:
    g: dict[str, Any] = {"name": name, "params": params, "lr": float(lr)}
    if weight_decay is not None:
        g["weight_decay"] = float(weight_decay)
    return g


def all_params(model: nn.Module, lr: float = 1e-4, weight_decay: float | None = None) -> list[dict[str, Any]]:
    """One group with every trainable parameter (GLR2020 3rd, GLR2021 1st, top-100)."""
    params = [p for _, p in _trainable(model)]
    return [_group("all", params, lr, weight_decay)] if params else []


def no_decay(
    model: nn.Module, lr: float = 1e-4, weight_decay: float = 1e-5, exclude: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Weight decay on >= 2-D weights only; biases, norms, GeM p, PReLU (1-D) and names containing any
    ``exclude`` token get none."""
    extra = list(exclude)
    decay, skip = [], []
    for name, p in _trainable(model):
        (skip if _is_no_decay(name, p, extra) else decay).append(p)
    groups = []
    if decay:
        groups.append(_group("decay", decay, lr, weight_decay))
    if skip:
        groups.append(_group("no_decay", skip, lr, 0.0))
    return groups


def stratified(
    model: nn.Module,
    lr: float = 1e-4,
    backbone_lr_scale: float = 1e-3,
    weight_decay: float | None = 1e-5,
    backbone_prefix: str = "backbone",
    exclude_no_decay: bool = False,
) -> list[dict[str, Any]]:
    """GUIE 2022 2nd place stratified LR: backbone ``c * lr`` (c = 1e-3), neck/head/pooling ``lr``,
    weight decay 1e-5 everywhere (``exclude_no_decay=True`` also drops it on 1-D params)."""
    if not 0 < float(backbone_lr_scale) <= 1:
        raise ParamGroupError(
            f"stratified: backbone_lr_scale must be in (0, 1] (GUIE uses 1e-3), got {backbone_lr_scale}"
        )
    prefix = backbone_prefix.rstrip(".") + "."
    parts: dict[str, list[tuple[str, nn.Parameter]]] = {}
    for name, p in _trainable(model):
        part = "backbone" if name.startswith(prefix) else name.split(".", 1)[0]
        parts.setdefault(part, []).append((name, p))
    if not any(n.startswith(prefix) for n, _ in model.named_parameters()):
        raise ParamGroupError(
            f"stratified: the model has no parameter under '{prefix}'; set param_groups.backbone_prefix"
        )
    order = (["backbone"] if "backbone" in parts else []) + [k for k in parts if k != "backbone"]
    groups: list[dict[str, Any]] = []
    for part in order:
        scale = float(backbone_lr_scale) if part == "backbone" else 1.0
        items = parts[part]
        if exclude_no_decay:
            dec = [p for n, p in items if not _is_no_decay(n, p, ())]
            nod = [p for n, p in items if _is_no_decay(n, p, ())]
            if dec:
                groups.append(_group(part, dec, lr * scale, weight_decay))
            if nod:
                groups.append(_group(f"{part}.no_decay", nod, lr * scale, 0.0))
        else:
            groups.append(_group(part, [p for _, p in items], lr * scale, weight_decay))
    return groups
