"""Global Average Precision (micro-AP), the Kaggle Google Landmark Recognition metric.

Seed systems (SEED_SYSTEMS.md 0.7): GLR2020 3rd place ``util.py::global_average_precision_score``
(dict version) and Henkel & Singer 2020 / GLR2021 top-100 ``gap`` (array version with non-landmark
handling). With one prediction per query sorted by confidence (descending)::

    GAP = 1/M * sum_i P(i) * rel(i)

``M`` = number of queries whose ground truth holds at least one landmark, ``P(i)`` = precision of the
first ``i`` counted predictions, ``rel(i)`` = 1 when prediction ``i`` is one of its query's allowed
labels. A ``NON_LANDMARK`` (-1) prediction is not counted (no rank, as in the array version);
``ignore_non_landmarks=True`` also drops queries whose truth is non-landmark, so wrong guesses on
distractors no longer cost precision (the array version's ``ignore_non_landmarks``). With no -1
predictions and ``ignore_non_landmarks=False`` this equals the dict version. Ties in confidence keep
the input order (stable sort).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo_metrics.padded import PAD, as_padded


def gap(
    pred_labels: Any,
    confidences: Any,
    true_labels: Any,
    ignore_non_landmarks: bool = False,
) -> float:
    """GAP of ``Q`` predictions.

    ``pred_labels``: ``int Q`` (-1 = non-landmark / no prediction). ``confidences``: ``float Q``.
    ``true_labels``: ``int Q`` (-1 = non-landmark), a padded ``int Q x T`` of allowed labels or a list of
    lists (empty = non-landmark). Returns 0.0 when no query has a landmark.
    """
    pred = np.asarray(pred_labels, dtype=np.int64).reshape(-1)
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    truth = as_padded(true_labels)
    if not (pred.shape[0] == conf.shape[0] == truth.shape[0]):
        raise ValueError(
            f"gap: {pred.shape[0]} predictions, {conf.shape[0]} confidences and {truth.shape[0]} truths must match"
        )
    has_target = (truth != PAD).any(axis=1)
    m = int(has_target.sum())
    if m == 0:
        return 0.0
    counted = pred != PAD
    if ignore_non_landmarks:
        counted &= has_target
    correct = counted & (truth == pred[:, None]).any(axis=1)
    order = np.argsort(-conf[counted], kind="stable")
    hits = correct[counted][order].astype(np.float64)
    if hits.size == 0:
        return 0.0
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float((precision * hits).sum() / m)


def make_gap(ignore_non_landmarks: bool = False):
    """Factory: ``gap(pred_labels, confidences, true_labels)`` with a fixed non-landmark policy."""

    def metric(pred_labels: Any, confidences: Any, true_labels: Any, ignore_non_landmarks: bool = ignore_non_landmarks) -> float:
        return gap(pred_labels, confidences, true_labels, ignore_non_landmarks=ignore_non_landmarks)

    metric.__name__ = "gap_landmarks_only" if ignore_non_landmarks else "gap"
    return metric
