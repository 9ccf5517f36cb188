"""Seeded train/validation splits of a labelled image list (the seeds' exact splitters).

* :func:`stratified_kfold` -> one fold id per row, ``sklearn.model_selection.StratifiedKFold(k,
  shuffle=True, random_state=seed)`` as upstream: GLR2020 3rd place ``StratifiedKFold(5, shuffle=True,
  random_state=233)`` (SEED_SYSTEMS.md 1.2, ``preprocess.py``), GUIE 2nd place ``StratifiedKFold(20,
  shuffle=True, random_state=999)`` with fold 1 held out (3.3). Same rows, labels and seed -> the same
  folds as upstream.
* :func:`glr2020_validation` -> GLR2020 3rd place's split of one fold: train on every row whose fold is
  not ``k`` (rows without a fold, ``-1``, always train), validate on the fold's rows at positions
  ``position % 15 == 0`` (``df[df.fold == k].reset_index(drop=True).query("index % 15==0")``).
* :func:`holdout_split` -> stratified ``train_test_split(train_size=0.8, test_size=0.2,
  random_state=0xFACED)``, the GLR2021 top-100 split (section 4.3; ``data.py::data_generator`` lines
  121-126). Upstream stratifies on a one-column DataFrame of class codes numbered in order of first
  appearance (``data.py`` lines 81-84), which sklearn turns into *strings* before sorting the classes;
  ``label_codes="first_seen"`` reproduces that (:func:`first_seen_codes`), so the same rows in the same
  order give upstream's split.
* :func:`split_from_spec` -> any of the above from a recipe-style dict or a preset name
  (``"glr2020"``, ``"guie"``, ``"top100"``).

Rule for classes too small to stratify (documented, never a bare sklearn error):

* k-fold: a class with fewer than ``k`` images is spread by sklearn over as many folds as it has
  images (sklearn's ``UserWarning`` is silenced and counted in :attr:`FoldAssignment.small_classes`), so
  the folds stay identical to upstream. When *every* class has fewer than ``k`` images (sklearn raises)
  or there are fewer rows than folds, :class:`SplitError` says to use fewer folds or a hold-out split.
* hold-out: classes with a single image go to the training side (they cannot be both trained on and
  validated); the others are split with ``stratify`` (when no class is a singleton this is exactly
  upstream's call). If the validation side would hold fewer images than there are classes (sklearn
  raises), :class:`SplitError` says to raise ``test_size`` or resample first (``oversample_min``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import numpy as np

from zoo.data.images import DataError

#: GLR2020 3rd place: ``StratifiedKFold(5, shuffle=True, random_state=233)`` (``preprocess.py`` line 9)
GLR2020_FOLDS = {"n_splits": 5, "seed": 233}
#: GLR2020 3rd place validation subsampling of the held-out fold (``train.py`` line 158:
#: ``df[df['fold'] == args.fold].reset_index(drop=True).query("index % 15==0")``)
GLR2020_VAL_EVERY = 15
#: GUIE 2022 2nd place: ``StratifiedKFold(20, shuffle=True, random_state=999)`` (README lines 63-67),
#: fold 1 held out (README line 102 ``--fold 1``)
GUIE_FOLDS = {"n_splits": 20, "seed": 999, "fold": 1}
#: GLR2021 top-100 (``config.py`` lines 8, 64-65; ``data.py`` lines 121-126):
#: ``train_test_split(train_size=0.8, test_size=0.2, random_state=0xFACED, stratify=df[["landmark_id"]])``
TOP100_HOLDOUT = {"test_size": 0.2, "train_size": 0.8, "seed": 0xFACED, "label_codes": "first_seen"}
#: how :func:`holdout_split` hands the labels to sklearn's stratifier
LABEL_CODES = ("as_given", "first_seen")

T = TypeVar("T")


class SplitError(DataError):
    """A split that cannot be made from these labels with these settings."""


@dataclass(frozen=True)
class FoldAssignment:
    """``folds[i]`` is the fold of row ``i`` (``0..n_splits-1``)."""

    folds: np.ndarray
    n_splits: int
    seed: int
    small_classes: int = 0  # classes with fewer than n_splits images (absent from some folds)

    def split(self, fold: int) -> "SplitIndices":
        """Train on every other fold, validate on ``fold``."""
        _check_fold(fold, self.n_splits)
        return SplitIndices(np.flatnonzero(self.folds != fold), np.flatnonzero(self.folds == fold))


@dataclass(frozen=True)
class SplitIndices:
    """Row indices (ascending, int64) of the training and validation sides."""

    train: np.ndarray
    val: np.ndarray

    def take(self, rows: Sequence[T]) -> tuple[list[T], list[T]]:
        """``(train rows, val rows)`` of a list (e.g. :class:`zoo.data.images.ImageRecord` s)."""
        return [rows[int(i)] for i in self.train], [rows[int(i)] for i in self.val]


def _labels(labels: Sequence[Any] | np.ndarray) -> np.ndarray:
    arr = np.asarray([str(v) for v in labels]) if not isinstance(labels, np.ndarray) else labels
    if arr.ndim != 1 or len(arr) == 0:
        raise SplitError("split: need a non-empty 1-D sequence of labels (one per image)")
    return arr


def _check_fold(fold: int, n_splits: int) -> None:
    if not 0 <= int(fold) < n_splits:
        raise SplitError(f"fold {fold} does not exist: folds are 0..{n_splits - 1}")


def stratified_kfold(labels: Sequence[Any] | np.ndarray, n_splits: int = 5, seed: int = 233,
                     shuffle: bool = True) -> FoldAssignment:
    """Fold id per row via ``StratifiedKFold(n_splits, shuffle, random_state=seed)`` (defaults: GLR2020 3rd)."""
    from sklearn.model_selection import StratifiedKFold

    y = _labels(labels)
    if n_splits < 2:
        raise SplitError(f"stratified k-fold needs n_splits >= 2 (got {n_splits}); use holdout_split for one split")
    if len(y) < n_splits:
        raise SplitError(f"{len(y)} images cannot be split into {n_splits} folds: use fewer folds")
    _, counts = np.unique(y, return_counts=True)
    if counts.max() < n_splits:
        raise SplitError(
            f"every class has fewer than n_splits={n_splits} images (largest: {counts.max()}): use fewer "
            "folds, a hold-out split (holdout_split) or resample first (oversample_min)"
        )
    folds = np.full(len(y), -1, dtype=np.int64)
    skf = StratifiedKFold(n_splits, shuffle=shuffle, random_state=seed if shuffle else None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class.*", category=UserWarning)
        for k, (_, val_idx) in enumerate(skf.split(np.zeros(len(y)), y)):
            folds[val_idx] = k
    return FoldAssignment(folds, n_splits, seed, int((counts < n_splits).sum()))


def glr2020_validation(folds: np.ndarray | FoldAssignment, fold: int = 0,
                       every: int = GLR2020_VAL_EVERY) -> SplitIndices:
    """GLR2020 3rd place: train = rows with ``folds != fold`` (``-1`` = no fold: always train);
    val = the ``fold`` rows, in row order, at positions ``p % every == 0`` (default 15).

    The other 14/15 of the fold are in neither side, as upstream.
    """
    arr = folds.folds if isinstance(folds, FoldAssignment) else np.asarray(folds, dtype=np.int64)
    n_splits = folds.n_splits if isinstance(folds, FoldAssignment) else int(arr.max()) + 1
    _check_fold(fold, n_splits)
    if every < 1:
        raise SplitError(f"glr2020_validation: every must be >= 1 (got {every})")
    in_fold = np.flatnonzero(arr == fold)
    return SplitIndices(np.flatnonzero(arr != fold), in_fold[::every])


def first_seen_codes(labels: Sequence[Any] | np.ndarray) -> np.ndarray:
    """``str(i)`` per row, ``i`` = the rank of the row's label by first appearance.

    GLR2021 top-100 numbers its classes in order of first appearance (``data.py`` lines 81-84) and
    stratifies on a one-column DataFrame of those numbers, which sklearn maps to strings
    (``" ".join(row.astype(str))``) before sorting the classes; these codes give the same order.
    """
    y = _labels(labels)
    _, first, inverse = np.unique(y, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return np.asarray([str(int(r)) for r in rank[inverse.reshape(-1)]])


def holdout_split(labels: Sequence[Any] | np.ndarray, test_size: float = 0.2, seed: int = 0xFACED,
                  stratify: bool = True, train_size: float | None = None,
                  label_codes: str = "as_given") -> SplitIndices:
    """Stratified hold-out ``train_test_split(train_size, test_size, random_state=seed)`` (defaults:
    GLR2021 top-100's fraction and seed; its preset also sets ``train_size=0.8`` and
    ``label_codes="first_seen"``, see :data:`TOP100_HOLDOUT`).

    ``label_codes``: ``as_given`` stratifies on the labels themselves, ``first_seen`` on
    :func:`first_seen_codes` (upstream top-100). Singleton classes stay on the training side (see the
    module docstring).
    """
    from sklearn.model_selection import train_test_split

    if label_codes not in LABEL_CODES:
        raise SplitError(f"holdout_split: label_codes must be one of {', '.join(LABEL_CODES)} (got '{label_codes}')")
    y = first_seen_codes(labels) if label_codes == "first_seen" else _labels(labels)
    if not 0 < test_size < 1:
        raise SplitError(f"holdout_split: test_size must be a fraction in (0, 1) (got {test_size})")
    if train_size is not None and not (0 < train_size < 1 and train_size + test_size <= 1 + 1e-9):
        raise SplitError(
            f"holdout_split: train_size must be a fraction in (0, 1) with train_size + test_size <= 1 "
            f"(got train_size={train_size}, test_size={test_size})"
        )
    rows = np.arange(len(y))
    if not stratify:
        tr, va = _train_test_split(train_test_split, rows, None, test_size, train_size, seed)
        return SplitIndices(np.sort(tr).astype(np.int64), np.sort(va).astype(np.int64))
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    single = counts[inverse] == 1
    pool = rows[~single]
    if len(pool) == 0:
        raise SplitError("holdout_split: every class has a single image, nothing can be validated; "
                         "resample first (oversample_min) or pass stratify=False")
    n_classes = int((counts > 1).sum())
    n_test = int(np.ceil(test_size * len(pool)))
    if n_test < n_classes or len(pool) - n_test < n_classes:
        raise SplitError(
            f"holdout_split: {len(pool)} images of {n_classes} classes cannot be stratified with "
            f"test_size={test_size} ({n_test} validation images < one per class): raise test_size, "
            "resample first (oversample_min) or pass stratify=False"
        )
    tr, va = _train_test_split(train_test_split, pool, y[pool], test_size, train_size, seed)
    train = np.sort(np.concatenate([tr, rows[single]])).astype(np.int64)
    return SplitIndices(train, np.sort(va).astype(np.int64))


def _train_test_split(fn: Any, rows: np.ndarray, strata: np.ndarray | None, test_size: float,
                      train_size: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's call (``train_size`` only when given, as upstream passes both), its errors as SplitError."""
    kw: dict[str, Any] = {"test_size": test_size, "random_state": seed, "shuffle": True, "stratify": strata}
    if train_size is not None:
        kw["train_size"] = train_size
    try:
        tr, va = fn(rows, **kw)
    except ValueError as exc:
        raise SplitError(f"holdout_split: sklearn cannot split {len(rows)} rows this way: {exc}") from None
    return np.asarray(tr), np.asarray(va)


