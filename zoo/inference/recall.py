"""Recall of an approximate index against exact search, on held-out gallery vectors, and the search
parameter (``nprobe`` / ``efSearch``) that reaches a recall target.

When ``zoo index`` builds an approximate index it holds out :data:`RECALL_QUERIES` gallery vectors
(:func:`heldout_rows`; they are left out of the training sample but stay in the index), finds their
exact top ``k`` while the gallery streams past (:class:`HeldOut`: ``faiss.knn`` per chunk merged in a
``faiss.ResultHeap``), and measures recall@k of the index on them, each query's own row removed from
both lists (:func:`zoo.inference.search.drop_self`). :func:`tune_search` walks a doubling ladder of the
search parameter and keeps the smallest value that reaches the target, or the value where recall
stops growing (quantised indexes saturate below it).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from zoo.inference.search import drop_self

RECALL_K = 100
RECALL_QUERIES = 1000
RECALL_TARGET = 0.95
#: a ladder step that adds less recall than this counts as saturated
SATURATION = 0.002


def heldout_rows(n: int, count: int, seed: int = 0) -> np.ndarray:
    """``min(count, n // 10)`` distinct gallery rows, sorted (``int64``), drawn with ``seed``."""
    count = int(min(count, n // 10))
    if count <= 0:
        return np.zeros(0, np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False)).astype(np.int64)


class HeldOut:
    """Held-out gallery rows: their vectors (:meth:`collect`), then their exact top ``k + 1``
    (:meth:`add_exact`) as chunks of the gallery stream past, in row order from ``offset``."""

    def __init__(self, rows: np.ndarray, d: int, k: int = RECALL_K) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        self.k = int(k)
        self.vectors = np.zeros((len(self.rows), d), np.float32)
        self._have = np.zeros(len(self.rows), bool)
        self._heap: Any = None
        self._seen = 0
        self._complete = False

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def collected(self) -> bool:
        return bool(self._have.all())

    @property
    def exact_seen(self) -> int:
        """Gallery rows the exact search has covered so far."""
        return self._seen

    @property
    def has_truth(self) -> bool:
        return self._complete

    def in_chunk(self, offset: int, size: int) -> np.ndarray:
        """Positions (into :attr:`rows`) of the held-out rows inside ``[offset, offset + size)``."""
        lo, hi = np.searchsorted(self.rows, [offset, offset + size])
        return np.arange(lo, hi)

    def collect(self, offset: int, x: np.ndarray) -> None:
        pos = self.in_chunk(offset, x.shape[0])
        self.vectors[pos] = x[self.rows[pos] - offset]
        self._have[pos] = True

    def add_exact(self, offset: int, x: np.ndarray) -> None:
        """Merge the exact inner-product top ``k + 1`` of the queries in this chunk (rows from ``offset``)."""
        import faiss

        if self._heap is None:
            self._heap = faiss.ResultHeap(len(self.rows), self.k + 1, keep_max=True)
        if offset != self._seen:
            raise ValueError(f"chunks out of order: got rows from {offset}, expected {self._seen}")
        kk = min(self.k + 1, x.shape[0])
        dist, idx = faiss.knn(self.vectors, np.ascontiguousarray(x, dtype=np.float32), kk,
                              metric=faiss.METRIC_INNER_PRODUCT)
        self._heap.add_result(dist, idx + offset)
        self._seen += x.shape[0]

    def finish_exact(self, n_total: int) -> None:
        if self._heap is None or self._seen != n_total:
            raise ValueError(f"exact search saw {self._seen} of {n_total} gallery rows")
        self._heap.finalize()
        self._complete = True

    def truth(self) -> np.ndarray:
        """Exact top-``k`` rows of each held-out query, its own row removed (``-1`` padded)."""
        if not self.has_truth:
            raise ValueError("exact neighbours not computed yet")
        return drop_self(self._heap.D, self._heap.I, self.rows, self.k)[1]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / |truth| (``-1`` entries ignored on both sides)."""
    hits, total = 0, 0
    for f, t in zip(np.asarray(found), np.asarray(truth)):
        tset = set(t[t >= 0].tolist())
        if tset:
            hits += len(tset.intersection(f[f >= 0].tolist()))
            total += len(tset)
    return hits / total if total else 1.0


@dataclass
class RecallReport:
    """recall@k of an index on held-out gallery vectors, at the search parameter chosen."""

    k: int
    queries: int
    recall: float
    param: str | None = None  # "nprobe" | "efSearch" | None (nothing to tune)
    value: int | None = None
    target: float | None = None
    queries_per_s: float | None = None
    ladder: list[tuple[int, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ladder"] = [list(x) for x in self.ladder]
        return out

    def describe(self) -> str:
        at = f" at {self.param}={self.value}" if self.param else ""
        speed = f", {self.queries_per_s:,.0f} queries/s here" if self.queries_per_s else ""
        goal = ""
        if self.target and self.param and self.recall < self.target:
            goal = (f"; the target {self.target:g} is out of this index's reach (recall stops growing): for more "
                    "recall give --memory more room (a larger graph or code) or use --type flat (exact search)")
        return (f"recall@{self.k} {self.recall:.3f}{at} against exact search on {self.queries} held-out gallery "
                f"vectors (own row excluded){speed}{goal}")


def measure(search: Callable[[np.ndarray, int], np.ndarray], held: HeldOut) -> tuple[float, float]:
    """(recall@k, queries/s) of ``search(queries, k) -> rows`` on the held-out vectors."""
    t0 = time.perf_counter()
    rows = search(held.vectors, held.k + 1)
    dt = max(time.perf_counter() - t0, 1e-9)
    found = drop_self(np.zeros(rows.shape, np.float32), rows, held.rows, held.k)[1]
    return recall_at_k(found, held.truth()), len(held) / dt


def tune_search(
    search: Callable[[np.ndarray, int], np.ndarray],
    held: HeldOut,
    *,
    param: str | None,
    ladder: Sequence[int] = (),
    apply: Callable[[int], None] | None = None,
    target: float = RECALL_TARGET,
) -> RecallReport:
    """Smallest ``ladder`` value whose recall reaches ``target`` (or where recall stops growing);
    ``apply(value)`` sets it on the index, and the chosen value is left applied."""
    if not param or not ladder or apply is None:
        recall, qps = measure(search, held)
        return RecallReport(held.k, len(held), recall, param, None, None, qps)
    tried: list[tuple[int, float, float]] = []
    for value in ladder:
        apply(int(value))
        recall, qps = measure(search, held)
        tried.append((int(value), recall, qps))
        if recall >= target:
            break
        if len(tried) > 1 and recall - tried[-2][1] < SATURATION:
            tried.pop()  # no gain: keep the smaller value
            break
    value, recall, qps = tried[-1]
    apply(value)
    return RecallReport(held.k, len(held), recall, param, value, target, qps, [(v, round(r, 4)) for v, r, _ in tried])


def doubling(start: int, stop: int) -> list[int]:
    """``start, 2 start, 4 start, ...`` up to ``stop``, ``stop`` itself last."""
    out, v = [], max(1, int(start))
    while v < stop:
        out.append(v)
        v *= 2
    return out + [int(stop)]
