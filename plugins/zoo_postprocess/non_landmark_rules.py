"""GLR2021 top-100 non-landmark rules: frequent classes and large detected objects become non-landmark.

Seed: vadimtimakin/Kaggle-Google-Landmark README, inference steps 1-2 (SEED_SYSTEMS.md 4.4):

* ``non-landmark-frequency``: a class predicted more than ``max_count=20`` times over the test
  predictions becomes ``NON_LANDMARK`` (counts over the previous post-processor's landmark predictions).
* ``non-landmark-detector``: boxes of a registered ``detector`` (upstream: YOLOv5, all classes) with
  confidence ``>= min_confidence=0.5`` whose total area exceeds ``image_area * area_fraction``
  (``1/2.7``) make the query ``NON_LANDMARK``. Total area = the sum of the (image-clipped) box areas,
  as "total box area" reads upstream; overlapping boxes count twice.

Both transform the previous output (``needs`` ``previous``); they keep the confidences.

Detector contract (kind ``detector``): ``registry.create("detector", name, **cfg)`` returns
``detect(images: list[H x W x 3 uint8]) -> list[(boxes float N x 4 xyxy pixels, conf float N)]``. No
detector weights ship offline, so none is registered here.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from zoo.postprocess import NON_LANDMARK, Output, PostprocessError, PostprocessInputs, Recognition
from zoo.registry import Registry
from zoo_postprocess.base import BasePostprocessor


def _previous_recognition(previous: Output | None, who: str) -> Recognition:
    if not isinstance(previous, Recognition):
        raise PostprocessError(
            f"{who} rewrites a recognition result: put it after a recognition post-processor "
            "(e.g. henkel-singer-2020) in the recipe's inference.postprocess list"
        )
    return previous


class FrequencyRule(BasePostprocessor):
    """GLR2021 top-100: a class predicted more than ``max_count`` (20) times becomes non-landmark."""

    name = "non-landmark-frequency"
    needs = frozenset({"previous"})

    def __init__(self, max_count: int = 20) -> None:
        self.max_count = int(max_count)

    def __call__(self, inputs: PostprocessInputs, previous: Output | None = None) -> Recognition:
        rec = _previous_recognition(previous, self.name)
        labels = rec.labels
        landmark = labels >= 0
        lab = labels[landmark]
        too_many = np.zeros(labels.shape[0], dtype=bool)
        if lab.size and int(lab.max()) < 16 * labels.shape[0] + 1024:
            counts = np.bincount(lab)  # O(Q + classes)
            too_many[landmark] = counts[lab] > self.max_count
        elif lab.size:
            _, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
            too_many[landmark] = counts[inverse] > self.max_count
        return rec.with_labels(np.where(too_many, NON_LANDMARK, labels))


def large_object_mask(
    detections: Sequence[tuple[Any, Any]], image_shapes: Sequence[tuple[int, int]], min_confidence: float, area_fraction: float
) -> np.ndarray:
    """``bool`` per image: confident boxes cover more than ``area_fraction`` of it (vectorised over boxes)."""
    n = len(detections)
    if n != len(image_shapes):
        raise PostprocessError(f"the detector returned {n} results for {len(image_shapes)} images")
    boxes, confs, owner = [], [], []
    for i, (b, c) in enumerate(detections):
        b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
        c = np.asarray(c, dtype=np.float64).reshape(-1)
        if b.shape[0] != c.shape[0]:
            raise PostprocessError(f"detector result {i}: {b.shape[0]} boxes but {c.shape[0]} confidences")
        boxes.append(b)
        confs.append(c)
        owner.append(np.full(c.shape[0], i, dtype=np.int64))
    shapes = np.asarray(image_shapes, dtype=np.float64).reshape(n, 2)
    if not n:
        return np.zeros(0, dtype=bool)
    b = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    c = np.concatenate(confs) if confs else np.zeros(0)
    o = np.concatenate(owner) if owner else np.zeros(0, dtype=np.int64)
    h, w = shapes[o, 0], shapes[o, 1]
    x1, x2 = np.clip(b[:, 0], 0, w), np.clip(b[:, 2], 0, w)
    y1, y2 = np.clip(b[:, 1], 0, h), np.clip(b[:, 3], 0, h)
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0) * (c >= min_confidence)
    total = np.bincount(o, weights=area, minlength=n)
    return total > shapes[:, 0] * shapes[:, 1] * area_fraction


class DetectorRule(BasePostprocessor):
    """GLR2021 top-100: confident detections (conf >= 0.5) covering > 1/2.7 of the image make it non-landmark."""

    name = "non-landmark-detector"
    needs = frozenset({"previous", "images"})

    def __init__(
        self,
        detector: str,
        detector_kwargs: dict[str, Any] | None = None,
        min_confidence: float = 0.5,
        area_fraction: float = 1 / 2.7,
        batch_size: int = 32,
        registry: Registry | None = None,
    ) -> None:
        if not detector:
            raise PostprocessError(f"{self.name}: name a registered detector (see: zoo components detector)")
        self.detector_name = str(detector)
        self.detector_kwargs = dict(detector_kwargs or {})
        self.min_confidence = float(min_confidence)
        self.area_fraction = float(area_fraction)
        self.batch_size = max(1, int(batch_size))
        self._registry = registry
        self._detect: Any = None

    def detector(self) -> Any:
        """The detector, created on first use (so recipes can be built where it is not installed)."""
        if self._detect is None:
            if self._registry is None:
                from zoo.plugins import get_registry

                self._registry = get_registry()
            self._detect = self._registry.create("detector", self.detector_name, **self.detector_kwargs)
        return self._detect

    def __call__(self, inputs: PostprocessInputs, previous: Output | None = None) -> Recognition:
        rec = _previous_recognition(previous, self.name)
        if inputs.images is None:
            raise PostprocessError(f"{self.name} needs the query images (inputs.images)")
        images = inputs.images
        if len(images) != rec.num_queries:
            raise PostprocessError(f"{self.name}: {len(images)} images for {rec.num_queries} queries")
        detect = self.detector()
        flags = []
        for start in range(0, len(images), self.batch_size):
            batch = [np.asarray(images[i]) for i in range(start, min(start + self.batch_size, len(images)))]
            flags.append(large_object_mask(
                detect(batch), [im.shape[:2] for im in batch], self.min_confidence, self.area_fraction
            ))
        large = np.concatenate(flags) if flags else np.zeros(0, dtype=bool)
        return rec.with_labels(np.where(large, NON_LANDMARK, rec.labels))