#: named split presets of the seeds, usable as ``{"type": name}`` in :func:`split_from_spec`
SPLIT_PRESETS: dict[str, dict[str, Any]] = {
    "glr2020": {"type": "glr2020", **GLR2020_FOLDS, "fold": 0, "every": GLR2020_VAL_EVERY},
    "guie": {"type": "kfold", **GUIE_FOLDS},
    "top100": {"type": "holdout", **TOP100_HOLDOUT},
}


def split_from_spec(labels: Sequence[Any] | np.ndarray, spec: dict[str, Any] | str) -> SplitIndices:
    """A split from a recipe-style spec (the ``type`` picks the splitter, other keys are its arguments).

    * ``{"type": "holdout", "test_size": 0.2, "seed": 0xFACED}`` -> :func:`holdout_split`;
    * ``{"type": "kfold", "n_splits": 20, "seed": 999, "fold": 1}`` -> :func:`stratified_kfold` then the fold;
    * ``{"type": "glr2020", "n_splits": 5, "seed": 233, "fold": 0, "every": 15}`` -> :func:`glr2020_validation`;
    * ``"glr2020"`` / ``"guie"`` / ``"top100"`` (or ``{"type": preset, **overrides}``): the seeds' presets.
    """
    spec = {"type": spec} if isinstance(spec, str) else dict(spec)
    kind = str(spec.pop("type", ""))
    if kind in SPLIT_PRESETS:
        base = dict(SPLIT_PRESETS[kind])
        kind = str(base.pop("type"))
        spec = {**base, **spec}
    try:
        if kind == "holdout":
            return holdout_split(labels, **spec)
        if kind in ("kfold", "glr2020"):
            fold = int(spec.pop("fold", 0))
            every = int(spec.pop("every", GLR2020_VAL_EVERY))
            folds = stratified_kfold(labels, **spec)
            return glr2020_validation(folds, fold, every) if kind == "glr2020" else folds.split(fold)
    except TypeError as exc:  # an unknown argument
        raise SplitError(f"split '{kind}': {exc}") from None
    raise SplitError(
        f"unknown split type '{kind}': use holdout, kfold, glr2020 or a preset ({', '.join(SPLIT_PRESETS)})"
    )
