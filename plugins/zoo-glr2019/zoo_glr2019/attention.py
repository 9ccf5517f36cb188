"""The two attention blocks of GLR2019's classifier (seed 003, ``layers/``).

* ``SpatialAttention``: sum over channels -> softmax over the H*W positions -> reweight every channel.
* ``SelfAttention``: SAGAN block — 1x1 query/key convs to C/8, value conv C -> C, softmax over
  positions, ``out = gamma * attended + x`` with ``gamma`` initialised to 0.
"""

from __future__ import annotations

import torch
from torch import nn


class SpatialAttention(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        weights = torch.softmax(x.sum(1).reshape(b, h * w), dim=1).reshape(b, 1, h, w)
        return x * weights


class SelfAttention(nn.Module):
    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        inner = max(1, channels // 8)
        self.query_conv = nn.Conv2d(channels, inner, 1)
        self.key_conv = nn.Conv2d(channels, inner, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query_conv(x).reshape(b, -1, h * w).transpose(1, 2)  # B x N x C'
        k = self.key_conv(x).reshape(b, -1, h * w)  # B x C' x N
        attn = torch.softmax(torch.bmm(q, k), dim=-1)  # B x N x N
        v = self.value_conv(x).reshape(b, c, h * w)
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(b, c, h, w)
        return self.gamma * out + x
