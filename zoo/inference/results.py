"""Neighbour lists as ids: search rows -> ids and the ``zoo search`` CSV (self-matches: :mod:`zoo.inference.search`)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from zoo import atomic


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
