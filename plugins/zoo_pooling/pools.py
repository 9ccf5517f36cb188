"""Global average and max pooling, ``B x C x H x W -> B x C``.

Seeds: GLR2020 3rd place (haqishen ``models.py``) pools with the backbone's built-in global
**average** pool after ``conv_head``/``bn2``/act (geffnet; ResNeSt's ``avgpool``; ReXNet's
``AdaptiveAvgPool2d(1)``). GLR2019 (TylerYep ``models.py``) pools the Xception map with
``nn.AdaptiveMaxPool2d(1)``. No constants.
"""

from __future__ import annotations

import torch
from torch import nn


class AvgPool(nn.Module):
    """Global average pooling (GLR2020 3rd place); no parameters, no state-dict keys."""

    def __init__(self, flatten: bool = True) -> None:
        super().__init__()
        self.flatten = bool(flatten)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.mean(dim=(-2, -1), keepdim=not self.flatten)
        return out


class MaxPool(nn.Module):
    """Global max pooling (GLR2019 Xception, ``AdaptiveMaxPool2d(1)``); no parameters."""

    def __init__(self, flatten: bool = True) -> None:
        super().__init__()
        self.flatten = bool(flatten)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(-2, -1), keepdim=not self.flatten)
