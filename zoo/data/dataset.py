"""Labelled image datasets for training: the label map, the dataset, its collate and the skip report.

* :class:`LabelMap` maps raw labels (GLDv2 ``landmark_id``, folder names) to contiguous class indices
  in **sorted** order, numeric labels numerically, i.e. GLR2020 3rd place's
  ``{landmark_id: idx for idx, landmark_id in enumerate(sorted(df.landmark_id.unique()))}``
  (SEED_SYSTEMS.md 1.2). :meth:`LabelMap.counts` returns images per class *aligned with those indices*,
  which is what the dynamic ArcFace margins need (section 0.4). The GLR2021 top-100 code indexed
  classes by order of appearance but margins by sorted id (section 4.2); here both come from the same
  map, so that misalignment cannot happen. Saved as JSON ``{"labels": [...]}`` (atomic), the same
  layout as the trainer's ``labels.json``.
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
from zoo.data.images import DataError, ImageReadError, ImageRecord, read_image

#: version of the label-map JSON written by :meth:`LabelMap.save`
LABEL_MAP_FORMAT = 1


def label_sort_key(label: str) -> tuple[int, Any]:
    """Sort key of raw labels: integers numerically first (``2 < 10``), then other strings."""
    try:
        return (0, int(label))
    except (TypeError, ValueError):
        return (1, str(label))


class LabelMap:
    """Raw label (string) -> contiguous class index ``0..C-1``, sorted by :func:`label_sort_key`.

    Build with :meth:`from_labels` / :meth:`from_records` (sorted unique, the GLR2020 3rd-place rule) or
    directly from ``names`` already in index order (a loaded checkpoint's map, kept as is).
    """

    def __init__(self, names: Sequence[Any]) -> None:
        self.names: list[str] = [str(n) for n in names]
        self._index: dict[str, int] = {}
        for i, name in enumerate(self.names):
            if name in self._index:
                raise DataError(f"label map: label '{name}' appears twice (indices {self._index[name]} and {i})")
            self._index[name] = i

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def from_labels(cls, labels: Iterable[Any]) -> "LabelMap":
        """Sorted unique labels; ``None`` (unlabelled) is ignored."""
        unique = {str(v) for v in labels if v is not None}
        if not unique:
            raise DataError("label map: no labelled images (every label is missing)")
        return cls(sorted(unique, key=label_sort_key))

    @classmethod
    def from_records(cls, records: Iterable[ImageRecord]) -> "LabelMap":
        return cls.from_labels(r.label for r in records)

    # -- lookup -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def __contains__(self, label: Any) -> bool:
        return str(label) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and other.names == self.names

    def __repr__(self) -> str:
        head = ", ".join(self.names[:5]) + (", ..." if len(self.names) > 5 else "")
        return f"LabelMap({len(self.names)} classes: {head})"

    def index(self, label: Any) -> int:
        """The class index of ``label``; :class:`DataError` if the map does not hold it."""
        try:
            return self._index[str(label)]
        except KeyError:
            raise DataError(
                f"label '{label}' is not in the label map ({len(self)} classes); it was not seen in the "
                "training data the map was built from"
            ) from None

    def get(self, label: Any, default: int = -1) -> int:
        return self._index.get(str(label), default) if label is not None else default

    def label(self, index: int) -> str:
        return self.names[int(index)]

    def encode(self, labels: Iterable[Any], unknown: int | None = None) -> np.ndarray:
        """Indices (int64) of ``labels``; unknown labels raise, or map to ``unknown`` when given (e.g. -1)."""
        if unknown is None:
            return np.fromiter((self.index(v) for v in labels), dtype=np.int64)
        return np.fromiter((self.get(v, unknown) for v in labels), dtype=np.int64)

    def targets(self, records: Iterable[ImageRecord], unknown: int | None = None) -> np.ndarray:
        return self.encode((r.label for r in records), unknown=unknown)

    def counts(self, records_or_labels: Iterable[Any]) -> np.ndarray:
        """Images per class, ``counts[i]`` for class index ``i`` (length C, zeros included).

        Accepts :class:`ImageRecord` s or raw labels; labels outside the map are ignored. This is the
        ``n`` of the dynamic-margin formula (SEED_SYSTEMS.md 0.4), aligned with the head's rows.
        """
        idx = [
            self.get(v.label if isinstance(v, ImageRecord) else v, -1) for v in records_or_labels
        ]
        arr = np.asarray([i for i in idx if i >= 0], dtype=np.int64)
        return np.bincount(arr, minlength=len(self)).astype(np.int64)

    # -- persistence ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": LABEL_MAP_FORMAT, "num_classes": len(self), "labels": list(self.names)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LabelMap":
        if "labels" not in data or not isinstance(data["labels"], list):
            raise DataError("label map JSON needs a 'labels' list (class index -> raw label)")
        return cls(data["labels"])

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``{"format", "num_classes", "labels"}`` atomically; returns the path."""
        write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LabelMap":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(
                f"{path}: label map not found (it is saved next to the checkpoint as labels.json)"
            ) from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: label map is not valid JSON ({exc})") from None
        if isinstance(data, list):  # a bare list of labels in index order
            return cls(data)
        return cls.from_dict(data)


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
