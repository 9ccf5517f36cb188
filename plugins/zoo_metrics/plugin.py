"""Built-in metrics: GAP (with and without non-landmark queries), mAP@k, mP@k, recall@k.

Metric contract (kind ``metric``): ``registry.create("metric", name, **cfg)`` returns a plain callable
returning a ``float``. ``entry.meta["input"]`` says which:

* ``"recognition"``: ``metric(pred_labels int Q, confidences float Q, true_labels)`` where
  ``true_labels`` is ``int Q`` / padded ``int Q x T`` / list of lists, ``-1``/empty = non-landmark.
* ``"ranking"``: ``metric(ranked int Q x K, relevant)`` with ``-1`` padding (or lists of lists).

The same functions are importable: ``zoo_metrics.gap.gap``, ``zoo_metrics.ranking.map_at_k`` /
``mp_at_k`` / ``recall_at_k`` (see those modules for the exact definitions and seed sources).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from zoo import hookimpl


def ranking_factory(fn_name: str, default_k: int) -> Callable[..., Callable[..., float]]:
    """The factory of ``zoo_metrics.ranking.<fn_name>`` at a fixed ``k`` (imported when it is called)."""

    def factory(k: int = default_k, skip_empty: bool = True) -> Callable[..., float]:
        from zoo_metrics import ranking

        fn = getattr(ranking, fn_name)
        metric = functools.partial(fn, k=int(k), skip_empty=bool(skip_empty))
        functools.update_wrapper(metric, fn)
        return metric

    factory.__name__ = f"create_{fn_name}"
    return factory


def create_gap_landmarks_only() -> Callable[..., float]:
    """GAP over the queries whose truth is a landmark (``zoo_metrics.gap.make_gap(ignore_non_landmarks=True)``)."""
    from zoo_metrics.gap import make_gap

    return make_gap(ignore_non_landmarks=True)


@hookimpl
def zoo_register_metrics(registrar: Any) -> None:
    registrar.add(
        "gap", "zoo_metrics.gap:make_gap",
        description="Global Average Precision, non-landmark queries counted (Kaggle GLR; GLR2020 3rd util.py)",
        input="recognition", test_kwargs={},
    )
    registrar.add(
        "gap_landmarks_only", create_gap_landmarks_only,
        description="GAP ignoring queries whose truth is non-landmark (Henkel & Singer 2020 ignore_non_landmarks)",
        input="recognition", test_kwargs={},
    )
    registrar.add(
        "map_at_k", ranking_factory("map_at_k", 100),
        description="mean Average Precision@k (GLR retrieval mAP@100; k defaults to 100)",
        input="ranking", test_kwargs={"k": 10},
    )
    registrar.add(
        "mp_at_k", ranking_factory("mp_at_k", 5),
        description="mean Precision@k over min(#relevant, k) positions (GUIE 2022 mP@5; k defaults to 5)",
        input="ranking", test_kwargs={},
    )
    registrar.add(
        "recall_at_k", ranking_factory("recall_at_k", 1),
        description="Recall@k: fraction of queries with a relevant id in the top k (k defaults to 1)",
        input="ranking", test_kwargs={"k": 5},
    )
