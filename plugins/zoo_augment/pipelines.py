"""Per-image augmentation pipelines of the seed systems, re-expressed in albumentations 2.x.

Every factory is ``factory(image_size: int, *, mean=(...), std=(...), **cfg) -> albumentations.Compose``;
call it as ``pipe(image=uint8 H x W x 3 RGB)`` -> ``{"image": float32 tensor 3 x S x S}`` (the last two
steps are always ``Normalize(mean, std, max_pixel_value=255)`` and ``ToTensorV2``). ``mean``/``std`` come
from the recipe's ``data:`` section (0-1 scale); the defaults are the seed's own. Randomness comes from
the Compose's seeded generators (``pipe.set_random_seed(seed)``).

Renamed / changed in albumentations 2.x and how the seeds' semantics are kept:

* ``ShiftScaleRotate(shift_limit=a, scale_limit=b, rotate_limit=r, border_mode=0)`` -> ``Affine(
  translate_percent=(-a, a), scale=(1-b, 1+b), keep_ratio=True, rotate=(-r, r), border_mode=
  BORDER_CONSTANT, fill=0)``. ``keep_ratio=True`` matters: 2.x's deprecated ``ShiftScaleRotate`` scales
  x and y independently, the 0.4/1.0 one the seeds used scaled both by one factor.
* ``ImageCompression(quality_lower=99, quality_upper=100)`` -> ``ImageCompression(quality_range=(99, 100))``
  (JPEG, p=0.5 as the old default).
* ``Cutout(max_h_size, max_w_size, num_holes)`` -> :class:`zoo_augment.cutout.CenterClippedCutout`
  (old placement: centre uniform, hole clipped at the border).
* ``CoarseDropout(max_holes, max_height, max_width, min_holes, min_height, min_width, fill_value)`` ->
  ``CoarseDropout(num_holes_range, hole_height_range, hole_width_range, fill)`` (pixel ranges; holes
  lie inside the image as in 0.5/1.x).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

from zoo.registry import ZooError
from zoo_augment.cutout import CenterClippedCutout

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: OpenAI CLIP normalisation, GUIE 2022 2nd place (SEED_SYSTEMS.md 3.3)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "linear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}


class AugmentationError(ZooError):
    """Augmentation settings that cannot build a pipeline."""


def interpolation_flag(name: str | int) -> int:
    """cv2 flag of an interpolation name (``bilinear``, ``bicubic``, ...)."""
    if isinstance(name, int):
        return name
    try:
        return _INTERPOLATION[str(name).lower()]
    except KeyError:
        raise AugmentationError(
            f"unknown interpolation '{name}': use one of {', '.join(sorted(_INTERPOLATION))}"
        ) from None


def _size(image_size: int) -> int:
    size = int(image_size)
    if size < 8:
        raise AugmentationError(f"image_size must be >= 8 pixels (got {image_size})")
    return size


def finish(steps: Sequence[Any], mean: Sequence[float], std: Sequence[float], seed: int | None = None) -> A.Compose:
    """``Compose(steps + [Normalize(mean, std, max_pixel_value=255), ToTensorV2()])``."""
    if len(mean) != 3 or len(std) != 3:
        raise AugmentationError(f"mean and std need 3 values (RGB); got mean={tuple(mean)} std={tuple(std)}")
    tail = [A.Normalize(mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std), max_pixel_value=255.0),
            ToTensorV2()]
    return A.Compose([*steps, *tail], seed=seed)


def shift_scale_rotate(shift: float, scale: float, rotate: float, p: float) -> A.Affine:
    """The 0.4/1.0 ``ShiftScaleRotate(shift, scale, rotate, border_mode=0)`` semantics as ``Affine``."""
    return A.Affine(
        translate_percent=(-shift, shift),
        scale=(1.0 - scale, 1.0 + scale),
        keep_ratio=True,
        rotate=(-rotate, rotate),
        shear=0.0,
        interpolation=cv2.INTER_LINEAR,
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        p=p,
    )


def resize(size: int, interpolation: str | int = "bilinear") -> A.Resize:
    return A.Resize(size, size, interpolation=interpolation_flag(interpolation))


# -- validation / plain ---------------------------------------------------------------------------
def resize_val(image_size: int, *, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
               interpolation: str = "bilinear") -> A.Compose:
    """``Resize(S, S)`` + ``Normalize()``: the validation transform of GLR2020 3rd / GLR2021 1st place
    (SEED_SYSTEMS.md 1.2, 2.3), ImageNet mean/std by default."""
    return finish([resize(_size(image_size), interpolation)], mean, std)


# -- GLR2020 3rd place / GLR2021 1st place ----------------------------------------------------------
def glr2020_train(image_size: int, *, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                  flip_p: float = 0.5, jpeg_quality: tuple[int, int] = (99, 100), jpeg_p: float = 0.5,
                  shift: float = 0.2, scale: float = 0.2, rotate: float = 10.0, affine_p: float = 0.7,
                  cutout_fraction: float = 0.4, cutout_p: float = 0.5) -> A.Compose:
    """GLR2020 3rd place ``dataset.py`` train transform (also GLR2021 1st place's, albumentations 1.0):
    ``HorizontalFlip(.5)``, ``ImageCompression(99, 100)``, ``ShiftScaleRotate(.2, .2, 10, border_mode=0,
    p=.7)``, ``Resize(S, S)``, one ``Cutout`` of ``int(.4 S)`` squared p=.5, ``Normalize()``
    (SEED_SYSTEMS.md 1.2, 2.3)."""
    size = _size(image_size)
    hole = max(1, int(size * cutout_fraction))
    return finish(
        [
            A.HorizontalFlip(p=flip_p),
            A.ImageCompression(compression_type="jpeg", quality_range=tuple(jpeg_quality), p=jpeg_p),
            shift_scale_rotate(shift, scale, rotate, affine_p),
            resize(size),
            CenterClippedCutout(hole, hole, num_holes=1, fill=0, p=cutout_p),
        ],
        mean,
        std,
    )


def glr2020_val(image_size: int, *, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> A.Compose:
    """GLR2020 3rd place (and GLR2021 1st place) validation: ``Resize(S, S)``, ``Normalize()`` (SEED_SYSTEMS.md 1.2)."""
    return resize_val(image_size, mean=mean, std=std)


# -- GUIE 2022 2nd place --------------------------------------------------------------------------
def guie_train(image_size: int, *, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD,
               flip_p: float = 0.5, brightness: float = 0.1, contrast: float = 0.1, color_p: float = 0.5,
               scale: float = 0.2, rotate: float = 10.0, affine_p: float = 0.5,
               hole_min_fraction: float = 0.1, hole_max_fraction: float = 0.2, dropout_p: float = 0.5) -> A.Compose:
    """GUIE 2022 2nd place ``dataset.py`` (applied to train *and* valid upstream): ``Resize(S, S)``,
    ``HorizontalFlip(.5)``, ``RandomBrightnessContrast(.1, .1, p=.5)``, ``ShiftScaleRotate(shift=0,
    scale=.2, rotate=10, border_mode=0, p=.5)``, ``CoarseDropout(1 hole, int(.1S)..int(.2S), fill 0,
    p=.5)``, CLIP mean/std (SEED_SYSTEMS.md 3.3)."""
    size = _size(image_size)
    lo, hi = max(1, int(size * hole_min_fraction)), max(1, int(size * hole_max_fraction))
    return finish(
        [
            resize(size),
            A.HorizontalFlip(p=flip_p),
            A.RandomBrightnessContrast(brightness_limit=(-brightness, brightness),
                                       contrast_limit=(-contrast, contrast), p=color_p),
            shift_scale_rotate(0.0, scale, rotate, affine_p),
            A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(lo, hi), hole_width_range=(lo, hi),
                            fill=0, p=dropout_p),
        ],
        mean,
        std,
    )


# -- GLR2021 top-100 ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Top100Stage:
    """One of the five 3-epoch stages of ``utils.py::classic_training`` (SEED_SYSTEMS.md 4.3)."""

    epochs: tuple[int, int]  # 1-based, inclusive
    batch_size: int
    resize: int  # pre-resize (``first_size``)
    crop: int  # ``aftercrop_size`` (RandomCrop, then the final Resize)
    coarse_dropout: bool  # one 64 x 64 hole, p=.5 (at crop 448)
    mix: bool  # README: FMix / CutMix / MixUp (flags False in the committed code)


TOP100_STAGES: dict[int, Top100Stage] = {
    1: Top100Stage((1, 3), 32, 224, 224, False, False),
    2: Top100Stage((4, 6), 8, 512, 448, False, False),
    3: Top100Stage((7, 9), 8, 512, 448, True, False),
    4: Top100Stage((10, 12), 8, 512, 448, False, True),
    5: Top100Stage((13, 15), 4, 704, 640, False, False),
}
TOP100_HOLE = 64  # CoarseDropout hole side at crop 448


#: ``channels`` of the top-100 pipelines: ``rgb`` (zoo's fix) or ``bgr`` (upstream's training input)
CHANNEL_ORDERS = ("rgb", "bgr")


def to_bgr(image: Any, **_: Any) -> Any:
    """RGB -> BGR (GLR2021 top-100 ``data.py`` L38-39 trains on ``cv2.imread`` output without
    ``cvtColor(BGR2RGB)``, while its inference converts; ``channels="bgr"`` reproduces that)."""
    return image[..., ::-1].copy()


def _channel_steps(channels: str) -> list[Any]:
    if channels not in CHANNEL_ORDERS:
        raise AugmentationError(f"top-100: channels must be one of {', '.join(CHANNEL_ORDERS)} (got '{channels}')")
    return [A.Lambda(image=to_bgr, name="to_bgr", p=1.0)] if channels == "bgr" else []


def _top100_stage(stage: int) -> Top100Stage:
    if int(stage) not in TOP100_STAGES:
        raise AugmentationError(f"top-100 stage must be 1..5 (got {stage}); see TOP100_STAGES")
    return TOP100_STAGES[int(stage)]


def _top100_sizes(image_size: int, st: Top100Stage, resize_to: int | None) -> tuple[int, int]:
    crop = _size(image_size)
    pre = int(resize_to) if resize_to is not None else int(round(crop * st.resize / st.crop))
    if pre < crop:
        raise AugmentationError(f"top-100: pre-resize {pre} is smaller than the crop {crop}")
    return pre, crop


def top100_train(image_size: int, *, stage: int = 1, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, resize_to: int | None = None, flip_p: float = 0.5,
                 hole_size: int | None = None, dropout_p: float = 0.5, channels: str = "rgb") -> A.Compose:
    """GLR2021 top-100 ``classic_training`` stage ``stage`` (1..5, :data:`TOP100_STAGES`, SEED_SYSTEMS.md 4.3):
    ``Resize(pre)`` -> ``RandomCrop(S)`` (stages 2-5) -> ``HorizontalFlip(.5)`` -> ``CoarseDropout(1 hole
    64 x 64, p=.5)`` (stage 3) -> ``Resize(S)`` -> ``Normalize()`` -> ``ToTensorV2``.

    ``image_size`` is the crop (224, 448, 448, 448, 640 upstream); the pre-resize keeps the stage's
    ratio (512/448, 704/640) unless ``resize_to`` is given, and the hole scales as 64 * S / 448 unless
    ``hole_size`` is given, so at the upstream sizes every number is upstream's. Stage 4's FMix / CutMix /
    MixUp act on batches: the ``mix_top100`` component. ``channels="bgr"`` feeds the network BGR images
    as upstream's training did (:func:`to_bgr`); the default ``rgb`` is zoo's fix.
    """
    st = _top100_stage(stage)
    pre, crop = _top100_sizes(image_size, st, resize_to)
    steps: list[Any] = [*_channel_steps(channels), resize(pre)]
    if st.crop != st.resize or pre != crop:
        steps.append(A.RandomCrop(crop, crop))
    steps.append(A.HorizontalFlip(p=flip_p))
    if st.coarse_dropout:
        hole = int(hole_size) if hole_size is not None else max(1, int(round(TOP100_HOLE * crop / 448)))
        hole = min(hole, crop)
        steps.append(A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(hole, hole),
                                     hole_width_range=(hole, hole), fill=0, p=dropout_p))
    steps.append(resize(crop))
    return finish(steps, mean, std)


def top100_val(image_size: int, *, stage: int | None = None, mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD, resize_to: int | None = None, channels: str = "rgb") -> A.Compose:
    """GLR2021 top-100 validation = pre + post transforms of the stage: ``Resize(pre)`` -> ``Resize(S)``
    -> ``Normalize()`` (``data.py::get_transforms``; SEED_SYSTEMS.md 4.3).

    Without ``stage`` it is the stage whose crop equals ``image_size`` (224 -> 1, 448 -> 2, 640 -> 5:
    ``Resize(512) -> Resize(448)`` at 448), or a plain ``Resize(S)`` for any other size. ``channels``
    as :func:`top100_train` (upstream validated on the same BGR dataset class)."""
    if stage is None:
        stage = next((k for k, v in TOP100_STAGES.items() if v.crop == int(image_size)), 1)
        if TOP100_STAGES[stage].crop != int(image_size) and resize_to is None:
            resize_to = int(image_size)
    st = _top100_stage(stage)
    pre, crop = _top100_sizes(image_size, st, resize_to)
    steps: list[Any] = [*_channel_steps(channels), resize(pre)] + ([resize(crop)] if pre != crop else [])
    return finish(steps, mean, std)


# -- GLR2019 CS230 --------------------------------------------------------------------------------
def glr2019_train(image_size: int = 299, *, mean: Sequence[float] = IMAGENET_MEAN,
                  std: Sequence[float] = IMAGENET_STD, flip_p: float = 0.5) -> A.Compose:
    """GLR2019 CS230 torchvision transform (SEED_SYSTEMS.md 5.1) in albumentations: ``Resize(S, S)``
    (299), ``HorizontalFlip(.5)``, then one of (uniformly) ``RandomResizedCrop(S)`` (scale .08-1, ratio
    3/4-4/3), ``ColorJitter(.2, .2, .2, .2)``, ``RandomAffine(15, translate=(.2, .2), scale=(.8, 1.2),
    shear=15, bilinear)`` (x-shear only, as torchvision's single ``shear`` value), ImageNet Normalize."""
    size = _size(image_size)
    choice = A.OneOf(
        [
            A.RandomResizedCrop(size=(size, size), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                                interpolation=cv2.INTER_LINEAR, p=1.0),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.2, p=1.0),
            A.Affine(rotate=(-15, 15), translate_percent=(-0.2, 0.2), scale=(0.8, 1.2), keep_ratio=True,
                     shear={"x": (-15, 15), "y": (0, 0)}, interpolation=cv2.INTER_LINEAR,
                     border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0),
        ],
        p=1.0,
    )
    return finish([resize(size), A.HorizontalFlip(p=flip_p), choice], mean, std)
