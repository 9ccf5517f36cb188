"""Converter for the GLR2021 top-100 layout (Vadim Timakin; seed 002_c79a1bd7b5279557).

Upstream ``custom/model.py::Net``: ``backbone.net`` (timm ``tf_efficientnet_b0`` with its unused
ImageNet classifier still attached), ``global_pool.p`` (GeM, p trainable), ``neck.{0,1,2}``
(option-D: Linear, BatchNorm1d, PReLU), ``head.weight`` (sub-center, ``3C x 512``); the
``dropouts`` list holds no parameters. Checkpoints are ``{'model': state_dict, 'epoch', ...}``,
no ``module.`` prefix (single GPU); ``zoo.weights.convert`` unwraps them.

zoo's ``glr2021-top100-effnet-b0`` recipe uses the same attribute names, so every key maps to
itself except the unused timm classifier (``backbone.net.classifier.*`` for EfficientNets: the
name comes from timm's ``pretrained_cfg['classifier']``), which is dropped: zoo builds the
backbone with ``num_classes=0``. Everything else passes through unchanged, so the strict fit
check reports leftovers instead of them being dropped silently.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from zoo.weights.convert import ConversionError

LAYOUT = "glr2021-top100"
PREFIX = "backbone.net."


def classifier_prefixes(cfg: Any) -> tuple[str, ...]:
    """``backbone.net.<classifier>.`` for the recipe's timm backbone (e.g. ``classifier``, ``fc``, ``head.fc``)."""
    import timm
    from omegaconf import OmegaConf

    name = str(OmegaConf.select(cfg, "model.backbone.name", default="") or "")
    if not name:
        raise ConversionError(f"{LAYOUT}: the recipe has no model.backbone.name")
    with torch.device("meta"):
        net = timm.create_model(name, pretrained=False)
    cls = net.pretrained_cfg.get("classifier") or "classifier"
    names = cls if isinstance(cls, (list, tuple)) else (cls,)
    return tuple(f"{PREFIX}{n}." for n in names)


def convert(state_dict: Mapping[str, torch.Tensor], cfg: Any) -> dict[str, torch.Tensor]:
    """GLR2021 top-100 state dict -> zoo keys: identity, minus the unused timm classifier."""
    if not any(k.startswith(PREFIX) for k in state_dict):
        raise ConversionError(
            f"{LAYOUT}: no '{PREFIX}' keys in the checkpoint (found e.g. {list(state_dict)[:5]}); "
            "is it really a GLR2021 top-100 checkpoint?"
        )
    drop = classifier_prefixes(cfg)
    return {k: v for k, v in state_dict.items() if not k.startswith(drop)}
