"""The one description of how a model wants its images: :class:`DataConfig`.

A recipe's ``data`` section (``image_size``, ``resize``, ``interpolation``, ``mean``, ``std``,
optionally ``crop_pct``) becomes a frozen, typed :class:`DataConfig`. Every model carries one
(``model.data_config``; ``model.pretrained_cfg`` is its timm-style dict) and everything that feeds a
model reads it: embedding, validation during training, export, the demo and the weights manifests.

Resize rules (``resize``):

* ``square``: resize to ``S x S`` (aspect ratio not kept), like ``albumentations.Resize(S, S)``;
  with ``crop_pct`` it is timm's evaluation transform instead: the short side is resized to
  ``floor(S / crop_pct)`` (aspect ratio kept) and the centre ``S x S`` is cropped;
* ``long_side``: scale so the long side is ``S``, keeping the aspect ratio (nothing is cropped or
  padded; images of different aspect ratios then differ in shape).

Resizing is PIL's antialiased resampling of the whole decoded uint8 image (``Image.resize``, no
``reducing_gap``; JPEGs are not decoded at a reduced DCT scale, which moved descriptors of large photos
to cosine 0.995-0.998 of the full decode), on the CPU; normalisation ``(x - 255 mean) / (255 std)``
runs on the device on the uint8 batch. Exported models reproduce both (:mod:`zoo.data.resample`).
This module is a leaf: it imports no other zoo module except the registry's error base class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from zoo.registry import ZooError

if TYPE_CHECKING:
    import numpy as np
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("square", "long_side")
#: interpolation names -> the canonical name (PIL's resampling filters)
INTERPOLATIONS = {
    "nearest": "nearest",
    "bilinear": "bilinear",
    "linear": "bilinear",
    "bicubic": "bicubic",
    "cubic": "bicubic",
    "lanczos": "lanczos",
    "box": "box",
    "area": "box",
    "hamming": "hamming",
}
#: keys of a recipe's ``data`` section (``image_size`` is :attr:`DataConfig.input_size`)
RECIPE_KEYS = ("image_size", "resize", "interpolation", "mean", "std", "crop_pct")


class DataConfigError(ZooError):
    """A preprocessing description that cannot be followed (unknown resize rule, interpolation, key)."""


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3:
        raise DataConfigError(f"{what} must be 3 numbers (RGB, 0-1 scale), got {value!r}")
    return out  # type: ignore[return-value]


def pil_filter(name: str) -> int:
    """The ``PIL.Image.Resampling`` value of an interpolation name."""
    from PIL import Image

    return int(getattr(Image.Resampling, canonical_interpolation(name).upper()))


def canonical_interpolation(name: str) -> str:
    key = str(name).lower()
    if key not in INTERPOLATIONS:
        raise DataConfigError(
            f"unknown interpolation '{name}' (data.interpolation); use one of {', '.join(INTERPOLATIONS)}"
        )
    return INTERPOLATIONS[key]


@dataclass(frozen=True)
class DataConfig:
    """How one model input is made from an image: size rule, interpolation, normalisation, crop."""

    input_size: int = 224
    resize: str = "square"
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.input_size, bool) or int(self.input_size) != self.input_size or int(self.input_size) <= 0:
            raise DataConfigError(f"data.image_size must be a positive integer, got {self.input_size!r}")
        object.__setattr__(self, "input_size", int(self.input_size))
        if self.resize not in RESIZE_MODES:
            raise DataConfigError(f"unknown data.resize '{self.resize}'; use one of {', '.join(RESIZE_MODES)}")
        object.__setattr__(self, "interpolation", canonical_interpolation(self.interpolation))
        object.__setattr__(self, "mean", _triple(self.mean, "data.mean"))
        std = _triple(self.std, "data.std")
        if any(v <= 0 for v in std):
            raise DataConfigError(f"data.std must be positive, got {list(std)}")
        object.__setattr__(self, "std", std)
        if self.crop_pct is not None:
            crop = float(self.crop_pct)
            if not 0 < crop <= 1:
                raise DataConfigError(f"data.crop_pct must be in (0, 1], got {self.crop_pct!r}")
            if self.resize != "square":
                raise DataConfigError(
                    f"data.crop_pct={crop} needs data.resize=square (timm's resize-then-centre-crop); "
                    f"'{self.resize}' keeps the whole image"
                )
            object.__setattr__(self, "crop_pct", crop)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_recipe(cls, cfg: Any) -> "DataConfig":
        """The ``data`` section of a resolved recipe (defaults: 224 px square, bilinear, ImageNet mean/std)."""
        data = cfg.get("data") if cfg is not None else None
        data = _plain(data) if data is not None else {}
        unknown = sorted(set(data) - set(RECIPE_KEYS))
        if unknown:
            raise DataConfigError(
                f"recipe '{cfg.get('name')}': unknown data key(s) {', '.join(unknown)}; "
                f"the data section accepts {', '.join(RECIPE_KEYS)}"
            )
        return cls(
            input_size=data.get("image_size", 224),
            resize=str(data.get("resize", "square")),
            interpolation=str(data.get("interpolation", "bilinear")),
            mean=data.get("mean", IMAGENET_MEAN),
            std=data.get("std", IMAGENET_STD),
            crop_pct=data.get("crop_pct"),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DataConfig":
        """Inverse of :meth:`to_dict`; also reads timm-style ``input_size: [3, S, S]``."""
        data = _plain(data)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise DataConfigError(f"unknown data config key(s) {', '.join(unknown)}; expected {', '.join(sorted(names))}")
        size = data.get("input_size", 224)
        if isinstance(size, (list, tuple)):
            if len(size) != 3 or size[1] != size[2]:
                raise DataConfigError(f"input_size {list(size)}: expected a square [3, S, S]")
            size = size[1]
        return cls(**{**data, "input_size": size})

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (lists, not tuples); :meth:`from_dict` reads it back."""
        return {
            "input_size": self.input_size,
            "resize": self.resize,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_pct": self.crop_pct,
        }

    def pretrained_cfg(self) -> dict[str, Any]:
        """The timm-style preprocessing dict (``timm.data.resolve_data_config(pretrained_cfg=...)`` reads it).

        ``crop_pct`` is 1.0 when nothing is cropped; ``resize`` is zoo's size rule (timm has no long-side rule).
        """
        return {
            "input_size": (3, self.input_size, self.input_size),
            "interpolation": self.interpolation,
            "mean": self.mean,
            "std": self.std,
            "crop_pct": self.crop_pct if self.crop_pct is not None else 1.0,
            "crop_mode": "center",
            "resize": self.resize,
        }

    def describe(self) -> str:
        """One line for people: ``long side -> 384 px (bicubic), mean [0.5, ...], std [0.5, ...]``."""
        if self.resize == "long_side":
            rule = f"long side -> {self.input_size} px"
        elif self.crop_pct is not None:
            rule = f"short side -> {math.floor(self.input_size / self.crop_pct)} px, centre {self.input_size}x{self.input_size} crop"
        else:
            rule = f"{self.input_size}x{self.input_size}"
        return f"{rule} ({self.interpolation}), mean {list(self.mean)}, std {list(self.std)}"

    def with_input_size(self, size: int) -> "DataConfig":
        return replace(self, input_size=int(size))

    def diff(self, other: "DataConfig") -> list[str]:
        """``['interpolation: bicubic != bilinear', ...]``: the fields where ``other`` differs (floats to 1e-6)."""
        out = []
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, tuple) and isinstance(b, tuple):
                same = all(math.isclose(x, y, abs_tol=1e-6) for x, y in zip(a, b))
            elif isinstance(a, float) and isinstance(b, float):
                same = math.isclose(a, b, abs_tol=1e-6)
            else:
                same = a == b
            if not same:
                out.append(f"{f.name}: {_show(a)} != {_show(b)}")
        return out

    # -- geometry ------------------------------------------------------------------------
    def resize_plan(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(resized_h, resized_w, top, left)``: the resize, then the ``output_size`` crop at (top, left)."""
        s = self.input_size
        if self.resize == "long_side":
            scale = s / max(height, width)
            return max(1, round(height * scale)), max(1, round(width * scale)), 0, 0
        if self.crop_pct is None:
            return s, s, 0, 0
        # timm eval transform: torchvision Resize(short side) then CenterCrop(S)
        short_new = math.floor(s / self.crop_pct)
        if height <= width:
            rh, rw = short_new, int(short_new * width / height)
        else:
            rh, rw = int(short_new * height / width), short_new
        return rh, rw, int(round((rh - s) / 2.0)), int(round((rw - s) / 2.0))

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` of the network input made from an ``height x width`` image."""
        if self.resize == "long_side":
            rh, rw, _, _ = self.resize_plan(height, width)
            return rh, rw
        return self.input_size, self.input_size

    # -- pixels --------------------------------------------------------------------------
    def resize_uint8(self, image: "np.ndarray") -> "torch.Tensor":
        """``H x W x 3`` uint8 -> resized (and cropped) ``3 x h x w`` uint8 tensor (PIL, antialiased)."""
        import numpy as np
        import torch
        from PIL import Image

        h, w = image.shape[:2]
        rh, rw, top, left = self.resize_plan(h, w)
        if (rh, rw) != (h, w):
            image = np.asarray(Image.fromarray(image).resize((rw, rh), pil_filter(self.interpolation)))
        oh, ow = self.output_size(h, w)
        if (oh, ow) != (rh, rw):
            image = image[top:top + oh, left:left + ow]
        if not image.flags.writeable:
            image = np.array(image)
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()

    def normalize(self, batch: "torch.Tensor", dtype: "torch.dtype | None" = None, channels_last: bool = True) -> "torch.Tensor":
        """uint8 ``B x 3 x H x W`` (on any device) -> ``(x - 255 mean) / (255 std)`` as ``dtype`` (float32)."""
        import torch

        mean, std = _scaled_constants(tuple(self.mean), tuple(self.std), batch.device)
        out = ((batch.float() - mean) / std).to(dtype or torch.float32)
        return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@lru_cache(maxsize=64)
def _scaled_constants(mean: tuple[float, ...], std: tuple[float, ...], device: "torch.device") -> tuple["torch.Tensor", "torch.Tensor"]:
    """``255 mean`` and ``255 std`` as ``1 x 3 x 1 x 1`` float32 on ``device``, built once per (values, device):
    building them per batch is a pageable host-to-device copy, which blocks the host on CUDA."""
    import torch

    return tuple(torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1).mul(255.0).to(device)  # type: ignore[return-value]
                 for v in (mean, std))


