"""Xception feature extractor as the GLR2019 model ran it (seed 003_dfb5eb3822d11d7c).

Upstream builds ``cnn_finetune.make_model('xception', ...)``: the features are
``nn.Sequential(*pretrainedmodels_xception.children()[:-1])`` = conv1, bn1, relu (shared), conv2,
bn2, block1..block12, conv3, bn3, conv4, bn4. Run in that order the ReLUs after ``bn2``/``bn3`` and
the final ReLU never happen. ``cnn_finetune_relus=True`` (default) reproduces that for checkpoint
parity; ``False`` gives the standard Xception forward (timm ``legacy_xception.forward_features``).
Input 299 x 299, output 2048 x 10 x 10 (NCHW).
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from zoo.registry import ZooError


class XceptionGLR2019(nn.Module):
    """timm ``legacy_xception`` (same weights layout as pretrainedmodels Xception) held as ``net``."""

    output_fmt = "NCHW"

    def __init__(self, name: str = "legacy_xception", pretrained: bool = False,
                 cnn_finetune_relus: bool = True, **timm_kwargs) -> None:
        super().__init__()
        self.net = timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool="", **timm_kwargs)
        self.num_features = int(self.net.num_features)
        self.is_xception = all(hasattr(self.net, a) for a in ("conv1", "bn1", "conv2", "bn2", "conv3", "conv4"))
        if cnn_finetune_relus and not self.is_xception:
            raise ZooError(
                f"xception_glr2019: cnn_finetune_relus=True needs an Xception backbone (got '{name}'); "
                "set model.backbone.cnn_finetune_relus=false for other timm models"
            )
        self.cnn_finetune_relus = cnn_finetune_relus

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cnn_finetune_relus:
            return self.net.forward_features(x)
        n = self.net
        x = n.act1(n.bn1(n.conv1(x)))
        x = n.bn2(n.conv2(x))  # no ReLU here in the upstream Sequential
        for i in range(1, 13):
            x = getattr(n, f"block{i}")(x)
        x = n.bn3(n.conv3(x))  # nor here
        return n.bn4(n.conv4(x))  # nor a final one


def create_xception_glr2019(**kwargs) -> XceptionGLR2019:
    """GLR2019 Xception features (cnn_finetune Sequential semantics by default); 2048-d, 299 px."""
    return XceptionGLR2019(**kwargs)
