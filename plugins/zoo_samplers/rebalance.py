"""Re-balancers: seeded functions that rewrite the training record list before an epoch's sampling.

Contract: ``factory(**cfg) -> rebalance(records: list[ImageRecord], seed: int) -> list[ImageRecord]``.
Classes keep the order in which they first appear; within a class, kept records keep their order and
repeats follow the originals. The output is a pure function of ``(records, seed)``. Unlabelled records
(``label is None``) are dropped (they cannot be trained on).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Mapping, Sequence

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


#: GUIE 2022 2nd place, ``Data_preprocess.ipynb`` (XL-H/GUIE-2nd-Place-Solution @ 9274914): each source
#: dataset drops its classes with fewer than N images before the merge (``if len(group) < N: continue``),
#: keyed by the dataset folder name the notebooks write (``final_data_224/<name>/images``, ``Data_Merge``).
GUIE_MIN_IMAGES: dict[str, int] = {
    "Shopee": 3,             # cell 2
    "Landmark2021": 5,       # cell 5 (GLDv2-clean)
    "JD_Products_10K": 5,    # cell 8
    "Art_MET": 3,            # cell 11
    "Aliproducts": 5,        # cell 14
    "Stanford_Cars": 5,      # cell 17
    "Stanford_Products": 5,  # cell 20
    "DeepFashion_CTS": 3,    # cell 23
    "Fruit": 5,              # cell 26 (Grocery Store)
    "Fashion_200K": 3,       # cell 29
    "Food2022": 5,           # cell 32
    "rp2k": 5,               # cell 35
    "DeepFashion2": 3,       # cell 38
    "Food2021": 5,           # cell 41
}


def dataset_of(record: ImageRecord, names: Sequence[str]) -> str | None:
    """The first folder of the record's id (or path) that is one of ``names`` (case-insensitive), else None."""
    lower = {n.lower(): n for n in names}
    for part in (*PurePath(str(record.id)).parts, *PurePath(str(record.path)).parts):
        hit = lower.get(part.lower())
        if hit is not None:
            return hit
    return None


def _check_positive(name: str, value: int | None, what: str) -> None:
    if value is not None and int(value) < 1:
        raise RebalanceError(f"{what}: {name} must be >= 1 (got {value})")


@dataclass(frozen=True)
class ClassRebalance:
    """Drop classes with < ``min_images``, cap each class at ``cap`` (random), upsample to ``upsample_to``.

    Any step is off when its value is ``None``. ``min_images_by_dataset`` (``(name, N)`` pairs) gives a
    class of source dataset ``name`` its own threshold; a class's dataset is :func:`dataset_of` its first
    record, and classes of no listed dataset use ``min_images``. The random generator is
    ``numpy.random.default_rng(seed)``, drawn class by class in first-appearance order (cap, then
    upsample), so the result depends only on ``(records, seed)``.
    """

    min_images: int | None = None
    cap: int | None = None
    upsample_to: int | None = None
    name: str = "rebalance"
    min_images_by_dataset: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        for key in ("min_images", "cap", "upsample_to"):
            _check_positive(key, getattr(self, key), self.name)
        for dataset, n in self.min_images_by_dataset:
            _check_positive(f"min_images_by_dataset[{dataset}]", n, self.name)
        if self.cap is not None and self.upsample_to is not None and self.upsample_to > self.cap:
            raise RebalanceError(f"{self.name}: upsample_to={self.upsample_to} exceeds cap={self.cap}")

    def threshold(self, group: Sequence[ImageRecord]) -> int | None:
        """The minimum class size that applies to this class (its dataset's, else ``min_images``)."""
        if self.min_images_by_dataset and group:
            table = dict(self.min_images_by_dataset)
            dataset = dataset_of(group[0], list(table))
            if dataset is not None:
                return int(table[dataset])
        return self.min_images

    def __call__(self, records: Sequence[ImageRecord], seed: int = 0) -> list[ImageRecord]:
        rng = np.random.default_rng(int(seed))
        out: list[ImageRecord] = []
        for group in group_by_label(records).values():
            least = self.threshold(group)
            if least is not None and len(group) < least:
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


def _pairs(table: Mapping[str, Any] | None) -> tuple[tuple[str, int], ...]:
    if table is None:
        return ()
    if not isinstance(table, Mapping):
        raise RebalanceError(f"guie_rebalance: min_images_by_dataset must map dataset names to counts, got {table!r}")
    return tuple((str(k), int(v)) for k, v in table.items())


def guie_rebalance(min_images: int = 3, cap: int = 100, upsample_to: int = 20,
                   min_images_by_dataset: Mapping[str, int] | None = None) -> ClassRebalance:
    """GUIE 2022 2nd place (SEED_SYSTEMS.md 3.3): drop classes with fewer than N images, N per source
    dataset as ``Data_preprocess.ipynb`` (:data:`GUIE_MIN_IMAGES`: 5 for 9 of the 14 datasets, 3 for the
    rest; classes of an unlisted dataset use ``min_images`` = 3, README L55), keep a random 100 per class
    (``Data_Merge.ipynb`` cell 34), then upsample each class to >= 20 (cell 36: whole group repeated
    floor(20/n) times + a random remainder)."""
    table = GUIE_MIN_IMAGES if min_images_by_dataset is None else min_images_by_dataset
    return ClassRebalance(min_images=min_images, cap=cap, upsample_to=upsample_to, name="guie_rebalance",
                          min_images_by_dataset=_pairs(table))


def oversample_min(min_per_class: int = 5, *, value: int | None = None) -> ClassRebalance:
    """GLR2021 top-100 ``oversampling.py`` ``by_value`` (SEED_SYSTEMS.md 4.3): every class with fewer than
    ``min_per_class`` = 5 images is oversampled up to 5 (whole group repeats + a random remainder); no
    downsampling. ``value`` is upstream's name for the same number (it wins when given)."""
    return ClassRebalance(upsample_to=int(value if value is not None else min_per_class), name="oversample_min")


def min_class_size(min_images: int = 100) -> ClassRebalance:
    """GLR2019 CS230 (SEED_SYSTEMS.md 5.1): train only on classes with >= 100 images
    (``MIN_SAMPLES_PER_CLASS``); other classes are dropped, nothing is resampled."""
    return ClassRebalance(min_images=min_images, name="min_class_size")
