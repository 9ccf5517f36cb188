"""Neighbour lists: search rows -> ids, self-match removal, and the ``zoo search`` CSV."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from zoo import atomic


def drop_self(
    query_ids: Sequence[str], index_ids: Sequence[str], scores: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own image from its neighbours (query set == gallery), keep ``k`` columns.

    ``scores``/``rows`` must hold at least ``k + 1`` columns.
    """
    pos = {i: n for n, i in enumerate(index_ids)}
    own = np.array([pos.get(q, -2) for q in query_ids], dtype=np.int64)[:, None]
    keep = rows != own
    out_s = np.full((rows.shape[0], k), -np.inf, dtype=np.float32)
    out_r = np.full((rows.shape[0], k), -1, dtype=np.int64)
    for q in range(rows.shape[0]):
        r = rows[q][keep[q]][:k]
        out_r[q, : r.size] = r
        out_s[q, : r.size] = scores[q][keep[q]][:k]
    return out_s, out_r


def neighbour_ids(index_ids: Sequence[str], rows: np.ndarray) -> list[list[str]]:
    return [[index_ids[r] for r in row if r >= 0] for row in rows]


def write_neighbours_csv(
    path: str | Path,
    batches: Iterable[tuple[Sequence[str], np.ndarray, np.ndarray]],
    index_ids: Sequence[str],
) -> int:
    """``id,images,scores`` rows from ``(query ids, scores, rows)`` batches: space-separated neighbour
    ids (best first) and their scores. Written atomically, batch by batch; returns the row count."""
    n = 0
    with atomic.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "images", "scores"])
        for query_ids, scores, rows in batches:
            for q, qid in enumerate(query_ids):
                valid = rows[q] >= 0
                w.writerow([
                    qid,
                    " ".join(index_ids[r] for r in rows[q][valid]),
                    " ".join(f"{s:.6f}" for s in scores[q][valid]),
                ])
                n += 1
    return n
