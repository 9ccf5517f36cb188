"""Image decoding and image lists shared by training and inference.

``read_image`` decodes once (PIL with ``draft`` downscaling for JPEGs), applies EXIF orientation and
returns RGB uint8 ``H x W x 3``; 16-bit, float and palette/alpha images are scaled faithfully
(:func:`to_rgb8`). Unreadable files, and images whose white level is unknown (32-bit integers, float
outside 0..1), raise :class:`ImageReadError`, which the datasets turn into a skip-and-report entry
instead of a crash or a guess.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from zoo.registry import ZooError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm", ".pnm")


class ImageReadError(ZooError):
    """A file that cannot be decoded as an image (missing, truncated, corrupt, not an image)."""


class DataError(ZooError):
    """A data description (CSV, folder) that cannot be used."""


@dataclass(frozen=True)
class ImageRecord:
    """One image: its id, its path and (for labelled data) its raw label."""

    id: str
    path: Path
    label: str | None = None


def read_image(path: str | os.PathLike, max_side: int | None = None) -> np.ndarray:
    """Decode ``path`` to RGB uint8 ``H x W x 3`` (EXIF-rotated), scaled faithfully from any bit depth.

    ``max_side`` lets JPEG decoding downscale by a power of two (``Image.draft``) while keeping
    the long side >= ``max_side``; the caller still resizes to its exact size. Images that are not
    8-bit RGB are converted by :func:`to_rgb8` (16-bit and float scaled, transparency composited
    on white); an image whose white level is unknown raises :class:`ImageReadError`.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            if max_side and img.format == "JPEG":
                w, h = img.size
                scale = max_side / max(w, h)
                if scale < 1:
                    img.draft("RGB", (max(1, int(w * scale + 0.5)), max(1, int(h * scale + 0.5))))
            img.load()
            arr = to_rgb8(ImageOps.exif_transpose(img), img.format, _tiff_sample(img))
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: file not found") from exc
    except ImageReadError as exc:
        raise ImageReadError(f"{path}: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"{path}: decoded to shape {arr.shape}, expected H x W x 3")
    return np.ascontiguousarray(arr)


#: Pillow modes of 16-bit unsigned greyscale (little, big and native endian)
UINT16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
#: modes with an alpha channel (or palette transparency): composited on white
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
#: formats whose Pillow mode ``I`` holds 16-bit samples scaled to 0..65535 (PNG from older Pillow, PGM/PPM)
SIXTEEN_BIT_I_FORMATS = ("PNG", "PPM")


def _tiff_sample(img: object) -> tuple[int | None, int | None]:
    """``(BitsPerSample, SampleFormat)`` of a TIFF (None when not a TIFF or not recorded)."""
    tags = getattr(img, "tag_v2", None)
    if tags is None:
        return None, None
    bits = tags.get(258)
    fmt = tags.get(339)
    first = lambda v: (v[0] if isinstance(v, tuple) and v else v)  # noqa: E731 - per-sample tuples
    return first(bits), first(fmt)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


def _scale_uint16(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255, rounded (``x / 257``: 8-bit data stored as 16 bits comes back exactly)."""
    v = values.astype(np.uint32)
    return ((v * 255 + 32767) // 65535).astype(np.uint8)


def to_rgb8(img: "Image.Image", fmt: str | None = None, tiff_sample: tuple[int | None, int | None] = (None, None)) -> np.ndarray:
    """A decoded PIL image -> RGB uint8 ``H x W x 3``, scaled faithfully or refused.

    * 8-bit modes (``RGB``, ``L``, ``1``, ``CMYK``, ``YCbCr``, palette ``P`` without transparency): Pillow's conversion;
    * alpha (``RGBA``, ``LA``, ``PA``, a ``P`` palette with a transparent index): composited on white;
    * 16-bit greyscale (``I;16``, ``I;16B``, ...; ``I`` from PNG/PGM/PPM and 16-bit unsigned TIFF): ``x / 257`` rounded;
    * float (``F``) with every value in 0..1: ``x * 255`` rounded;
    * anything else - 32-bit integers, float outside 0..1 or not finite, signed TIFF samples - has no known
      white level: :class:`ImageReadError` (the embedders skip and report it) instead of a guess.
    """
    from PIL import Image

    mode = img.mode
    if mode in ALPHA_MODES or (mode in ("P", "L", "RGB", "1") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.split()[-1])
        return np.asarray(background, dtype=np.uint8)
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode in UINT16_MODES:
        return _grey_to_rgb(_scale_uint16(np.asarray(img)))
    if mode == "I":
        bits, sample_format = tiff_sample
        sixteen = fmt in SIXTEEN_BIT_I_FORMATS or (fmt == "TIFF" and bits == 16 and sample_format in (None, 1))
        values = np.asarray(img)
        if not sixteen:
            raise ImageReadError(
                f"{mode} image ({fmt or 'unknown format'}, {bits or '?'}-bit samples, values {values.min()}..{values.max()}): "
                "32-bit integer samples have no known white level; convert it to 8 or 16 bits"
            )
        if values.min() < 0 or values.max() > 65535:
            raise ImageReadError(f"16-bit image with values {values.min()}..{values.max()} outside 0..65535")
        return _grey_to_rgb(_scale_uint16(values))
    if mode == "F":
        values = np.asarray(img, dtype=np.float32)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            finite = values[np.isfinite(values)]
            span = f"{finite.min():g}..{finite.max():g}" if finite.size else "none finite"
            raise ImageReadError(
                f"float image with values {span}{'' if np.isfinite(values).all() else ' and NaN/inf'}: only 0..1 "
                "float images have a known white level; convert it to 8 or 16 bits"
            )
        return _grey_to_rgb(np.rint(values * 255).astype(np.uint8))
    if mode in ("L", "1", "P", "CMYK", "YCbCr"):
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    raise ImageReadError(f"Pillow mode '{mode}' has no faithful conversion to 8-bit RGB here; convert the image to RGB")


def gldv2_path(root: Path, image_id: str, ext: str = ".jpg") -> Path:
    """GLDv2 layout: ``root/a/b/c/abc123.jpg`` for id ``abc123``."""
    return root / image_id[0] / image_id[1] / image_id[2] / f"{image_id}{ext}"


def _resolve(root: Path, image_id: str) -> Path:
    if Path(image_id).suffix.lower() in IMAGE_EXTENSIONS:
        return root / image_id
    flat = root / f"{image_id}.jpg"
    if flat.exists() or len(image_id) < 3:
        return flat
    nested = gldv2_path(root, image_id)
    return nested if nested.exists() else flat


def list_images(source: str | os.PathLike, images: str | os.PathLike | None = None) -> list[ImageRecord]:
    """Image records from a folder tree or a CSV.

    * a folder: every image file below it (sorted); ``id`` is the path relative to it, ``label`` the
      name of its parent folder when the folder has one sub-folder level per class (image-folder tree);
    * a CSV with ``id`` (or ``path``) and optionally ``landmark_id`` (or ``label``/``instance``)
      columns; ids are found under ``images`` (flat ``id.jpg``, GLDv2 ``a/b/c/id.jpg`` or a relative path).
    """
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise DataError(f"{source}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found below it")
        depth_one = all(len(p.relative_to(source).parts) == 2 for p in files)
        return [
            ImageRecord(p.relative_to(source).as_posix(), p, p.parent.name if depth_one else None)
            for p in files
        ]
    if not source.is_file():
        raise DataError(f"{source}: no such file or folder (give an image folder or a CSV)")
    root = Path(images) if images is not None else source.parent
    return list(_read_csv(source, root))


def _read_csv(path: Path, root: Path) -> Iterator[ImageRecord]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        id_col = next((c for c in ("id", "path", "image", "filename") if c in cols), None)
        if id_col is None:
            raise DataError(f"{path}: needs an 'id' or 'path' column (found: {', '.join(cols) or 'none'})")
        label_col = next((c for c in ("landmark_id", "label", "instance", "landmarks") if c in cols), None)
        for row in reader:
            image_id = (row[id_col] or "").strip()
            if not image_id:
                continue
            label = (row[label_col] or "").strip() if label_col else None
            yield ImageRecord(image_id, _resolve(root, image_id), label if label != "" else None)

