"""Retrieval scoring: ranked gallery rows + labels -> the registered ranking metrics.

Positives of a query are the gallery images with the query's label (the query itself excluded when
query and gallery are the same images). Metrics are looked up by registry name (``map_at_k``,
``mp_at_k``, ``recall_at_k`` of the ``metrics`` plugin), so ``zoo demo``, ``zoo retrieve`` and
``zoo evaluate`` compute the same figures.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

#: ranking depth of the retrieval metrics (Kaggle GLR retrieval: mAP@100)
METRIC_DEPTH = 100

#: printed name -> (registry name, k); ``None`` k = the full ranking depth
RETRIEVAL_METRICS: dict[str, tuple[str, int | None]] = {
    "mAP@100": ("map_at_k", 100),
    "mAP": ("map_at_k", None),
    "R@1": ("recall_at_k", 1),
    "mP@5": ("mp_at_k", 5),
}


def relevant_rows(
    query_ids: Sequence[str],
    query_labels: Sequence[str | None],
    index_ids: Sequence[str],
    index_labels: Sequence[str | None],
    *,
    exclude_self: bool = False,
) -> list[list[int]]:
    """For each query, the gallery rows sharing its label (its own row left out with ``exclude_self``)."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for row, label in enumerate(index_labels):
        if label is not None:
            by_label[label].append(row)
    own = {i: r for r, i in enumerate(index_ids)} if exclude_self else {}
    out = []
    for qid, label in zip(query_ids, query_labels):
        rows = by_label.get(label, []) if label is not None else []
        skip = own.get(qid, -1)
        out.append([r for r in rows if r != skip])
    return out


def retrieval_metrics(
    query_ids: Sequence[str],
    query_labels: Sequence[str | None],
    index_ids: Sequence[str],
    index_labels: Sequence[str | None],
    rows: np.ndarray,
    *,
    exclude_self: bool = False,
    registry: Any = None,
) -> dict[str, float]:
    """mAP@100, mAP (over the whole ``rows`` depth), R@1 and mP@5 of ranked gallery ``rows`` (Q x K, -1 pad).

    ``mAP`` (full ranking) is reported only when ``rows`` covers every gallery image a query can see.
    Queries without positives are left out (Kaggle convention).
    """
    from zoo.plugins import get_registry

    reg = registry or get_registry()
    relevant = relevant_rows(query_ids, query_labels, index_ids, index_labels, exclude_self=exclude_self)
    ranked = np.asarray(rows, dtype=np.int64)
    full = ranked.shape[1] >= len(index_ids) - (1 if exclude_self else 0)
    out: dict[str, float] = {}
    for name, (metric, k) in RETRIEVAL_METRICS.items():
        if k is None and not full:
            continue
        fn = reg.create("metric", metric, k=int(k or ranked.shape[1]))
        out[name] = float(fn(ranked, relevant))
    return out
