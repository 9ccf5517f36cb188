"""Image decoding and image lists shared by training and inference.

``read_image`` decodes once (PIL with ``draft`` downscaling for JPEGs), applies EXIF orientation and
returns RGB uint8 ``H x W x 3``. Unreadable files raise :class:`ImageReadError`, which the datasets
turn into a skip-and-report entry instead of a crash.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from zoo.registry import ZooError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


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
    """Decode ``path`` to RGB uint8 ``H x W x 3`` (EXIF-rotated).

    ``max_side`` lets JPEG decoding downscale by a power of two (``Image.draft``) while keeping
    the long side >= ``max_side``; the caller still resizes to its exact size.
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
            img = ImageOps.exif_transpose(img)
            if img.mode != "RGB":
                if img.mode in ("RGBA", "LA", "P") and "transparency" in img.info or img.mode in ("RGBA", "LA"):
                    background = Image.new("RGB", img.size, (255, 255, 255))
                    rgba = img.convert("RGBA")
                    background.paste(rgba, mask=rgba.split()[-1])
                    img = background
                else:
                    img = img.convert("RGB")
            arr = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: file not found") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"{path}: decoded to shape {arr.shape}, expected H x W x 3")
    return np.ascontiguousarray(arr)


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

