"""Seeded splits: upstream-identical folds and hold-out, GLR2020's every-15th validation, small classes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold, train_test_split

from zoo.data.splits import (
    GLR2020_FOLDS,
    SplitError,
    glr2020_validation,
    holdout_split,
    stratified_kfold,
)


def _labels(n_classes: int = 30, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 40, n_classes)
    return np.repeat(np.arange(n_classes) * 7 + 3, sizes)  # sparse raw ids


def test_kfold_matches_sklearn_call_of_glr2020():
    y = _labels()
    fa = stratified_kfold(y, **GLR2020_FOLDS)
    ref = np.full(len(y), -1)
    for k, (_, va) in enumerate(StratifiedKFold(5, shuffle=True, random_state=233).split(np.zeros(len(y)), y)):
        ref[va] = k
    assert np.array_equal(fa.folds, ref) and set(fa.folds.tolist()) == set(range(5))
    # every class is spread over the folds (stratified)
    for c in np.unique(y):
        assert len(set(fa.folds[y == c].tolist())) == 5
    # another seed gives other folds, the same seed the same ones
    assert not np.array_equal(stratified_kfold(y, 5, seed=1).folds, fa.folds)
    assert np.array_equal(stratified_kfold(y, 5, seed=233).folds, fa.folds)


def test_glr2020_validation_every_15th_row_of_the_fold():
    y = _labels(40)
    fa = stratified_kfold(y, 5, 233)
    sp = glr2020_validation(fa, fold=2)
    in_fold = np.flatnonzero(fa.folds == 2)
    assert np.array_equal(sp.val, in_fold[::15])
    assert np.array_equal(sp.train, np.flatnonzero(fa.folds != 2))
    assert not set(sp.train) & set(in_fold)
    # rows without a fold (-1: the non-clean GLDv2 rows upstream) always train
    folds = fa.folds.copy()
    folds[:10] = -1
    sp2 = glr2020_validation(folds, fold=0)
    assert set(range(10)) <= set(sp2.train.tolist())
    with pytest.raises(SplitError, match="fold 7 does not exist"):
        fa.split(7)


def test_kfold_small_classes_rule():
    y = np.array([0] * 12 + [1] * 2 + [2])  # classes 1 and 2 are smaller than 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn's warning is handled, not leaked
        fa = stratified_kfold(y, 5, seed=3)
    assert fa.small_classes == 2
    assert (fa.folds >= 0).all()
    with pytest.raises(SplitError, match="every class has fewer than n_splits=5"):
        stratified_kfold(np.array([0, 0, 1, 1, 2, 2]), 5)
    with pytest.raises(SplitError, match="use fewer folds"):
        stratified_kfold(np.array([0, 1, 0]), 5)


def test_holdout_matches_upstream_and_keeps_singletons_in_train():
    y = _labels(20, seed=4)
    sp = holdout_split(y, 0.2, seed=0xFACED)
    tr, va = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0xFACED, stratify=y)
    assert np.array_equal(sp.train, np.sort(tr)) and np.array_equal(sp.val, np.sort(va))
    assert len(np.intersect1d(sp.train, sp.val)) == 0 and len(sp.train) + len(sp.val) == len(y)
    # every class is on both sides
    assert set(y[sp.val]) == set(y)
    y2 = np.concatenate([y, [999, 998]])  # two singleton classes
    sp2 = holdout_split(y2, 0.2, seed=0xFACED)
    assert {len(y), len(y) + 1} <= set(sp2.train.tolist())
    assert not {999, 998} & set(y2[sp2.val].tolist())
    with pytest.raises(SplitError, match="cannot be stratified"):
        holdout_split(np.repeat(np.arange(10), 2), 0.2)


def test_split_take_rows():
    y = np.repeat(np.arange(4), 5)
    sp = holdout_split(y, 0.25, seed=1)
    rows = [f"r{i}" for i in range(len(y))]
    train, val = sp.take(rows)
    assert len(train) == len(sp.train) and val[0] == rows[int(sp.val[0])]


def test_split_from_spec_presets():
    from zoo.data.splits import split_from_spec

    y = _labels(25, seed=2)
    assert np.array_equal(split_from_spec(y, "top100").val,
                          holdout_split(y, 0.2, 0xFACED, train_size=0.8, label_codes="first_seen").val)
    g = split_from_spec(y, {"type": "glr2020", "fold": 1})
    assert np.array_equal(g.val, glr2020_validation(stratified_kfold(y, 5, 233), 1).val)
    k = split_from_spec(y, {"type": "kfold", "n_splits": 4, "seed": 1, "fold": 3})
    assert np.array_equal(k.val, np.flatnonzero(stratified_kfold(y, 4, 1).folds == 3))
    with pytest.raises(SplitError, match="unknown split type"):
        split_from_spec(y, "random")
    with pytest.raises(SplitError, match="split 'holdout'"):
        split_from_spec(y, {"type": "holdout", "bogus": 1})
