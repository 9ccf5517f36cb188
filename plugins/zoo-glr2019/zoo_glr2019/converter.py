"""Converter ``glr2019-xception``: TylerYep/landmark ``Xception`` state dicts -> zoo (seed 003).

Upstream keys (280 for the spatial-attention model): ``xception._features.{i}.*`` — the children
of pretrainedmodels' Xception in registration order (conv1, bn1, relu, conv2, bn2, block1..block12,
conv3, bn3, conv4, bn4) — ``xception._classifier.bilinearpool.sketch{1,2}.{h,s}`` and
``xception._classifier.linear.{weight,bias}``. timm ``legacy_xception`` has the same modules under
their names, so the mapping is by index; block internals (``rep.{j}``, ``skip``, ``skipbn``) and
SeparableConv2d (``conv1``, ``pointwise``) keep their names.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from zoo.weights.convert import ConversionError

FEATURE_NAMES = {0: "conv1", 1: "bn1", 3: "conv2", 4: "bn2", 17: "conv3", 18: "bn3", 19: "conv4", 20: "bn4"}
FEATURE_NAMES.update({4 + i: f"block{i}" for i in range(1, 13)})  # 5..16

CLASSIFIER_MAP = {
    "bilinearpool.": "neck.bilinearpool.",
    "attn.": "neck.attn.",
    "linear.": "head.",
}


def convert(state_dict: dict[str, torch.Tensor], cfg: Any) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"xception\._features\.(\d+)\.(.+)", key)
        if m:
            idx = int(m.group(1))
            if idx not in FEATURE_NAMES:
                raise ConversionError(f"glr2019-xception: unexpected feature index {idx} in '{key}'")
            out[f"backbone.net.{FEATURE_NAMES[idx]}.{m.group(2)}"] = value
            continue
        if key.startswith("xception._classifier."):
            rest = key[len("xception._classifier."):]
            prefix = next((p for p in CLASSIFIER_MAP if rest.startswith(p)), None)
            if prefix is None:
                raise ConversionError(f"glr2019-xception: unknown classifier key '{key}'")
            out[CLASSIFIER_MAP[prefix] + rest[len(prefix):]] = value
            continue
        out[key] = value  # left for the strict check to report as unexpected
    return out
