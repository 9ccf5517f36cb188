"""A :class:`~zoo.data.config.DataConfig`'s resize as tensor operations, for exported models.

``zoo embed`` resizes with PIL (:meth:`DataConfig.resize_uint8`). An exported model must do the same
inside its graph (TorchScript and ONNX, any input height and width), so :class:`ResizeUint8`
reproduces PIL's 8-bit resampling (``Image.resize`` without ``reducing_gap``; Pillow's
``libImaging/Resample.c``): the same filters and supports, coefficients normalised per output pixel and
rounded to 22-bit fixed point, two passes each rounded back to uint8 (horizontal first; Pillow >= 13
runs the vertical pass first when the height shrinks by more than twice the width's shrink), and
nearest as Pillow's incremental affine scan. Each pass is one matrix product in float64, in which the
fixed-point sums are exact, so the output equals PIL's pixel for pixel. The output size (long-side rule, square, timm's resize-then-centre-crop) is
computed in the graph from the input's shape with the same float64 arithmetic as
:meth:`DataConfig.resize_plan`, so the export is not tied to the size it was traced with.

Hand-written because no library does this in an exportable way: ``torch.nn.functional.interpolate``
with ``antialias=True`` is neither exportable by the TorchScript-based ONNX exporter nor rounded as
PIL rounds. Cost: the dense passes take ``O(H W w' + H w' h')`` multiply-adds per image (about 1 s on
a CPU core for a 12-megapixel photo), small next to the network for photos of a few hundred pixels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zoo.data.config import DataConfig

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point precision of 8-bit resampling coefficients
#: Pillow's hamming window constants are C floats (0.54f, 0.46f)
HAMMING_A, HAMMING_B = 0.5400000214576721, 0.46000000834465027
#: Pillow's filter supports (Resample.c)
SUPPORTS = {"box": 0.5, "bilinear": 1.0, "hamming": 1.0, "bicubic": 2.0, "lanczos": 3.0}


def _filter(name: str, x: torch.Tensor) -> torch.Tensor:
    """Pillow's resampling filter ``name`` evaluated at ``x`` (float64)."""
    ax = x.abs()
    zero = torch.zeros_like(x)
    if name == "box":
        return torch.where((x > -0.5) & (x <= 0.5), torch.ones_like(x), zero)
    if name == "bilinear":
        return torch.where(ax < 1.0, 1.0 - ax, zero)
    if name == "bicubic":
        a = -0.5
        near = ((a + 2.0) * ax - (a + 3.0)) * ax * ax + 1.0
        far = (((ax - 5.0) * ax + 8.0) * ax - 4.0) * a
        return torch.where(ax < 1.0, near, torch.where(ax < 2.0, far, zero))
    if name == "hamming":
        px = ax * math.pi
        safe = torch.where(ax == 0.0, torch.ones_like(px), px)
        val = torch.sin(safe) / safe * (HAMMING_A + HAMMING_B * torch.cos(safe))
        return torch.where(ax == 0.0, torch.ones_like(x), torch.where(ax >= 1.0, zero, val))
    if name == "lanczos":
        return torch.where((x >= -3.0) & (x < 3.0), _sinc(x) * _sinc(x / 3.0), zero)
    raise ValueError(f"no resampling filter '{name}'")


def _sinc(x: torch.Tensor) -> torch.Tensor:
    px = x * math.pi
    safe = torch.where(x == 0.0, torch.ones_like(px), px)
    return torch.where(x == 0.0, torch.ones_like(x), torch.sin(safe) / safe)


def resample_matrix(
    name: str, in_size: torch.Tensor, resized: torch.Tensor, offset: torch.Tensor, count: torch.Tensor
) -> torch.Tensor:
    """Fixed-point coefficients ``count x in_size`` (float64, integer-valued) of resizing ``in_size`` to
    ``resized`` pixels and keeping outputs ``offset .. offset + count - 1`` (Pillow's precompute_coeffs
    and normalize_coeffs_8bpc); for nearest, a 0/1 row per output selecting its source pixel.

    Sizes are int64 tensors of shape ``(1,)``: the TorchScript-based ONNX exporter computes 0-d
    float64 tensors in float32, which moves coefficients by a few 2^-22 steps.
    """
    f64 = torch.float64
    n = in_size.to(f64)
    scale = n / resized.to(f64)
    j = torch.arange(in_size.reshape(()), dtype=f64).unsqueeze(0)
    one = float(1 << PRECISION_BITS)
    if name == "nearest":
        # Pillow's ImagingScaleAffine: position p_0 = scale / 2, p_k = p_(k-1) + scale (added one by one,
        # as in C), source pixel floor(p_k)
        steps = torch.arange((count + offset).reshape(()), dtype=f64)
        pos = torch.cumsum(torch.where(steps == 0.0, scale * 0.5, scale + steps * 0.0), 0)
        src = torch.minimum(torch.floor(pos[offset.reshape(()):]), n - 1.0).unsqueeze(1)
        return (j == src).to(f64)
    i = (torch.arange(count.reshape(()), dtype=f64) + offset.to(f64)).unsqueeze(1)
    filterscale = torch.clamp(scale, min=1.0)
    support = SUPPORTS[name] * filterscale
    center = (i + 0.5) * scale
    # Pillow's window [xmin, xmax): where it differs from the filter's own support is a rounding edge
    xmin = torch.clamp(torch.floor(center - support + 0.5), min=0.0)
    xmax = torch.minimum(torch.floor(center + support + 0.5), n)
    window = (j >= xmin) & (j < xmax)
    k = torch.where(window, _filter(name, (j - center + 0.5) * (1.0 / filterscale)), torch.zeros_like(j * center))
    total = k.sum(1, keepdim=True)
    k = k / torch.where(total == 0.0, torch.ones_like(total), total)
    return torch.sign(k) * torch.floor(k.abs() * one + 0.5)


