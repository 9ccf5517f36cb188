"""Exact nearest-neighbour search in numpy and the one self-match removal.

* :data:`SearchFn`: the search function the post-processing orchestrator
  (:func:`zoo.inference.neighbours.gather_inputs`) and the pipeline take; :func:`exact_search` is the
  numpy brute-force one (tests, small sets), :func:`zoo.inference.index.faiss_search_fn` the faiss
  one (flat indexes, GPU when present).
* :func:`drop_self`: removes each query's own image from its neighbour list when a set is searched
  in itself (``zoo retrieve --exclude-self``, ``zoo demo``, ``exclude_self`` requests of
  post-processors). :func:`own_rows` finds those rows from string ids.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from zoo.postprocess import PAD_ROW

#: ``search(queries N x d, gallery M x d, k, metric) -> (scores N x k, rows N x k)``, best first,
#: padded with ``-inf``/``-1`` when ``M < k`` (faiss ``IndexFlatIP``/``IndexFlatL2`` semantics, L2
#: returning *squared distances* and ``+inf`` at padding; the orchestrator negates them).
SearchFn = Callable[[np.ndarray, np.ndarray, int, str], tuple[np.ndarray, np.ndarray]]

#: :func:`own_rows` value of a query that is not in the searched set
NOT_IN_SET = -2


def exact_search(queries: np.ndarray, gallery: np.ndarray, k: int, metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:
    """Brute-force :data:`SearchFn` in numpy (tests, small sets); ``l2`` returns squared distances."""
    q = np.asarray(queries, dtype=np.float32)
    g = np.asarray(gallery, dtype=np.float32)
    n, m = q.shape[0], g.shape[0]
    kk = min(k, m)
    scores = np.full((n, k), np.inf if metric == "l2" else -np.inf, dtype=np.float32)
    rows = np.full((n, k), PAD_ROW, dtype=np.int64)
    if kk == 0 or n == 0:
        return scores, rows
    sim = q @ g.T
    if metric == "l2":
        sim = -((q * q).sum(1)[:, None] - 2 * sim + (g * g).sum(1)[None, :])
    part = np.argpartition(-sim, kk - 1, axis=1)[:, :kk] if kk < m else np.tile(np.arange(m), (n, 1))
    vals = np.take_along_axis(sim, part, 1)
    order = np.argsort(-vals, axis=1, kind="stable")
    rows[:, :kk] = np.take_along_axis(part, order, 1)
    best = np.take_along_axis(vals, order, 1)
    scores[:, :kk] = -best if metric == "l2" else best
    return scores, rows


def own_rows(query_ids: Sequence[str], index_ids: Sequence[str]) -> np.ndarray:
    """Each query's row in the searched set (``int64 Q``), :data:`NOT_IN_SET` when it is not there."""
    pos = {i: n for n, i in enumerate(index_ids)}
    return np.fromiter((pos.get(q, NOT_IN_SET) for q in query_ids), dtype=np.int64, count=len(query_ids))


def drop_self(scores: np.ndarray, rows: np.ndarray, own: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove row ``own[q]`` from query ``q``'s list and keep ``k`` columns (``-1``/``-inf`` padded).

    ``scores``/``rows``: ``Q x K`` neighbour lists, best first (``K >= k + 1`` so that ``k`` remain);
    ``own``: ``int Q`` (a negative value = the query is not in the set, its list is only cut).
    The order of the other neighbours is kept.
    """
    rows = np.asarray(rows)
    scores = np.asarray(scores)
    own = np.asarray(own, dtype=np.int64)[:, None]
    is_own = (rows == own) & (own >= 0)
    if k > rows.shape[1]:
        pad = k - rows.shape[1]
        rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=PAD_ROW)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        is_own = np.pad(is_own, ((0, 0), (0, pad)), constant_values=False)
    # stable-move own matches to the end, then cut
    order = np.argsort(is_own, axis=1, kind="stable")
    moved = np.take_along_axis(is_own, order, 1)
    out_rows = np.where(moved, PAD_ROW, np.take_along_axis(rows, order, 1))[:, :k]
    out_scores = np.where(moved, -np.inf, np.take_along_axis(scores, order, 1))[:, :k]
    return out_scores.astype(scores.dtype, copy=False), out_rows
