"""The one label encoder: raw labels (strings) <-> contiguous ``int64`` ids, for training, inference and evaluation.

:class:`LabelMap` maps raw labels (GLDv2 ``landmark_id``, folder names, image ids) to contiguous
indices in **sorted** order, numeric labels numerically, i.e. GLR2020 3rd place's
``{landmark_id: idx for idx, landmark_id in enumerate(sorted(df.landmark_id.unique()))}``
(SEED_SYSTEMS.md 1.2). Missing labels (``None`` or ``""``) are never classes.

* Training: :meth:`LabelMap.counts` returns images per class *aligned with those indices*, which is
  what the dynamic ArcFace margins need (section 0.4). The GLR2021 top-100 code indexed classes by
  order of appearance but margins by sorted id (section 4.2); here both come from the same map, so
  that misalignment cannot happen. Saved as JSON ``{"labels": [...]}`` (atomic), the trainer's
  ``labels.json``.
* Inference: gallery/train labels -> the ``int64`` class ids of :mod:`zoo.postprocess`
  (``encode(labels, unknown=NON_LANDMARK)``) and back (:meth:`LabelMap.decode`, ``None`` for
  non-landmark) when writing submissions.
* Evaluation: prediction and truth strings -> ids the metrics compare (:meth:`LabelMap.encode_lists`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from zoo.atomic import write_json
from zoo.data.images import DataError, ImageRecord

#: version of the label-map JSON written by :meth:`LabelMap.save`
LABEL_MAP_FORMAT = 1
#: index of an unknown / missing label where one is asked for (``zoo.postprocess.NON_LANDMARK``)
NO_LABEL = -1


def label_sort_key(label: str) -> tuple[int, Any]:
    """Sort key of raw labels: integers numerically first (``2 < 10``), then other strings."""
    try:
        return (0, int(label))
    except (TypeError, ValueError):
        return (1, str(label))


def is_missing(label: Any) -> bool:
    """``None`` or ``""``: an unlabelled image (non-landmark / no prediction)."""
    return label is None or label == ""


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
    def from_labels(cls, labels: Iterable[Any], *, allow_empty: bool = False) -> "LabelMap":
        """Sorted unique labels; missing ones (``None``, ``""``) are ignored.

        No label at all is a :class:`DataError` (a training set without labels) unless ``allow_empty``.
        """
        unique = {str(v) for v in labels if not is_missing(v)}
        if not unique and not allow_empty:
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

    def get(self, label: Any, default: int = NO_LABEL) -> int:
        return self._index.get(str(label), default) if not is_missing(label) else default

    def label(self, index: int) -> str:
        return self.names[int(index)]

    def decode(self, index: int) -> str | None:
        """The raw label of ``index``; ``None`` for a negative index (``NON_LANDMARK``) or one outside the map."""
        i = int(index)
        return self.names[i] if 0 <= i < len(self.names) else None

    def encode(self, labels: Iterable[Any], unknown: int | None = None) -> np.ndarray:
        """Indices (int64) of ``labels``; unknown labels raise, or map to ``unknown`` when given (e.g. -1)."""
        if unknown is None:
            return np.fromiter((self.index(v) for v in labels), dtype=np.int64)
        return np.fromiter((self.get(v, unknown) for v in labels), dtype=np.int64)

    def encode_lists(self, lists: Sequence[Sequence[Any]], width: int | None = None) -> np.ndarray:
        """``int64 Q x W`` indices of ``Q`` label lists, each cut to ``width`` (default: the longest)
        and padded with ``NO_LABEL``; at least one column. Every label must be in the map."""
        w = max((len(x) for x in lists), default=0) if width is None else int(width)
        out = np.full((len(lists), max(w, 1)), NO_LABEL, dtype=np.int64)
        for q, items in enumerate(lists):
            enc = [self.index(x) for x in items[:w]]
            out[q, : len(enc)] = enc
        return out

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


