"""torchvision ``mobilenet_v2`` layout -> timm ``mobilenetv2_100``.

torchvision: ``features.0`` (3x3 stem conv + BN), ``features.1`` (depthwise-separable block:
``conv.0.0`` dw, ``conv.0.1`` BN, ``conv.1`` pw, ``conv.2`` BN), ``features.2..17`` (inverted
residuals: ``conv.0`` expand, ``conv.1`` dw, ``conv.2`` project, ``conv.3`` BN), ``features.18``
(1x1 head conv + BN), ``classifier.1`` (Linear). timm's ``mobilenetv2_100`` is the same network
(ReLU6, symmetric padding, BN eps 1e-5) under other names, so tensors are copied unchanged.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from zoo.weights.convert import ConversionError
from zoo_converters.block_layout import group_by_width

_DS = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}
_IR = {"conv.0.0": "conv_pw", "conv.0.1": "bn1", "conv.1.0": "conv_dw", "conv.1.1": "bn2",
       "conv.2": "conv_pwl", "conv.3": "bn3"}
_KEY = re.compile(r"^features\.(\d+)\.(.+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


def convert(state_dict: dict[str, torch.Tensor], cfg: Any = None) -> dict[str, torch.Tensor]:
    """Rename a torchvision MobileNetV2 state dict to timm ``mobilenetv2_100`` keys."""
    feats: dict[int, dict[str, torch.Tensor]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("classifier.1."):
            out["classifier." + key[len("classifier.1."):]] = value
            continue
        m = _KEY.match(key)
        if not m:
            raise ConversionError(
                f"torchvision-mobilenetv2: unexpected key '{key}'; expected torchvision mobilenet_v2 keys "
                "(features.N.*, classifier.1.*)"
            )
        feats.setdefault(int(m.group(1)), {})[f"{m.group(2)}.{m.group(3)}"] = value
    if not feats:
        raise ConversionError("torchvision-mobilenetv2: no features.N.* keys found")
    first, last = min(feats), max(feats)
    if sorted(feats) != list(range(first, last + 1)) or first != 0 or last < 2:
        raise ConversionError(f"torchvision-mobilenetv2: unexpected feature indices {sorted(feats)}")
    for sub, value in feats[0].items():
        module, _, rest = sub.partition(".")
        out[("conv_stem" if module == "0" else "bn1") + "." + rest] = value
    for sub, value in feats[last].items():
        module, _, rest = sub.partition(".")
        out[("conv_head" if module == "0" else "bn2") + "." + rest] = value
    middle = list(range(1, last))
    widths = []
    for i in middle:
        names = _IR if any(k.startswith("conv.3.") for k in feats[i]) else _DS
        proj = "conv.2.weight" if names is _IR else "conv.1.weight"
        if proj not in feats[i]:
            raise ConversionError(f"torchvision-mobilenetv2: features.{i} has no {proj}")
        widths.append(int(feats[i][proj].shape[0]))
    for i, (stage, index) in zip(middle, group_by_width(widths)):
        names = _IR if any(k.startswith("conv.3.") for k in feats[i]) else _DS
        for sub, value in feats[i].items():
            module, _, param = sub.rpartition(".")
            if module not in names:
                raise ConversionError(f"torchvision-mobilenetv2: unexpected key 'features.{i}.{sub}'")
            out[f"blocks.{stage}.{index}.{names[module]}.{param}"] = value
    return out
