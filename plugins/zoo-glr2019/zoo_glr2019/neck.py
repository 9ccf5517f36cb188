"""GLR2019 classifier body as a zoo neck: CBP of the pooled vector with itself, then attention.

Upstream ``CustomClassifier(2048)``: ``CompactBilinearPooling(2048, 2048, 8192)`` on the max-pooled
2048-d vector, ``view(B, 32, 16, 16)``, ``SpatialAttn``, flatten to 8192 (then ``Linear(8192, C)``,
the zoo ``linear`` head). ``attention='self'`` is the ``SelfAttnClassifier`` alternative (SAGAN
block on the ``(B, 32, s, s)`` view), ``'none'`` keeps the plain sketch. The embedding is the
flattened 8192-d output (``out_features``); it must be 32 * s * s for the attention views.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zoo.registry import ZooError
from zoo_glr2019.attention import SelfAttention, SpatialAttention
from zoo_glr2019.cbp import CompactBilinearPooling


class CBPAttentionNeck(nn.Module):
    def __init__(self, in_features: int = 2048, out_features: int = 8192, attention: str = "spatial",
                 channels: int = 32) -> None:
        super().__init__()
        side = math.isqrt(out_features // channels) if out_features % channels == 0 else 0
        if attention != "none" and side * side * channels != out_features:
            raise ZooError(
                f"cbp_attention: out_features={out_features} must be {channels} * s * s for the "
                f"attention view (e.g. 8192 = 32 x 16 x 16); set model.embedding_dim accordingly"
            )
        if attention not in ("spatial", "self", "none"):
            raise ZooError(f"cbp_attention: attention must be spatial, self or none (got '{attention}')")
        self.bilinearpool = CompactBilinearPooling(in_features, in_features, out_features)
        self.channels, self.side, self.attention = channels, side, attention
        self.attn = {"spatial": SpatialAttention(), "self": SelfAttention(channels), "none": nn.Identity()}[attention]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bilinearpool(x.flatten(1))
        if self.attention == "none":
            return z
        z = z.reshape(z.shape[0], self.channels, self.side, self.side)
        return self.attn(z).flatten(1)


def create_cbp_attention(in_features: int, out_features: int, **kwargs) -> CBPAttentionNeck:
    """GLR2019 compact bilinear pooling (2048x2048 -> 8192) + spatial attention (or SAGAN 'self')."""
    return CBPAttentionNeck(in_features, out_features, **kwargs)
