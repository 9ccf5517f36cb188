"""Data as the trainer sees it: per-stage splits, deterministic batches, a collate that drops
unreadable images.

Batches are assembled with the data plugins' :func:`zoo.data.dataset.collate` (unreadable images
dropped and listed under ``batch["skipped"]``). A :class:`DataSource` hands the trainer, for each
stage, a :class:`Split` (dataset + integer targets aligned with a label map). :class:`TensorSource`
keeps images in memory (tests, benchmarks); :mod:`zoo.train.files` builds splits from CSV / image
folders with the data plugins.

Validation hold-out (the recipe's ``train.split``, e.g. GLR2020 3rd place's fold rule): the source
splits the rows of a stage's data with :func:`zoo.data.splits.split_from_spec` (:func:`hold_out`),
trains on one side and hands the other to ``val_split(..., key=KEY)``. As GLR2020 3rd place
``train.py`` does, the label map and the class counts of the dynamic margins are taken over *all*
rows of the step's data, before the split.

Determinism (bit-identical resume): the batch order of an epoch is a pure function of (seed, epoch,
rank) through the sampler's ``set_epoch``; each sample's augmentation randomness is seeded from
(seed, epoch, index) through :class:`SeededDataset`; loaders get their own ``torch.Generator`` so
creating one never consumes the global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from zoo.data.images import ImageRecord
from zoo.data.labels import LabelMap
from zoo.data.splits import SplitIndices, split_from_spec
from zoo.registry import ZooError


class TrainDataError(ZooError):
    """Training data that cannot be used as configured."""


@dataclass
class Split:
    """A dataset with its integer targets (aligned with ``label_names``, the label map)."""

    dataset: Dataset
    targets: np.ndarray
    label_names: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)
    #: class counts over every row of the step's data when a validation hold-out took some of them
    row_counts: np.ndarray | None = None
    #: labels of a validation split that are none of the training classes (their targets are -1)
    unseen_labels: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def class_counts(self) -> np.ndarray:
        """Images per class index over all rows of the step's data, held-out validation rows included
        (GLR2020-style dynamic margins need these aligned with the head)."""
        if self.row_counts is not None:
            return np.asarray(self.row_counts, dtype=np.int64)
        t = self.targets[self.targets >= 0]
        return np.bincount(t, minlength=self.num_classes).astype(np.int64)


@dataclass
class RetrievalSet:
    """Images to validate retrieval on: every ``gallery`` image queries the others (``queries`` None),
    or each of ``queries`` queries the ``gallery``. Labels are instance ids; positives of a query are
    the gallery images with its label (see :mod:`zoo.train.retrieval_validation`)."""

    gallery: list[ImageRecord]
    queries: list[ImageRecord] | None = None

    @property
    def all_vs_all(self) -> bool:
        return self.queries is None

    def labels(self) -> list[str]:
        """The distinct labels of the set (queries and gallery)."""
        recs = self.gallery + (self.queries or [])
        return sorted({str(r.label) for r in recs if r.label is not None})


class DataSource(Protocol):
    """What the trainer asks for at each stage start. ``holdout`` (a split spec) is passed only when
    the recipe holds validation rows out; ``val_split`` then gets the stage's data ``key``.
    ``retrieval_set`` gives the validation images as files for retrieval validation (None: the source
    has no files to give, e.g. in-memory data)."""

    def train_split(self, key: str, *, image_size: int, augment: dict[str, Any] | None, seed: int,
                    resample: dict[str, Any] | None = None, holdout: dict[str, Any] | None = None) -> Split: ...

    def val_split(self, *, image_size: int, augment: dict[str, Any] | None, label_names: Sequence[str],
                  key: str | None = None) -> Split | None: ...

    def retrieval_set(self, key: str | None = None) -> RetrievalSet | None: ...


def hold_out(targets: np.ndarray, spec: dict[str, Any]) -> SplitIndices:
    """Train/validation rows of a stage's data by the recipe's split ``spec``
    (:func:`zoo.data.splits.split_from_spec`). ``targets`` are the label-map indices of the rows: the
    label map sorts numeric labels numerically, so the splitters see the classes in the order of the
    raw ids, as upstream."""
    return split_from_spec(np.asarray(targets, dtype=np.int64), spec)


def check_single_validation(has_val: bool) -> None:
    if has_val:
        raise TrainDataError(
            "a validation set was given and the recipe's train.split holds validation rows out too: "
            "use one (set train.split=null to validate on the given set only)"
        )


def unseen_labels(labels: Sequence[Any], label_map: LabelMap) -> list[str]:
    """The distinct labels that are no class of ``label_map`` (sorted)."""
    return sorted({str(v) for v in labels if v is not None and v not in label_map})


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 31-bit seed for one sample's augmentation in one epoch."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])
    return int(ss.generate_state(1, dtype=np.uint32)[0] & 0x7FFFFFFF)


def seed_transform(transform: Any, value: int) -> bool:
    """Seed an albumentations-style pipeline (``set_random_seed``) if it has one; True if seeded."""
    for obj in (transform, getattr(transform, "compose", None), getattr(transform, "pipeline", None),
                getattr(transform, "transform", None)):
        fn = getattr(obj, "set_random_seed", None)
        if callable(fn):
            fn(value)
            return True
    return False


class SeededDataset(Dataset):
    """Wraps a dataset whose items depend on randomness: before item ``i`` of epoch ``e`` it calls
    ``dataset.seed_item(seed)`` (or seeds the dataset's ``transform``) with ``sample_seed(seed, e, i)``."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        value = sample_seed(self.seed, self.epoch, index)
        hook = getattr(self.dataset, "seed_item", None)
        if callable(hook):
            hook(value)
        else:
            seed_transform(getattr(self.dataset, "transform", None), value)
        return self.dataset[index]


def epoch_batches(sampler: Any, epoch: int, batch_size: int, drop_last: bool) -> list[list[int]]:
    """The (per-rank) batches of one epoch, a pure function of the sampler's seed and ``epoch``."""
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    idx = [int(i) for i in iter(sampler)]
    n = len(idx) // batch_size if drop_last else -(-len(idx) // batch_size)
    return [idx[b * batch_size:(b + 1) * batch_size] for b in range(n)]


# -- in-memory source -----------------------------------------------------------------------------
class TensorImageDataset(Dataset):
    """uint8 ``N x H x W x 3`` images in memory, resized (bilinear) to ``image_size``; items are uint8
    ``3 x S x S`` (the trainer normalises on the device with the recipe's mean/std). ``flip=True``
    adds a seeded horizontal flip (p=0.5) so resume tests cover the augmentation RNG."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, image_size: int, flip: bool = False) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.size = int(image_size)
        self.flip = flip
        self._rng = np.random.default_rng(0)

    def seed_item(self, value: int) -> None:
        self._rng = np.random.default_rng(value)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = self.images[i]
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            y = F.interpolate(x[None].float(), size=(self.size, self.size), mode="bilinear", align_corners=False)[0]
            x = y.round_().clamp_(0, 255).to(torch.uint8)
        if self.flip and self._rng.random() < 0.5:
            x = x.flip(-1)
        return {"image": x.contiguous(), "target": int(self.targets[i]), "index": int(i)}


class TensorSource:
    """A :class:`DataSource` over in-memory arrays (tests, benchmarks). ``train`` maps data keys
    (stage ``data:``) to ``(images, labels)``; labels may be any hashable values."""

    def __init__(
        self,
        train: dict[str, tuple[np.ndarray, Sequence[Any]]],
        val: tuple[np.ndarray, Sequence[Any]] | None = None,
        *,
        flip: bool = False,
    ) -> None:
        self.train = train
        self.val = val
        self.flip = flip
        self._held_out: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def train_split(self, key: str, *, image_size: int, augment: dict[str, Any] | None, seed: int,
                    resample: dict[str, Any] | None = None, holdout: dict[str, Any] | None = None) -> Split:
        if resample:
            raise TrainDataError("TensorSource does not re-balance records; drop train.resample")
        if key not in self.train:
            raise TrainDataError(f"stage data '{key}' not given; have: {', '.join(self.train)}")
        images, labels = self.train[key]
        label_map = LabelMap.from_labels(labels)
        names = [label_map.label(i) for i in range(len(label_map))]
        targets = label_map.encode(labels)
        counts = None
        if holdout is not None:
            check_single_validation(self.val is not None)
            rows = hold_out(targets, holdout)
            counts = np.bincount(targets, minlength=len(names)).astype(np.int64)
            self._held_out[key] = (images[rows.val], targets[rows.val])
            images, targets = images[rows.train], targets[rows.train]
        ds = TensorImageDataset(images, targets, image_size, flip=self.flip)
        return Split(ds, targets, names, row_counts=counts)

    def val_split(self, *, image_size: int, augment: dict[str, Any] | None, label_names: Sequence[str],
                  key: str | None = None) -> Split | None:
        if key is not None and key in self._held_out:
            images, targets = self._held_out[key]
            return Split(TensorImageDataset(images, targets, image_size), targets, list(label_names))
        if self.val is None:
            return None
        images, labels = self.val
        label_map = LabelMap(list(label_names))
        targets = label_map.encode(labels, unknown=-1)
        ds = TensorImageDataset(images, targets, image_size)
        return Split(ds, targets, list(label_names), unseen_labels=unseen_labels(labels, label_map))

    def retrieval_set(self, key: str | None = None) -> RetrievalSet | None:
        """None: images in memory are not files that ``zoo embed`` could read (retrieval validation
        embeds files exactly as ``zoo embed`` does)."""
        return None



