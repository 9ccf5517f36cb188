"""Compact bilinear pooling (Gao et al. 2016) with count sketches, as used by GLR2019 (seed 003).

``CountSketch`` holds buffers ``h`` (int64 bucket per input dim, uniform in [0, d)) and ``s`` (+-1
float sign), drawn from torch's RNG at construction; they are part of the state dict, so a loaded
checkpoint brings its own sketches. ``CompactBilinearPooling(x, y) = irfft(rfft(CS1(x)) * rfft(CS2(y)))``
with ``n = d`` — a circular convolution of the two sketches (upstream used the removed
``torch.rfft``; this is the ``torch.fft`` equivalent). No signed square root or normalisation,
as upstream.
"""

from __future__ import annotations

import torch
from torch import nn


class CountSketch(nn.Module):
    def __init__(self, input_dim: int, output_dim: int) -> None:
        super().__init__()
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.register_buffer("h", torch.randint(0, self.output_dim, (self.input_dim,), dtype=torch.int64))
        self.register_buffer("s", torch.randint(0, 2, (self.input_dim,)).float() * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(x.shape[0], self.output_dim)
        return out.index_add_(1, self.h, x * self.s.to(x.dtype))


class CompactBilinearPooling(nn.Module):
    """``(B, d1), (B, d2) -> (B, d)``; defaults follow GLR2019: 2048 x 2048 -> 8192."""

    def __init__(self, input_dim1: int = 2048, input_dim2: int = 2048, output_dim: int = 8192) -> None:
        super().__init__()
        self.output_dim = int(output_dim)
        self.sketch1 = CountSketch(input_dim1, output_dim)
        self.sketch2 = CountSketch(input_dim2, output_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = x if y is None else y
        dtype = x.dtype
        a = torch.fft.rfft(self.sketch1(x.float()), dim=1)
        b = torch.fft.rfft(self.sketch2(y.float()), dim=1)
        return torch.fft.irfft(a * b, n=self.output_dim, dim=1).to(dtype)
