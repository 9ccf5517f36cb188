"""Plain linear classifier head (softmax baseline; e.g. the GLR2019 Xception's ``Linear(8192, C)``).

Unlike the ArcFace heads it returns unnormalised logits, to be used with ``cross_entropy``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LinearHead(nn.Module):
    """``Linear(D, C)`` head (seed: GLR2019 TylerYep ``CustomClassifier.linear``); bias on by default.

    Keys: ``weight (C, D)``, ``bias (C,)``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the nn.Linear default init
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def num_classes(self) -> int:
        return self.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