def _plain(data: Any) -> dict[str, Any]:
    """A plain dict of a mapping or an omegaconf node."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(data, DictConfig):
        return dict(OmegaConf.to_container(data, resolve=True))  # type: ignore[arg-type]
    if not isinstance(data, Mapping):
        raise DataConfigError(f"a data config must be a mapping, got {type(data).__name__}")
    return dict(data)


def _show(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)


def model_data_configs(model: Any) -> list[DataConfig]:
    """One :class:`DataConfig` per input the model needs: the model's own, or one per ensemble member."""
    members = getattr(model, "members", None)
    modules = list(members) if members is not None else [model]
    out = []
    for m in modules:
        dc = getattr(m, "data_config", None)
        if dc is None:
            raise DataConfigError(f"{type(m).__name__} has no data_config; build models with zoo.create_model")
        out.append(dc if isinstance(dc, DataConfig) else DataConfig.from_dict(dc))
    return out


def with_input_size(configs: Sequence[DataConfig], size: int | None) -> list[DataConfig]:
    """``--image-size`` for a single model (ensemble members keep their own sizes)."""
    if size is None:
        return list(configs)
    if len(configs) != 1:
        raise DataConfigError(
            "--image-size applies to a single model; an ensemble's members keep their own image_size "
            "(override ensemble.members.N.image_size instead)"
        )
    return [configs[0].with_input_size(size)]
