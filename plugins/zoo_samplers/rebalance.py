"""Re-balancers: seeded functions that rewrite the training record list before an epoch's sampling.

Contract: ``factory(**cfg) -> rebalance(records: list[ImageRecord], seed: int) -> list[ImageRecord]``.
Classes keep the order in which they first appear; within a class, kept records keep their order and
repeats follow the originals. The output is a pure function of ``(records, seed)``. Unlabelled records
(``label is None``) are dropped (they cannot be trained on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from zoo.data.images import ImageRecord
from zoo.registry import ZooError


class RebalanceError(ZooError):
    """Re-balancing settings that cannot work."""


def group_by_label(records: Sequence[ImageRecord]) -> dict[str, list[ImageRecord]]:
    """Labelled records per label, labels in order of first appearance."""
    groups: dict[str, list[ImageRecord]] = {}
    for r in records:
        if r.label is not None:
            groups.setdefault(str(r.label), []).append(r)
    return groups


def upsample_group(group: list[ImageRecord], target: int, rng: np.random.Generator) -> list[ImageRecord]:
    """Repeat the whole group ``target // n`` times, then add ``target % n`` distinct random members.

    (GUIE 2nd place's rule; a group already at or above ``target`` is returned unchanged.)
    """
    n = len(group)
    if n >= target or n == 0:
        return list(group)
    reps, rest = divmod(target, n)
    extra = sorted(rng.choice(n, size=rest, replace=False).tolist()) if rest else []
    return group * reps + [group[i] for i in extra]


def cap_group(group: list[ImageRecord], cap: int, rng: np.random.Generator) -> list[ImageRecord]:
    """A random subset of ``cap`` members (original order kept) when the group is larger."""
    if len(group) <= cap:
        return list(group)
    keep = np.sort(rng.choice(len(group), size=cap, replace=False))
    return [group[int(i)] for i in keep]


def _check_positive(name: str, value: int | None, what: str) -> None:
    if value is not None and int(value) < 1:
        raise RebalanceError(f"{what}: {name} must be >= 1 (got {value})")


@dataclass(frozen=True)
class ClassRebalance:
    """Drop classes with < ``min_images``, cap each class at ``cap`` (random), upsample to ``upsample_to``.

    Any step is off when its value is ``None``. The random generator is
    ``numpy.random.default_rng(seed)``, drawn class by class in first-appearance order (cap, then
    upsample), so the result depends only on ``(records, seed)``.
    """

    min_images: int | None = None
    cap: int | None = None
    upsample_to: int | None = None
    name: str = "rebalance"

    def __post_init__(self) -> None:
        for key in ("min_images", "cap", "upsample_to"):
            _check_positive(key, getattr(self, key), self.name)
        if self.cap is not None and self.upsample_to is not None and self.upsample_to > self.cap:
            raise RebalanceError(f"{self.name}: upsample_to={self.upsample_to} exceeds cap={self.cap}")

    def __call__(self, records: Sequence[ImageRecord], seed: int = 0) -> list[ImageRecord]:
        rng = np.random.default_rng(int(seed))
        out: list[ImageRecord] = []
        for group in group_by_label(records).values():
            if self.min_images is not None and len(group) < self.min_images:
                continue
            if self.cap is not None:
                group = cap_group(group, self.cap, rng)
            if self.upsample_to is not None:
                group = upsample_group(group, self.upsample_to, rng)
            out.extend(group)
        if not out:
            raise RebalanceError(
                f"{self.name}: no class kept (min_images={self.min_images}); lower min_images or check the labels"
            )
        return out


def guie_rebalance(min_images: int = 3, cap: int = 100, upsample_to: int = 20) -> ClassRebalance:
    """GUIE 2022 2nd place (SEED_SYSTEMS.md 3.3): drop classes with < 3 images, keep a random 100 per
    class, then upsample each class to >= 20 (whole group repeated floor(20/n) times + a random remainder)."""
    return ClassRebalance(min_images=min_images, cap=cap, upsample_to=upsample_to, name="guie_rebalance")


def oversample_min(min_per_class: int = 5, *, value: int | None = None) -> ClassRebalance:
    """GLR2021 top-100 ``oversampling.py`` ``by_value`` (SEED_SYSTEMS.md 4.3): every class with fewer than
    ``min_per_class`` = 5 images is oversampled up to 5 (whole group repeats + a random remainder); no
    downsampling. ``value`` is upstream's name for the same number (it wins when given)."""
    return ClassRebalance(upsample_to=int(value if value is not None else min_per_class), name="oversample_min")


def min_class_size(min_images: int = 100) -> ClassRebalance:
    """GLR2019 CS230 (SEED_SYSTEMS.md 5.1): train only on classes with >= 100 images
    (``MIN_SAMPLES_PER_CLASS``); other classes are dropped, nothing is resampled."""
    return ClassRebalance(min_images=min_images, name="min_class_size")
