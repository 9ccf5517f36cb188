"""DOLG-EfficientNet: deep orthogonal fusion of local and global features on an EfficientNet.

Seed: GLR2021 1st place (Henkel, seed ``001_16109c5d2f066637``; upstream
``ChristofHenkel/kaggle-landmark-2021-1st-place``, ``models/ch_mdl_dolg_efficientnet.py``).

Structure as released (SEED_SYSTEMS §2.1), with the upstream attribute names so that checkpoints map
one-to-one (``encoder`` holds what upstream calls ``backbone``):

* ``encoder``: timm EfficientNet ``features_only`` tapping the stride-16 map (``blocks.4``, local
  branch) and the stride-32 map (``blocks.6``, global branch); ``stride=(1, 1)`` sets the first
  convolution's stride (upstream ``cfg.stride``, B7 step 3), halving every reduction.
* ``mam``: :class:`MultiAtrousModule`, three 3x3 convs with ``dilations`` (B5 ``[6, 12, 18]``,
  B6/B7 ``[3, 6, 9]``) to 512 channels each, no BN/ReLU per branch, concat 1536 -> 1x1 conv to
  1024 -> ReLU.
* ``attention2d``: :class:`SpatialAttention2d`, 1x1 conv -> BN -> (L2-normalised map taken here) ->
  ReLU -> 1x1 conv to 1 -> Softplus(beta=1, threshold=20); output ``att * normalised map``.
* ``conv_g`` (1x1 to 1024) -> ``bn_g`` (BatchNorm2d eps=1e-3, momentum=0.1) -> SiLU ->
  ``global_pool`` (GeM p=3, trainable) -> 1024-d global vector. The GeM is the registered ``gem``
  pooling, named in the recipe (``global_pool: {component: pooling, type: gem, p: 3.0}``) and
  built by :func:`zoo.assembly.build_nested_components`: plugins never import each other.
* :class:`OrthogonalFusion`: ``proj = (fg . fl_ij) / ||fg|| * fg`` (the released code divides by
  ``||fg||``; the DOLG paper's ``||fg||^2`` is ``fusion="paper"``); output ``cat([fl - proj, fg])``,
  2048 channels.

The module returns the fused ``B x 2048 x H x W`` map (``output_fmt="NCHW"``): the recipe's
``pooling: {type: avg}`` is upstream's ``fusion_pool`` and ``neck: {type: option_d}`` its neck.
CPU/GPU agnostic; the fusion and the GeM run in float32 under autocast.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.registry import ZooError
from zoo_backbones.library_pretrained import create_timm_model

#: Upstream constants (``ch_mdl_dolg_efficientnet.py`` / ``default_config.py``).
DEFAULT_DILATIONS: tuple[int, int, int] = (6, 12, 18)
ATROUS_CHANNELS = 512
LOCAL_DIM = 1024
GLOBAL_DIM = 1024
BN_G_EPS = 1e-3
BN_G_MOMENTUM = 0.1
FUSION_MODES = ("released", "paper")

#: a tiny CPU build for the registry-wide contract tests
TEST_KWARGS: dict[str, Any] = {
    "name": "tf_efficientnet_b0",
    "pretrained": False,
    "dilations": [1, 2, 3],
    "local_dim": 32,
    "global_dim": 32,
    "atrous_channels": 16,
    "global_pool": {"component": "pooling", "type": "gem", "p": 3.0, "p_trainable": True},
}


class DolgConfigError(ZooError):
    """DOLG-EfficientNet arguments that cannot build a model."""


class MultiAtrousModule(nn.Module):
    """Local branch of Henkel's DOLG: three dilated 3x3 convs (``d0``, ``d1``, ``d2``), concat, 1x1, ReLU.

    Seed GLR2021 1st (``MultiAtrousModule``): ``atrous_channels=512`` per branch, ``out_chans=1024``,
    ``padding='same'``, bias on every conv, no BN and no image-pooling branch.
    """

    def __init__(
        self, in_chans: int, out_chans: int, dilations: Sequence[int], atrous_channels: int = ATROUS_CHANNELS
    ) -> None:
        super().__init__()
        if len(dilations) != 3:
            raise DolgConfigError(f"DOLG needs exactly three dilations (e.g. [6, 12, 18]), got {list(dilations)}")
        self.d0 = nn.Conv2d(in_chans, atrous_channels, 3, dilation=int(dilations[0]), padding="same")
        self.d1 = nn.Conv2d(in_chans, atrous_channels, 3, dilation=int(dilations[1]), padding="same")
        self.d2 = nn.Conv2d(in_chans, atrous_channels, 3, dilation=int(dilations[2]), padding="same")
        self.conv1 = nn.Conv2d(atrous_channels * 3, out_chans, kernel_size=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.d0(x), self.d1(x), self.d2(x)], dim=1)
        return self.relu(self.conv1(x))


class SpatialAttention2d(nn.Module):
    """DOLG spatial attention (seed GLR2021 1st, ``SpatialAttention2d``).

    ``conv1`` 1x1 -> ``bn`` -> L2-normalised map (after BN, before ReLU, as released) -> ReLU ->
    ``conv2`` 1x1 to one channel -> Softplus(beta=1, threshold=20). Returns ``att * normalised map``
    and the attention scores.
    """

    def __init__(self, in_c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, in_c, 1, 1)
        self.bn = nn.BatchNorm2d(in_c)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(in_c, 1, 1, 1)
        self.softplus = nn.Softplus(beta=1, threshold=20)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.bn(self.conv1(x))
        feature_map_norm = F.normalize(x, p=2, dim=1)
        att_score = self.softplus(self.conv2(self.act1(x)))
        return att_score.expand_as(feature_map_norm) * feature_map_norm, att_score


class OrthogonalFusion(nn.Module):
    """Orthogonal fusion of a local map ``fl`` (B x C x H x W) with a global vector ``fg`` (B x C).

    Seed GLR2021 1st (``OrthogonalFusion``): ``mode="released"`` divides the projection by ``||fg||``
    exactly as the released code does (so the result is *not* orthogonal to ``fg``); ``mode="paper"``
    divides by ``||fg||^2`` (DOLG paper, GUIE ``DOLG.py``). Output ``cat([fl - proj, fg], dim=1)``
    (2C channels). Computed in float32 (AMP-safe), returned in ``fl``'s dtype.
    """

    def __init__(self, mode: str = "released") -> None:
        super().__init__()
        if mode not in FUSION_MODES:
            raise DolgConfigError(f"DOLG fusion must be one of {FUSION_MODES}, got '{mode}'")
        self.mode = mode

    def forward(self, fl: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
        dtype = fl.dtype
        fl32, fg32 = fl.float(), fg.float()
        b, c, h, w = fl32.shape
        fl_dot_fg = torch.bmm(fg32[:, None, :], fl32.reshape(b, c, -1)).reshape(b, 1, h, w)
        fg_norm = torch.norm(fg32, dim=1)
        denom = fg_norm if self.mode == "released" else fg_norm.pow(2)
        fl_proj = (fl_dot_fg / denom[:, None, None, None]) * fg32[:, :, None, None]
        fl_orth = fl32 - fl_proj
        fused = torch.cat([fl_orth, fg32[:, :, None, None].expand(b, c, h, w)], dim=1)
        return fused.to(dtype)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


class DolgEfficientNet(nn.Module):
    """DOLG-EfficientNet backbone returning the fused ``B x 2048 x H/16 x W/16`` map.

    Seed GLR2021 1st place (Henkel), constants: local/global dim 1024, atrous channels 512,
    dilations ``[6, 12, 18]`` (B5) / ``[3, 6, 9]`` (B6, B7), ``bn_g`` eps 1e-3 momentum 0.1,
    GeM p=3 trainable, released fusion (``/||fg||``). See the module docstring.
    """

    output_fmt = "NCHW"

    def __init__(
        self,
        name: str = "tf_efficientnet_b5.ns_jft_in1k",
        pretrained: bool = False,
        dilations: Sequence[int] = DEFAULT_DILATIONS,
        stride: Sequence[int] | int | None = None,
        fusion: str = "released",
        local_dim: int = LOCAL_DIM,
        global_dim: int = GLOBAL_DIM,
        atrous_channels: int = ATROUS_CHANNELS,
        global_pool: nn.Module | None = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()

        if not isinstance(global_pool, nn.Module):
            raise DolgConfigError(
                f"DOLG needs its global-branch pooling as a built module, got {type(global_pool).__name__}; "
                "set model.backbone.global_pool: {component: pooling, type: gem, p: 3.0} in the recipe "
                "(built through the registry by zoo.assembly.build_nested_components)"
            )
        if local_dim != global_dim:
            raise DolgConfigError(
                f"DOLG fuses local and global features by a dot product: local_dim ({local_dim}) must "
                f"equal global_dim ({global_dim})"
            )
        try:
            self.encoder = create_timm_model(
                name, pretrained=pretrained, features_only=True, out_indices=(3, 4), in_chans=3, **timm_kwargs
            )
        except RuntimeError as exc:
            raise DolgConfigError(f"DOLG: cannot create timm encoder '{name}': {exc}") from exc
        if stride is not None:
            if not hasattr(self.encoder, "conv_stem"):
                raise DolgConfigError(
                    f"DOLG: stride={stride} needs an EfficientNet-style encoder with 'conv_stem'; "
                    f"'{name}' has none. Drop model.backbone.stride."
                )
            st = (int(stride), int(stride)) if isinstance(stride, int) else tuple(int(s) for s in stride)
            self.encoder.conv_stem.stride = st
        self.stride = None if stride is None else list(self.encoder.conv_stem.stride)
        local_in, global_in = self.encoder.feature_info.channels()[-2:]
        self.dilations = [int(d) for d in dilations]
        self.mam = MultiAtrousModule(local_in, local_dim, self.dilations, atrous_channels)
        self.attention2d = SpatialAttention2d(local_dim)
        self.conv_g = nn.Conv2d(global_in, global_dim, kernel_size=1)
        self.bn_g = nn.BatchNorm2d(global_dim, eps=BN_G_EPS, momentum=BN_G_MOMENTUM)
        self.act_g = nn.SiLU()
        self.global_pool = global_pool  # B x C x H x W -> B x C (upstream: GeM p=3, trainable)
        self.fusion = OrthogonalFusion(fusion)
        self.num_features = local_dim + global_dim

    def forward_branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The attended local map ``B x 1024 x h x w`` and the global vector ``B x 1024``."""
        x_l, x_g = self.encoder(x)
        x_l, _ = self.attention2d(self.mam(x_l))
        x_g = self.global_pool(self.act_g(self.bn_g(self.conv_g(x_g))))
        return x_l, x_g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_l, x_g = self.forward_branches(x)
        return self.fusion(x_l, x_g)


def create_dolg_efficientnet(**kwargs: Any) -> DolgEfficientNet:
    """DOLG-EfficientNet (GLR2021 1st place, Henkel): fused 2048-channel map at stride 16.

    kwargs: ``name`` (timm EfficientNet, default ``tf_efficientnet_b5.ns_jft_in1k``), ``pretrained``,
    ``dilations`` ([6, 12, 18]), ``stride`` (first-conv stride, None keeps 2), ``fusion``
    ("released" = ``/||fg||``, "paper" = ``/||fg||^2``), ``local_dim``/``global_dim`` (1024),
    ``atrous_channels`` (512), ``global_pool`` (a built pooling module: the registered ``gem`` with
    p=3 trainable, from ``{component: pooling, type: gem, p: 3.0}``); other kwargs go to timm.
    """
    return DolgEfficientNet(**kwargs)
