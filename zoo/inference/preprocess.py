"""Inference preprocessing: a recipe's ``data_config`` -> resize on the CPU, normalise on the device.

The split is deliberate: workers decode and resize to **uint8** tensors (4x less inter-process
traffic than float32, and pinned-memory copies stay small); the device casts, normalises and
switches to channels_last. An ensemble's members each get a :class:`Preprocess`; an image is
decoded once (at the largest size any member needs) and resized per member.

Resize modes (``data.resize``):

* ``square``: resize to ``S x S`` (aspect ratio not kept), like ``albumentations.Resize(S, S)``;
* ``long_side``: scale so the long side is ``S``, keeping the aspect ratio. Images of different
  aspect ratios then differ in shape; the embed loop buckets them by exact shape (see
  :mod:`zoo.inference.embed`), so nothing is padded and every descriptor equals the batch-1 one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from zoo.registry import ZooError

RESIZE_MODES = ("square", "long_side")


class PreprocessError(ZooError):
    """A ``data`` section that inference cannot follow (unknown resize mode or interpolation)."""


def _pil_filter(name: str) -> int:
    from PIL import Image

    table = {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "linear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "cubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
        "box": Image.Resampling.BOX,
        "area": Image.Resampling.BOX,
        "hamming": Image.Resampling.HAMMING,
    }
    key = name.lower()
    if key not in table:
        raise PreprocessError(
            f"unknown interpolation '{name}' in the recipe's data section; use one of {', '.join(table)}"
        )
    return int(table[key])


@dataclass(frozen=True)
class Preprocess:
    """How one model wants its input: size, resize mode, interpolation and normalisation."""

    image_size: int
    resize: str = "square"
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise PreprocessError(
                f"unknown data.resize '{self.resize}'; use one of {', '.join(RESIZE_MODES)}"
            )
        if int(self.image_size) <= 0:
            raise PreprocessError(f"data.image_size must be positive, got {self.image_size}")
        _pil_filter(self.interpolation)

    @classmethod
    def from_data_config(cls, data: Mapping[str, Any], image_size: int | None = None) -> "Preprocess":
        return cls(
            image_size=int(image_size or data.get("image_size", 224)),
            resize=str(data.get("resize", "square")),
            interpolation=str(data.get("interpolation", "bilinear")),
            mean=tuple(float(v) for v in data.get("mean", (0.485, 0.456, 0.406))),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data.get("std", (0.229, 0.224, 0.225))),  # type: ignore[arg-type]
        )

    @property
    def decode_side(self) -> int:
        """The long side JPEG draft decoding must keep (short side >= S for up to 2:1 for square)."""
        return self.image_size if self.resize == "long_side" else 2 * self.image_size

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        s = int(self.image_size)
        if self.resize == "square":
            return s, s
        scale = s / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def resize_uint8(self, image: np.ndarray) -> torch.Tensor:
        """``H x W x 3`` uint8 -> resized ``3 x h x w`` uint8 tensor (PIL, antialiased)."""
        from PIL import Image

        h, w = image.shape[:2]
        oh, ow = self.output_size(h, w)
        if (oh, ow) != (h, w):
            image = np.asarray(Image.fromarray(image).resize((ow, oh), _pil_filter(self.interpolation)))
        if not image.flags.writeable:
            image = np.array(image)
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()

    def normalize(self, batch: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 ``B x 3 x H x W`` (on any device) -> normalised float, channels_last."""
        mean = torch.tensor(self.mean, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        out = (batch.float() - mean) / std
        return out.to(dtype).contiguous(memory_format=torch.channels_last)


def model_preprocesses(model: torch.nn.Module) -> list[Preprocess]:
    """One :class:`Preprocess` per input the model needs: one for a model, one per ensemble member."""
    members = getattr(model, "members", None)
    if members is not None:
        cfgs: Sequence[Mapping[str, Any]] = getattr(model, "member_cfgs", [{}] * len(members))
        return [
            Preprocess.from_data_config(getattr(m, "data_config", {}) or {}, cfg.get("image_size"))
            for m, cfg in zip(members, cfgs)
        ]
    return [Preprocess.from_data_config(getattr(model, "data_config", {}) or {})]


def with_image_size(pre: Sequence[Preprocess], image_size: int | None) -> list[Preprocess]:
    """``--image-size`` for a single model (ensembles keep their per-member sizes)."""
    if image_size is None:
        return list(pre)
    if len(pre) != 1:
        raise PreprocessError(
            "--image-size applies to a single model; an ensemble's members keep their own image_size "
            "(override ensemble.members.N.image_size instead)"
        )
    p = pre[0]
    return [Preprocess(int(image_size), p.resize, p.interpolation, p.mean, p.std)]
