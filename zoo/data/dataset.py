"""Labelled image datasets for training: the dataset, its collate and the skip report.

Targets come from the one label encoder, :class:`zoo.data.labels.LabelMap` (sorted raw labels ->
contiguous class indices, aligned with the class counts the dynamic ArcFace margins need).

* :class:`ImageDataset` decodes each image once per access with :func:`zoo.data.images.read_image`
  (PIL, ``draft`` downscaling for JPEGs, EXIF-rotated, RGB; grayscale/CMYK/palette converted, alpha
  composited on white) and applies a transform (a registered ``augmentation``; it normalises and
  converts to a tensor). An unreadable file (missing, truncated, corrupt) never raises inside a
  DataLoader worker: the item is a *skip marker* that :func:`collate` drops and carries under
  ``batch["skipped"]``; the trainer feeds those to a :class:`SkipReport` and writes it at the end.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.atomic import write_json, write_text
from zoo.data.images import ImageReadError, ImageRecord, read_image
from zoo.data.labels import LabelMap

# -- dataset ---------------------------------------------------------------------------------------
def skip_marker(index: int, path: str | os.PathLike, error: str) -> dict[str, Any]:
    """What :class:`ImageDataset` returns for an unreadable image (dropped by :func:`collate`)."""
    return {"error": str(error), "index": int(index), "path": str(path)}


def is_skip(item: Any) -> bool:
    return item is None or (isinstance(item, dict) and bool(item.get("error")))


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``H x W x 3`` -> float ``3 x H x W`` in [0, 1] (used only when no transform is given)."""
    arr = image if image.flags.writeable and image.flags.c_contiguous else np.array(image, order="C")
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


class ImageDataset(Dataset):
    """Labelled image records -> ``{"image": float CHW tensor, "target": int64 tensor, "index": int}``.

    ``transform(image=np.ndarray HxWx3 uint8) -> {"image": CHW float tensor}`` is a registered
    augmentation (it resizes, normalises with the recipe's mean/std and converts to a tensor); without
    one the image is only converted to ``[0, 1]`` floats. ``label_map`` defaults to the sorted labels of
    ``records``; records whose label the map lacks get target ``-1`` (validation queries of unseen
    classes). ``max_side`` lets JPEG decoding downscale by powers of two while keeping the long side
    >= ``max_side`` (use ~ the pipeline's pre-crop size).

    An unreadable image returns :func:`skip_marker` ``{"error", "index", "path"}`` instead of raising,
    so a DataLoader worker never dies; pass ``collate_fn=collate``.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: Callable[..., Mapping[str, Any]] | None = None,
        label_map: LabelMap | None = None,
        max_side: int | None = None,
    ) -> None:
        self.records = list(records)
        self.label_map = label_map if label_map is not None else LabelMap.from_records(self.records)
        self.targets = self.label_map.targets(self.records, unknown=-1)
        self.transform = transform
        self.max_side = max_side

    def __len__(self) -> int:
        return len(self.records)

    def class_counts(self) -> np.ndarray:
        """Images per class index (aligned with ``label_map``)."""
        return self.label_map.counts(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        try:
            image = read_image(rec.path, max_side=self.max_side)
        except ImageReadError as exc:
            return skip_marker(index, rec.path, str(exc))
        if self.transform is not None:
            out = self.transform(image=image)["image"]
            if isinstance(out, np.ndarray):  # a pipeline without ToTensorV2 (HWC float)
                out = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))
        else:
            out = _to_tensor(image)
        return {"image": out, "target": torch.tensor(int(self.targets[index]), dtype=torch.int64), "index": int(index)}


def collate(items: Sequence[Any]) -> dict[str, Any]:
    """Stack good items, drop skip markers.

    Returns ``{"image": B x 3 x H x W, "target": int64 B, "index": int64 B, "skipped": [dict]}``
    where each skipped entry is ``{"index": int, "path": str, "error": str}``. A batch whose items
    were all skipped has ``image``/``target``/``index`` set to ``None`` (the trainer skips the step).
    """
    good: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for it in items:
        if it is None:
            continue
        if is_skip(it):
            skipped.append({"index": int(it.get("index", -1)), "path": str(it.get("path", "")),
                            "error": str(it["error"])})
        else:
            good.append(it)
    if not good:
        return {"image": None, "target": None, "index": None, "skipped": skipped}
    return {
        "image": torch.stack([g["image"] for g in good]),
        "target": torch.as_tensor([int(g["target"]) for g in good], dtype=torch.int64),
        "index": torch.as_tensor([int(g["index"]) for g in good], dtype=torch.int64),
        "skipped": skipped,
    }


# -- skip report -----------------------------------------------------------------------------------
@dataclass
class SkipReport:
    """Unreadable images met during a run, one entry per (path) with how often it was met.

    Feed it each batch's ``batch["skipped"]`` (:meth:`add_batch`) or single entries (:meth:`add`);
    :meth:`write` saves ``skipped.json`` (or ``.csv`` by suffix) atomically at the end of the run.
    Entries from several ranks merge with :meth:`merge`.
    """

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, index: int, path: str | os.PathLike, error: str) -> None:
        key = str(path)
        if key in self.entries:
            self.entries[key]["count"] += 1
        else:
            self.entries[key] = {"index": int(index), "path": key, "error": str(error), "count": 1}

    def add_batch(self, skipped: Iterable[Mapping[str, Any]] | None) -> int:
        """Record a batch's ``skipped`` list; returns how many it held."""
        n = 0
        for s in skipped or ():
            self.add(int(s.get("index", -1)), s.get("path", ""), s.get("error", ""))
            n += 1
        return n

    def merge(self, other: "SkipReport | Iterable[Mapping[str, Any]]") -> None:
        rows = other.rows() if isinstance(other, SkipReport) else list(other)
        for row in rows:
            key = str(row["path"])
            if key in self.entries:
                self.entries[key]["count"] += int(row.get("count", 1))
            else:
                self.entries[key] = {"index": int(row.get("index", -1)), "path": key,
                                     "error": str(row.get("error", "")), "count": int(row.get("count", 1))}

    def __len__(self) -> int:
        return len(self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def rows(self) -> list[dict[str, Any]]:
        """Entries sorted by path."""
        return [dict(self.entries[k]) for k in sorted(self.entries)]

    def summary(self) -> str:
        if not self.entries:
            return "no unreadable images"
        first = self.rows()[:3]
        more = f" (+{len(self) - 3} more)" if len(self) > 3 else ""
        return f"{len(self)} unreadable image(s) skipped: " + "; ".join(r["error"] for r in first) + more

    def write(self, path: str | os.PathLike) -> Path:
        """Atomic write: ``.csv`` -> ``index,path,error,count`` rows; anything else -> JSON."""
        path = Path(path)
        if path.suffix.lower() == ".csv":
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=["index", "path", "error", "count"])
            writer.writeheader()
            writer.writerows(self.rows())
            write_text(path, buf.getvalue())
        else:
            write_json(path, {"count": len(self), "skipped": self.rows()})
        return path

    @classmethod
    def read(cls, path: str | os.PathLike) -> "SkipReport":
        path = Path(path)
        report = cls()
        if path.suffix.lower() == ".csv":
            with open(path, newline="") as f:
                report.merge(csv.DictReader(f))
        else:
            report.merge(json.loads(path.read_text()).get("skipped", []))
        return report


def iter_skipped(batches: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Every skipped entry of an iterable of collated batches."""
    for batch in batches:
        yield from batch.get("skipped") or ()
