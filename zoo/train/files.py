"""Training data from files: a GLDv2-style CSV (``id,landmark_id``) or an image-folder tree.

Labels map to class indices in sorted order (numeric labels numerically: GLR2020 3rd place's
``landmark_id -> sorted index``); the map is saved with every checkpoint (``labels.json`` and the
``zoo_labels`` metadata of ``model.safetensors``). Images are decoded once per access with
:func:`zoo.data.images.read_image` (EXIF-rotated RGB); an unreadable file becomes a skipped item that
the collate drops and the run lists in ``skipped.json``, never a crash.

Datasets are the data plugins' :class:`zoo.data.dataset.ImageDataset` over a
:class:`zoo.data.labels.LabelMap`; pipelines are registered ``augmentation`` components
(``factory(image_size, *, mean, std, **cfg) -> callable(image=np) -> {"image": tensor}``); a stage
without one uses ``resize_val`` (the seeds' validation transform ``Resize(S, S) + Normalize()``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from zoo.data.dataset import ImageDataset
from zoo.data.labels import LabelMap
from zoo.data.images import ImageRecord, list_images
from zoo.registry import Registry
from zoo.train.data import RetrievalSet, Split, TrainDataError, check_single_validation, hold_out, unseen_labels

log = logging.getLogger(__name__)


class FileSource:
    """A :class:`zoo.train.data.DataSource` over CSVs / image folders.

    ``train``: data key -> (CSV or folder, images root or None); ``val`` likewise (its labels are
    mapped through the training label map; unknown ones count as queries without a target). Without
    ``val``, a ``holdout`` split spec holds validation rows of each stage's data out (see
    :mod:`zoo.train.data`). ``val_query`` (CSV or folder, images root): queries searched in the ``val``
    gallery for retrieval validation (without it every ``val`` image queries the others).
    """

    def __init__(
        self,
        train: dict[str, tuple[str | Path, str | Path | None]],
        val: tuple[str | Path, str | Path | None] | None,
        *,
        registry: Registry,
        mean: Sequence[float],
        std: Sequence[float],
        val_query: tuple[str | Path, str | Path | None] | None = None,
    ) -> None:
        self.train = {k: (Path(a), Path(b) if b else None) for k, (a, b) in train.items()}
        self.val = (Path(val[0]), Path(val[1]) if val[1] else None) if val else None
        if val_query and not val:
            raise TrainDataError("--val-query gives the queries of a retrieval validation: give its gallery with --val")
        self.val_query = (Path(val_query[0]), Path(val_query[1]) if val_query[1] else None) if val_query else None
        self.registry = registry
        self.mean, self.std = tuple(mean), tuple(std)
        self._records: dict[Any, list[ImageRecord]] = {}
        self._held_out: dict[str, list[ImageRecord]] = {}

    def _list(self, src: Path, images: Path | None, what: str = "training") -> list[ImageRecord]:
        key = (src, images)
        if key not in self._records:
            recs = list_images(src, images)
            unlabelled = sum(r.label is None for r in recs)
            if unlabelled:
                log.warning("%s: %d images without a label are not used for %s", src, unlabelled, what)
            self._records[key] = [r for r in recs if r.label is not None]
            if not self._records[key]:
                raise TrainDataError(
                    f"{src}: no labelled images (a CSV needs a landmark_id/label/instance column; a folder "
                    "needs one sub-folder per class)"
                )
        return self._records[key]

    def _transform(self, spec: dict[str, Any] | None, image_size: int) -> Callable[..., Any]:
        spec = spec or {"type": "resize_val"}
        kw = {k: v for k, v in spec.items() if k != "type"}
        return self.registry.create("augmentation", spec["type"], image_size, mean=self.mean, std=self.std, **kw)

    def train_split(self, key: str, *, image_size: int, augment: dict[str, Any] | None, seed: int,
                    resample: dict[str, Any] | None = None, holdout: dict[str, Any] | None = None) -> Split:
        if key not in self.train:
            raise TrainDataError(
                f"the stage trains on data '{key}' but only {', '.join(self.train)} was given: pass "
                f"--data {key}=PATH"
            )
        records = self._list(*self.train[key])
        if resample:
            kw = {k: v for k, v in resample.items() if k != "type"}
            before = len(records)
            records = list(self.registry.create("sampler", resample["type"], **kw)(records, seed=seed))
            log.info("resample %s: %d -> %d training images", resample["type"], before, len(records))
        label_map = LabelMap.from_records(records)
        counts = None
        if holdout is not None:
            check_single_validation(self.val is not None)
            targets = label_map.targets(records)
            counts = np.bincount(targets, minlength=len(label_map)).astype(np.int64)
            records, self._held_out[key] = hold_out(targets, holdout).take(records)
        ds = ImageDataset(records, self._transform(augment, image_size), label_map=label_map, max_side=2 * image_size)
        return Split(ds, np.asarray(ds.targets, dtype=np.int64), [label_map.label(i) for i in range(len(label_map))],
                     row_counts=counts)

    def val_split(self, *, image_size: int, augment: dict[str, Any] | None, label_names: Sequence[str],
                  key: str | None = None) -> Split | None:
        if key is not None and key in self._held_out:
            records = self._held_out[key]
        elif self.val is None:
            return None
        else:
            records = self._list(*self.val, what="validation")
        label_map = LabelMap(list(label_names))
        ds = ImageDataset(records, self._transform(augment, image_size), label_map=label_map, max_side=2 * image_size)
        return Split(ds, np.asarray(ds.targets, dtype=np.int64), list(label_names),
                     unseen_labels=unseen_labels([r.label for r in records], label_map))

    def retrieval_set(self, key: str | None = None) -> RetrievalSet | None:
        """The validation images for retrieval: ``val`` (with ``val_query``), else the rows the recipe's
        split held out of data ``key``."""
        if key is not None and key in self._held_out:
            return RetrievalSet(list(self._held_out[key]))
        if self.val is None:
            return None
        gallery = self._list(*self.val, what="validation")
        queries = self._list(*self.val_query, what="validation") if self.val_query else None
        return RetrievalSet(list(gallery), None if queries is None else list(queries))
