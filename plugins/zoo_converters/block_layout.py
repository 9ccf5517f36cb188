"""Grouping flat block lists into stages, shared by the MBConv-family weight converters.

Upstream layouts such as lukemelas' EfficientNet (``_blocks.{i}``) and torchvision's MobileNetV2
(``features.{i}``) number their blocks flatly, while timm nests them as ``blocks.{stage}.{block}``.
In both families every stage has its own output width and the blocks inside a stage keep it, so
the stage boundaries can be read from the projection weights' output channels alone.
"""

from __future__ import annotations

from typing import Sequence


def group_by_width(widths: Sequence[int]) -> list[tuple[int, int]]:
    """``(stage, index_in_stage)`` for each flat block, a new stage starting whenever the width changes."""
    out: list[tuple[int, int]] = []
    stage, index = -1, 0
    previous: int | None = None
    for width in widths:
        if width != previous:
            stage, index = stage + 1, 0
        else:
            index += 1
        out.append((stage, index))
        previous = width
    return out
