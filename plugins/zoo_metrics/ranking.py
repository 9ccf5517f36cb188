"""Retrieval metrics on ranked id lists: mAP@k, mean precision@k (GUIE) and recall@k.

Inputs (all vectorised over queries, processed in chunks to bound memory):

* ``ranked``: ``int Q x K`` index ids per query, best first, ``-1`` = padding (or a list of lists).
* ``relevant``: ``int Q x R`` padded relevant ids per query (``-1`` = padding) or a list of lists.

Ids are non-negative integers (map string ids with a shared vocabulary, as ``zoo evaluate`` does).
A repeated id in a ranking counts once (its first position). Queries without any relevant id are left
out of the mean (``skip_empty=True``, the Kaggle GLR retrieval convention: only queries with ground
truth are scored); ``skip_empty=False`` counts them as 0.

Definitions (SEED_SYSTEMS.md 0.7; no seed repository implements them):

* mAP@k (GLR2019/2021 retrieval, ``k=100``):
  ``1/Q * sum_q 1/min(m_q, k) * sum_{j<=k} P_q(j) * rel_q(j)``, ``m_q`` = number of relevant ids.
* mP@k (GUIE 2022, ``k=5``): ``1/Q * sum_q 1/min(m_q, k) * sum_{j<=min(m_q, k)} rel_q(j)``.
* recall@k: fraction of queries with at least one relevant id among the first ``k`` (metric-learning
  Recall@K).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo_metrics.padded import PAD, as_padded

#: queries per chunk of the vectorised hit computation
CHUNK = 65536


#: up to this many relevant columns, membership is tested column by column (R passes of compares);
#: wider relevant lists use one sort + binary search
COLUMN_TEST_MAX = 48


def _hits_chunk(ranked: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hits of one chunk of queries (first occurrence of a relevant id, never padding)."""
    q, k = ranked.shape
    rel = np.sort(relevant, axis=1)
    distinct = rel != PAD
    distinct[:, 1:] &= rel[:, 1:] != rel[:, :-1]
    n_rel = distinct.sum(1)
    if rel.shape[1] <= COLUMN_TEST_MAX:
        # one pass per relevant column; only the first position holding that id counts (duplicates skip)
        hits = np.zeros((q, k), dtype=bool)
        small = max(int(ranked.max(initial=0)), int(rel.max(initial=0))) < np.iinfo(np.int32).max
        r32 = ranked.astype(np.int32) if small else ranked  # half the memory traffic per pass
        lines = np.arange(q)
        for j in range(rel.shape[1]):
            if not distinct[:, j].any():
                continue
            match = r32 == np.where(distinct[:, j], rel[:, j], -2).astype(r32.dtype)[:, None]
            first = match.argmax(axis=1)
            has = match[lines, first]
            hits[lines[has], first[has]] = True
        return hits, n_rel
    top = max(int(ranked.max(initial=0)), int(rel.max(initial=0))) + 2
    offsets = np.arange(q, dtype=np.int64)[:, None] * top
    rel_keys = (offsets + rel + 1)[distinct]  # row-major, so globally sorted
    # sort each ranking by (id, column): duplicates become adjacent, first occurrence first
    packed = np.sort((np.maximum(ranked, PAD) + 1) * k + np.arange(k, dtype=np.int64), axis=1)
    ids = packed // k  # id + 1 (0 = padding)
    cols = packed - ids * k
    keys = offsets + ids
    if rel_keys.size:
        pos = np.searchsorted(rel_keys, keys.ravel()).reshape(q, k)
        found = rel_keys[np.minimum(pos, rel_keys.size - 1)] == keys
    else:
        found = np.zeros((q, k), dtype=bool)
    found &= ids > 0
    found[:, 1:] &= ids[:, 1:] != ids[:, :-1]
    hits = np.zeros((q, k), dtype=bool)
    np.put_along_axis(hits, cols, found, 1)
    return hits, n_rel


def relevance(ranked: Any, relevant: Any, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(hits bool Q x K', n_relevant int Q)``: whether each ranked id is relevant (first ``k`` columns)."""
    r = as_padded(ranked)
    rel = as_padded(relevant)
    if r.shape[0] != rel.shape[0]:
        raise ValueError(f"{r.shape[0]} rankings but {rel.shape[0]} relevant lists; they must match per query")
    if k is not None:
        r = r[:, :k]
    hits = np.zeros(r.shape, dtype=bool)
    n_rel = np.zeros(r.shape[0], dtype=np.int64)
    for start in range(0, r.shape[0], CHUNK):
        sl = slice(start, start + CHUNK)
        hits[sl], n_rel[sl] = _hits_chunk(r[sl], rel[sl])
    return hits, n_rel


def _mean(per_query: np.ndarray, n_rel: np.ndarray, skip_empty: bool) -> float:
    if skip_empty:
        per_query = per_query[n_rel > 0]
    return float(per_query.mean()) if per_query.size else 0.0


def average_precision_at_k(ranked: Any, relevant: Any, k: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Per-query AP@k (``float64 Q``) and the number of relevant ids per query."""
    hits, n_rel = relevance(ranked, relevant, k)
    q = hits.shape[0]
    # sparse over the hits (row-major): the j-th hit of a line sits at rank col + 1 with precision j / rank
    line, col = np.nonzero(hits)
    per_line = np.bincount(line, minlength=q)
    starts = np.cumsum(per_line) - per_line
    nth = np.arange(line.size) - starts[line] + 1
    numerator = np.bincount(line, weights=nth / (col + 1.0), minlength=q)
    denom = np.minimum(n_rel, k)
    ap = np.divide(numerator, denom, out=np.zeros(q), where=denom > 0)
    return ap, n_rel


def map_at_k(ranked: Any, relevant: Any, k: int = 100, skip_empty: bool = True) -> float:
    """mAP@k (GLR retrieval: ``k=100``)."""
    ap, n_rel = average_precision_at_k(ranked, relevant, k)
    return _mean(ap, n_rel, skip_empty)


def mp_at_k(ranked: Any, relevant: Any, k: int = 5, skip_empty: bool = True) -> float:
    """Mean precision@k as in GUIE 2022 (``k=5``): precision over the first ``min(m_q, k)`` positions."""
    hits, n_rel = relevance(ranked, relevant, k)
    denom = np.minimum(n_rel, k)
    cols = np.arange(hits.shape[1])[None, :]
    counted = (hits & (cols < denom[:, None])).sum(1)
    per_query = np.divide(counted, denom, out=np.zeros(hits.shape[0]), where=denom > 0)
    return _mean(per_query, n_rel, skip_empty)


def recall_at_k(ranked: Any, relevant: Any, k: int = 1, skip_empty: bool = True) -> float:
    """Fraction of queries with a relevant id among their first ``k``."""
    hits, n_rel = relevance(ranked, relevant, k)
    return _mean(hits.any(axis=1).astype(np.float64), n_rel, skip_empty)
