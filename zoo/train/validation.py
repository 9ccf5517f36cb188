"""Validation metrics computed each epoch: GAP (Kaggle landmark recognition) and top-1 accuracy.

GAP follows GLR2020 3rd place ``util.py::global_average_precision_score`` (identical in GUIE 2022):
predictions sorted by confidence (descending), precision accumulated at every correct prediction,
divided by the number of queries that have a target. Confidence = the head's max cosine, as GLR2020
3rd place validates. Queries whose label is not among the training classes (target -1) count as
queries without a target.
"""

from __future__ import annotations

import numpy as np


def gap_score(pred: np.ndarray, conf: np.ndarray, target: np.ndarray) -> float:
    """Global average precision of one prediction per query; ``target < 0`` means no target."""
    pred, conf, target = np.asarray(pred), np.asarray(conf, dtype=np.float64), np.asarray(target)
    n_with_target = int((target >= 0).sum())
    if n_with_target == 0:
        return float("nan")
    order = np.argsort(-conf, kind="stable")
    correct = (pred[order] == target[order]) & (target[order] >= 0)
    precision = np.cumsum(correct) / np.arange(1, len(correct) + 1)
    return float((precision * correct).sum() / n_with_target)


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Top-1 accuracy over queries with a target."""
    pred, target = np.asarray(pred), np.asarray(target)
    known = target >= 0
    return float((pred[known] == target[known]).mean()) if known.any() else float("nan")
