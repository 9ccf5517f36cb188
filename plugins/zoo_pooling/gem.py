"""Generalized-mean (GeM) pooling.

Seeds: GLR2021 1st place (Henkel, ``models/ch_mdl_*.py``), GLR2021 top-100 (Timakin,
``custom/model.py``) and Henkel & Singer 2020 (``src/models.py``), all sharing
``gem(x, p, eps) = avg_pool2d(x.clamp(min=eps).pow(p), (H, W)).pow(1/p)`` with ``p`` initialised
to 3 and ``eps = 1e-6``. GUIE 2022 (``GUIE/models/Pooling.py``) registers ``p`` as a parameter
with ``requires_grad=p_trainable``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_P = 3.0
DEFAULT_EPS = 1e-6


def gem(x: torch.Tensor, p: torch.Tensor | float = DEFAULT_P, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """GeM over the spatial dims of ``B x C x H x W`` -> ``B x C x 1 x 1``.

    Computed in float32 (``x**p`` overflows fp16 for activations above ~40 with p=3), returned
    in the input's dtype so the module is AMP-safe.
    """
    dtype = x.dtype
    xf = x.float()
    pf = p.float() if isinstance(p, torch.Tensor) else float(p)
    out = F.avg_pool2d(xf.clamp(min=eps).pow(pf), (xf.size(-2), xf.size(-1))).pow(1.0 / pf)
    return out.to(dtype)


class GeM(nn.Module):
    """GeM pooling ``B x C x H x W -> B x C`` (seeds: GLR2021 1st/top-100, Henkel & Singer 2020).

    Defaults ``p=3.0``, ``p_trainable=True``, ``eps=1e-6`` as upstream. ``p`` is always a parameter
    of shape ``(1,)`` (state-dict key ``<prefix>.p``, as the upstream trainable GeM saves it); with
    ``p_trainable=False`` it is frozen (``requires_grad=False``, the GUIE convention) instead of a
    python number, so the upstream ``__repr__`` crash on a fixed ``p`` cannot happen here.
    ``flatten=False`` keeps the ``B x C x 1 x 1`` map (what the DOLG branch consumes).
    """

    def __init__(
        self,
        p: float = DEFAULT_P,
        p_trainable: bool = True,
        eps: float = DEFAULT_EPS,
        flatten: bool = True,
    ) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM: p must be > 0, got {p}")
        self.p = nn.Parameter(torch.ones(1) * float(p), requires_grad=bool(p_trainable))
        self.eps = float(eps)
        self.flatten = bool(flatten)

    @property
    def p_trainable(self) -> bool:
        return self.p.requires_grad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = gem(x, self.p, self.eps)
        return out.flatten(1) if self.flatten else out

    def extra_repr(self) -> str:
        p = float(self.p.detach().float().reshape(-1)[0]) if self.p.device.type != "meta" else float("nan")
        return f"p={p:.4f}, eps={self.eps:g}, p_trainable={self.p_trainable}"
