"""OpenCLIP ViT visual tower without the projection (the GUIE 2022 2nd-place backbone).

Seed: GUIE 2022 2nd place (Huang & Li, seed ``004_60a6a1e920154956``; upstream
``XL-H/GUIE-2nd-Place-Solution``, ``GUIE/models/clip_vit.py``, ``GUIE/build_model.py``).

As released (SEED_SYSTEMS §3.1): open_clip ``ViT-H-14`` visual tower (image 224, patch 14, width 1280,
32 layers, 16 heads, GELU, ``nn.MultiheadAttention``) whose forward is conv1 -> class token +
position embedding -> ``ln_pre`` -> transformer -> ``ln_post`` on the class token, with the
**projection removed** -> 1280-d (``output_fmt="NC"``). Pretrained weights are open_clip's
``laion2b_s32b_b79k`` tag (loaded only when ``pretrained=True``; tests never do).

The tower sits under ``net`` so that zoo keys equal GUIE's (``backbone.net.*``). Any open_clip model
config works through ``arch``; ``vision_cfg`` overrides entries of its vision config (tiny test
towers). AMP-safe (open_clip's LayerNorm casts back to the input dtype); CPU/GPU agnostic.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from zoo.registry import ZooError
from zoo_backbones.library_pretrained import create_open_clip_model

DEFAULT_ARCH = "ViT-H-14"
DEFAULT_TAG = "laion2b_s32b_b79k"

#: a tiny CPU build for the registry-wide contract tests
TEST_KWARGS: dict[str, Any] = {
    "name": "ViT-H-14",
    "pretrained": False,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 2, "head_width": 32},
}


class OpenClipConfigError(ZooError):
    """OpenCLIP tower arguments that cannot build a model."""


def vision_config(arch: str = DEFAULT_ARCH, vision_cfg: Mapping[str, Any] | None = None) -> tuple[int, dict]:
    """The open_clip ``(embed_dim, vision_cfg)`` of ``arch`` with ``vision_cfg`` entries overridden."""
    import open_clip

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        known = ", ".join(n for n in open_clip.list_models() if n.startswith("ViT"))
        raise OpenClipConfigError(f"unknown open_clip architecture '{arch}'. Known ViTs: {known}")
    vcfg = dict(cfg["vision_cfg"])
    vcfg.update(dict(vision_cfg or {}))
    return int(cfg["embed_dim"]), vcfg


class OpenClipViT(nn.Module):
    """OpenCLIP ViT visual tower, projection removed: ``B x 3 x H x W -> B x width`` (1280 for ViT-H-14).

    Seed GUIE 2022 2nd place; constants: ``ViT-H-14`` (224 px, patch 14, width 1280, 32 layers,
    head width 80), class-token pooling after ``ln_post``, no projection, tag ``laion2b_s32b_b79k``.
    """

    output_fmt = "NC"

    def __init__(
        self,
        arch: str = DEFAULT_ARCH,
        pretrained: bool = False,
        vision_cfg: Mapping[str, Any] | None = None,
        name: str | None = None,
        tag: str = DEFAULT_TAG,
    ) -> None:
        super().__init__()
        from open_clip.model import _build_vision_tower

        arch = name or arch
        embed_dim, vcfg = vision_config(arch, vision_cfg)
        if pretrained:
            if vision_cfg:
                raise OpenClipConfigError(
                    "openclip_vit: pretrained weights need the stock vision config; drop vision_cfg overrides"
                )
            net = create_open_clip_model(arch, tag).visual
        else:
            net = _build_vision_tower(embed_dim, vcfg)
        if not hasattr(net, "transformer") or not hasattr(net, "proj"):
            raise OpenClipConfigError(f"openclip_vit: '{arch}' is not a ViT visual tower")
        net.proj = None  # the projection is removed (GUIE 2nd place)
        self.net = net
        self.arch = arch
        self.tag = tag
        size = vcfg.get("image_size", 224)
        self.image_size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.num_features = int(vcfg["width"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.image_size:
            raise OpenClipConfigError(
                f"openclip_vit '{self.arch}' expects {self.image_size} inputs (learned "
                f"position embedding), got {tuple(x.shape[-2:])}; set data.image_size (or "
                "model.backbone.vision_cfg.image_size) accordingly."
            )
        return self.net(x)


def create_openclip_vit(**kwargs: Any) -> OpenClipViT:
    """OpenCLIP ViT visual tower without projection (GUIE 2022 2nd place): 1280-d for ViT-H-14.

    kwargs: ``name`` (open_clip config, default ``ViT-H-14``; ``arch`` is an alias), ``pretrained``
    (False; True loads open_clip's ``tag`` weights, default ``laion2b_s32b_b79k``), ``vision_cfg``
    (overrides of the vision config: image_size, patch_size, width, layers, head_width, ...).
    """
    return OpenClipViT(**kwargs)