def _round_uint8(acc: torch.Tensor) -> torch.Tensor:
    """Pillow's clip8: ``(sum + 2^21) >> 22`` clipped to 0..255 (exact in float64)."""
    half = float(1 << (PRECISION_BITS - 1))
    return torch.clamp(torch.floor((acc + half) * (1.0 / float(1 << PRECISION_BITS))), 0.0, 255.0)


class ResizeUint8(nn.Module):
    """uint8 ``B x 3 x H x W`` -> float32 ``B x 3 x h x w`` holding exactly PIL's uint8 resize of each image
    by ``data_config`` (size rule, interpolation, optional centre crop); traceable with dynamic H, W."""

    def __init__(self, data_config: DataConfig, pillow_version: str | None = None) -> None:
        super().__init__()
        self.data_config = data_config
        self.interpolation = data_config.interpolation
        if self.interpolation != "nearest" and self.interpolation not in SUPPORTS:
            raise ValueError(f"no resampling filter '{self.interpolation}'")
        if pillow_version is None:
            import PIL

            pillow_version = PIL.__version__
        #: Pillow >= 13 may run the vertical pass first (ImagingResampleInner)
        self.vertical_first_rule = int(pillow_version.split(".")[0]) >= 13

    def plan(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(h, w, resized_h, resized_w, top, left, out_h, out_w)`` as int64 tensors of shape ``(1,)``
        (:meth:`DataConfig.resize_plan` in the graph)."""
        dc = self.data_config
        shape = torch._shape_as_tensor(x)
        h, w = shape[2:3], shape[3:4]
        hf, wf = h.to(torch.float64), w.to(torch.float64)
        s = float(dc.input_size)
        one = torch.ones_like(h)
        if dc.resize == "long_side":
            scale = s / torch.maximum(hf, wf)
            rh = torch.clamp(torch.round(hf * scale), min=1.0).to(torch.int64)
            rw = torch.clamp(torch.round(wf * scale), min=1.0).to(torch.int64)
            zero = h * 0
            return h, w, rh, rw, zero, zero, rh, rw
        size = one * dc.input_size
        if dc.crop_pct is None:
            zero = h * 0
            return h, w, size, size, zero, zero, size, size
        short = float(math.floor(dc.input_size / dc.crop_pct))
        portrait = hf > wf
        rh = torch.where(portrait, torch.floor(short * hf / wf), hf * 0 + short)
        rw = torch.where(portrait, wf * 0 + short, torch.floor(short * wf / hf))
        top = torch.round((rh - s) / 2.0).to(torch.int64)
        left = torch.round((rw - s) / 2.0).to(torch.int64)
        return h, w, rh.to(torch.int64), rw.to(torch.int64), top, left, size, size

    def matrices(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The resize of ``height x width`` images outside a graph: ``(vertical oh x H, horizontal W x ow,
        vertical_first)``, float64 CPU matrices and the pass order (:meth:`forward` computes both orders
        and blends, to stay traceable). Callers resizing many images of one size (``zoo embed`` decoding
        JPEGs on the GPU) compute them once, move them to their device and use :meth:`apply_matrices`."""
        h, w, rh, rw, top, left, oh, ow = self.plan(torch.empty(1, 3, int(height), int(width), device="meta"))
        horizontal = resample_matrix(self.interpolation, w, rw, left, ow).transpose(0, 1).contiguous()
        vertical = resample_matrix(self.interpolation, h, rh, top, oh)
        shrink_h, shrink_w = int(h - rh), int(w - rw)
        vertical_first = (self.vertical_first_rule and self.interpolation != "nearest"
                          and shrink_h > 0 and shrink_h > shrink_w * 2)
        return vertical, horizontal, vertical_first

    def apply_matrices(
        self, images: torch.Tensor, vertical: torch.Tensor, horizontal: torch.Tensor, vertical_first: bool
    ) -> torch.Tensor:
        """float64 ``B x 3 x H x W`` -> float32 ``B x 3 x h x w`` with :meth:`matrices` (equal to :meth:`forward`)."""
        if self.interpolation == "nearest":
            return torch.matmul(vertical, torch.matmul(images, horizontal)).to(torch.float32)
        if vertical_first:
            return _round_uint8(torch.matmul(_round_uint8(torch.matmul(vertical, images)), horizontal)).to(torch.float32)
        return _round_uint8(torch.matmul(vertical, _round_uint8(torch.matmul(images, horizontal)))).to(torch.float32)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w, rh, rw, top, left, oh, ow = self.plan(images)
        x = images.to(torch.float64)
        # the sizes and coefficients are computed from the (CPU) shape tensor; type_as moves them to the
        # images' device inside the graph, so a traced export also runs on a GPU
        horizontal = resample_matrix(self.interpolation, w, rw, left, ow).transpose(0, 1).type_as(x)  # W x ow
        vertical = resample_matrix(self.interpolation, h, rh, top, oh).type_as(x)  # oh x H
        if self.interpolation == "nearest":  # pixel selection, nothing to round
            return torch.matmul(vertical, torch.matmul(x, horizontal)).to(torch.float32)
        out = _round_uint8(torch.matmul(vertical, _round_uint8(torch.matmul(x, horizontal))))
        if self.vertical_first_rule:
            shrink_h, shrink_w = h - rh, w - rw
            vertical_first = ((shrink_h > 0) & (shrink_h > shrink_w * 2)).type_as(x)  # 0/1: an exact blend
            other = _round_uint8(torch.matmul(_round_uint8(torch.matmul(vertical, x)), horizontal))
            out = other * vertical_first + out * (1.0 - vertical_first)
        return out.to(torch.float32)
