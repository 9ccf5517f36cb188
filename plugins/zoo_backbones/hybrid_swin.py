"""Hybrid EfficientNet-Swin: an EfficientNet feature map as the patch embedding of a Swin Transformer.

Seed: GLR2021 1st place (Henkel, seed ``001_16109c5d2f066637``; upstream
``ChristofHenkel/kaggle-landmark-2021-1st-place``, ``models/ch_mdl_hybrid_transformer{,_2x,_3x}.py``).

As released (SEED_SYSTEMS §2.2), ported to timm 1.x, whose Swin is channels-last (NHWC):

* ``swin``: ``timm.create_model(name, num_classes=0)`` (Swin-Base ``swin_base_patch4_window7_224`` for
  the B3/B5 models, ``swin_base_patch4_window12_384`` for B6), built for the patch grid the embedder
  gives (56x56 and 96x96 for the released sizes, the Swin's own grid).
* ``swin.patch_embed``: ``timm.layers.HybridEmbed(embedder, img_size, patch_size=1,
  feature_size=grid, embed_dim=swin.embed_dim, output_fmt="NHWC")``; the Swin PatchEmbed LayerNorm is
  dropped and there is no position embedding and no virtual token (the released code; the paper
  text describes one).
* ``embedder``: timm EfficientNet ``features_only`` with ``out_indices=[embedder_index]``
  (1 = reduction 4 for B6@384, 3 = reduction 16 for B3@896 and B5@448); ``stride=(1, 1)`` sets the
  embedder's first-conv stride (upstream ``cfg.stride``, the B5 model), halving the reduction.
* output: Swin's final LayerNorm, then the mean over tokens -> ``B x 1024`` (``output_fmt="NC"``),
  timm-0.4.12 Swin's ``norm -> AdaptiveAvgPool1d -> flatten``.
* ``embedder=None``: the plain Swin with its own 4x4 patch embedding at its own ``img_size`` -- step 1
  of the paper's four-step recipe (arXiv 2110.03786 §2.2.2: "initialize the transformer-neck-head part
  by training on a small image size using GLDv2c"). Its transformer keeps the parameter names of the
  hybrid model, so the next stage (``model_overrides`` adding the embedder) carries it over; the
  patch embedding is the only part that changes.

CPU/GPU agnostic and AMP-safe (pure timm layers).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from zoo.registry import ZooError
from zoo_backbones.library_pretrained import create_timm_model

DEFAULT_SWIN = "swin_base_patch4_window7_224"
DEFAULT_EMBEDDER = "tf_efficientnet_b5.ns_jft_in1k"

#: a tiny CPU build for the registry-wide contract tests (64 px inputs, grid 64/8 = 8, window 4)
TEST_KWARGS: dict[str, Any] = {
    "name": "swin_tiny_patch4_window7_224",
    "embedder": "tf_efficientnet_b0",
    "embedder_index": 2,
    "img_size": 64,
    "pretrained": False,
    "embed_dim": 32,
    "depths": [1, 1, 2, 1],
    "num_heads": [1, 2, 2, 4],
    "window_size": 4,
}


class HybridSwinConfigError(ZooError):
    """Hybrid-Swin arguments that cannot build a model."""


def _pair(v: Sequence[int] | int) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class HybridSwin(nn.Module):
    """EfficientNet-as-patch-embedding Swin Transformer returning the pooled ``B x C`` vector.

    Seed GLR2021 1st place (Henkel), constants: ``patch_size=1`` projection (1x1 conv) to the Swin
    ``embed_dim`` (128 for Swin-Base), no patch-embedding norm, no absolute position embedding,
    output = final LayerNorm + token average (1024-d for Swin-Base). See the module docstring.
    """

    output_fmt = "NC"

    def __init__(
        self,
        name: str = DEFAULT_SWIN,
        embedder: str | None = DEFAULT_EMBEDDER,
        embedder_index: int = 3,
        img_size: Sequence[int] | int = 448,
        stride: Sequence[int] | int | None = None,
        pretrained: bool = False,
        embedder_pretrained: bool | None = None,
        **swin_kwargs: Any,
    ) -> None:
        super().__init__()
        import timm
        from timm.layers import HybridEmbed

        img = _pair(img_size)
        if embedder in (None, "", "none"):
            self._init_plain(timm, name, img, stride, pretrained, swin_kwargs)
            return
        emb_pretrained = pretrained if embedder_pretrained is None else embedder_pretrained
        try:
            emb = create_timm_model(
                embedder, pretrained=emb_pretrained, features_only=True, out_indices=[int(embedder_index)], in_chans=3
            )
        except (RuntimeError, IndexError, AssertionError) as exc:
            raise HybridSwinConfigError(
                f"Hybrid-Swin: cannot create the embedder '{embedder}' with out_indices=[{embedder_index}]: {exc}"
            ) from exc
        reduction = int(emb.feature_info.reduction()[-1])
        if stride is not None:
            if not hasattr(emb, "conv_stem"):
                raise HybridSwinConfigError(
                    f"Hybrid-Swin: stride={stride} needs an EfficientNet-style embedder with 'conv_stem'; "
                    f"'{embedder}' has none. Drop model.backbone.stride."
                )
            st = _pair(stride)
            old = _pair(emb.conv_stem.stride)
            emb.conv_stem.stride = st
            reduction = reduction * st[0] // old[0]
        if img[0] % reduction or img[1] % reduction:
            raise HybridSwinConfigError(
                f"Hybrid-Swin: img_size {img} is not a multiple of the embedder's reduction {reduction} "
                f"('{embedder}', out index {embedder_index}, stride {stride})."
            )
        grid = (img[0] // reduction, img[1] // reduction)
        try:
            swin = create_timm_model(name, pretrained=pretrained, num_classes=0, **swin_kwargs)
        except RuntimeError as exc:
            raise HybridSwinConfigError(f"Hybrid-Swin: cannot create timm model '{name}': {exc}") from exc
        patch = _pair(getattr(swin.patch_embed, "patch_size", 4))
        if tuple(swin.patch_embed.grid_size) != grid:
            if pretrained:
                raise HybridSwinConfigError(
                    f"Hybrid-Swin: the embedder gives a {grid} grid but pretrained '{name}' has a "
                    f"{tuple(swin.patch_embed.grid_size)} patch grid; choose img_size/embedder_index/stride "
                    "so that they match (as the released models do)."
                )
            swin = timm.create_model(
                name, pretrained=False, num_classes=0, img_size=(grid[0] * patch[0], grid[1] * patch[1]),
                **swin_kwargs,
            )
        swin.patch_embed = HybridEmbed(
            emb, img_size=img, patch_size=1, feature_size=grid, in_chans=3, embed_dim=swin.embed_dim,
            output_fmt="NHWC",
        )
        self.swin = swin
        self.img_size = list(img)
        self.grid_size = list(grid)
        self.embedder_index = int(embedder_index)
        self.stride = None if stride is None else list(_pair(stride))
        self.num_features = int(swin.num_features)

    def _init_plain(self, timm: Any, name: str, img: tuple[int, int], stride: Any, pretrained: bool,
                    swin_kwargs: dict[str, Any]) -> None:
        """The Swin alone (paper step 1): its own patch embedding, built for ``img``."""
        if stride is not None:
            raise HybridSwinConfigError(
                "Hybrid-Swin: stride applies to the EfficientNet embedder; without an embedder (plain Swin) "
                "drop model.backbone.stride"
            )
        try:
            swin = timm.create_model(name, pretrained=pretrained, num_classes=0, img_size=img, **swin_kwargs)
        except RuntimeError as exc:
            raise HybridSwinConfigError(f"Hybrid-Swin: cannot create timm model '{name}' at {img}: {exc}") from exc
        self.swin = swin
        self.img_size = list(img)
        self.grid_size = list(swin.patch_embed.grid_size)
        self.embedder_index = None
        self.stride = None
        self.num_features = int(swin.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != tuple(self.img_size):
            raise HybridSwinConfigError(
                f"Hybrid-Swin expects {tuple(self.img_size)} inputs (the Swin window grid is fixed), "
                f"got {tuple(x.shape[-2:])}; set model.backbone.img_size / data.image_size accordingly."
            )
        return self.swin.forward_head(self.swin.forward_features(x), pre_logits=True)


def create_hybrid_swin(**kwargs: Any) -> HybridSwin:
    """Hybrid EfficientNet-Swin (GLR2021 1st place, Henkel): pooled 1024-d Swin-Base features.

    kwargs: ``name`` (timm Swin, default ``swin_base_patch4_window7_224``), ``embedder`` (timm
    EfficientNet; ``None``: the plain Swin, paper step 1), ``embedder_index`` (features_only out
    index: 1 or 3 as released), ``img_size``
    (input size; the Swin is built for ``img_size / reduction`` patches), ``stride`` (embedder
    first-conv stride, None keeps 2), ``pretrained``; other kwargs go to the timm Swin.
    """
    return HybridSwin(**kwargs)
