"""Cosine classification heads: ArcMarginProduct and its sub-center variant.

Seeds (SEED_SYSTEMS.md section 0.1/0.2):

* ``ArcMarginProduct`` (GLR2021 1st, GUIE 2022 2nd, GLR2021 top-100, Henkel & Singer 2020): weight
  ``(C, D)``, ``xavier_uniform_`` init, returns ``cos = F.linear(normalize(x), normalize(W))``.
* ``ArcMarginProduct_subcenter`` (GLR2020 3rd place, GLR2021 1st, GLR2021 top-100): weight
  ``(C * k, D)`` with k = 3 sub-centers, **class-major rows** (row ``c * k + j`` is sub-center ``j``
  of class ``c``), init ``uniform_(-1/sqrt(D), 1/sqrt(D))`` (GUIE's variant uses xavier), forward
  ``cos_all.view(-1, C, k).max(dim=2)``.

Both return raw cosines: no scale and no margin (the margin lives in the loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_SUBCENTERS = 3
INITS = ("uniform", "xavier")


class ArcMarginProduct(nn.Module):
    """Plain cosine head (seed: GUIE 2022 2nd / Henkel & Singer 2020): weight ``(C, D)``, xavier init."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)

    @property
    def num_classes(self) -> int:
        return self.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x), F.normalize(self.weight))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class SubCenterArcMarginProduct(nn.Module):
    """Sub-center cosine head (seed: GLR2020 3rd place; defaults ``k=3``, uniform ±1/sqrt(D) init).

    ``weight`` has shape ``(C * k, D)`` with class-major rows; ``forward`` returns the max cosine
    over each class's ``k`` sub-centers (``B x C``). ``init="xavier"`` gives GUIE's variant.
    """

    def __init__(
        self, in_features: int, out_features: int, k: int = DEFAULT_SUBCENTERS, init: str = "uniform"
    ) -> None:
        super().__init__()
        if int(k) < 1:
            raise ValueError(f"sub-center head: k (subcenters) must be >= 1, got {k}")
        if init not in INITS:
            raise ValueError(f"sub-center head: init must be one of {INITS}, got '{init}'")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.k = int(k)
        self.init = init
        self.weight = nn.Parameter(torch.empty(self.out_features * self.k, self.in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.init == "xavier":
            nn.init.xavier_uniform_(self.weight)
        else:
            stdv = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.weight, -stdv, stdv)

    @property
    def num_classes(self) -> int:
        return self.out_features

    def subcenter_cosines(self, x: torch.Tensor) -> torch.Tensor:
        """All cosines ``B x C x k`` (sub-center ``j`` of class ``c`` at ``[:, c, j]``)."""
        cos_all = F.linear(F.normalize(x), F.normalize(self.weight))
        return cos_all.view(-1, self.out_features, self.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.subcenter_cosines(x).amax(dim=2)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, k={self.k}, init={self.init}"
