"""Shared machinery of the built-in post-processors: the base class and per-row label aggregation."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from zoo.postprocess import NeighbourRequest, Output, PostprocessError, PostprocessInputs

#: label given to padded neighbour columns: never equal to a real label (or to NON_LANDMARK)
PAD_LABEL: int = np.iinfo(np.int64).min
#: queries per chunk in the pairwise label aggregation (bounds memory to ~chunk x K x K)
CHUNK_ELEMENTS = 1 << 24


class BasePostprocessor:
    """Default attributes of the ``postprocessor`` contract (see ``zoo.postprocess.Postprocessor``)."""

    name: str = "postprocessor"
    requests: tuple[NeighbourRequest, ...] = ()
    needs: frozenset[str] = frozenset()
    produces: str = "recognition"

    def transform_embeddings(self, sets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float32) for k, v in sets.items()}

    def __call__(self, inputs: PostprocessInputs, previous: Output | None = None) -> Output:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


def neighbour_labels(labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Labels of neighbour rows (``int64`` same shape), ``PAD_LABEL`` at padding (row ``-1``)."""
    if labels.ndim != 1:
        raise PostprocessError(f"labels must be 1-D (one per image), got shape {labels.shape}")
    if rows.size and int(rows.max()) >= labels.shape[0]:
        raise PostprocessError(
            f"a neighbour row ({int(rows.max())}) is out of range for {labels.shape[0]} labels; the labels "
            "must be those of the searched image set, in its row order"
        )
    out = labels[np.maximum(rows, 0)]
    return np.where(rows >= 0, out, PAD_LABEL)


def best_label_per_row(labels: np.ndarray, weights: np.ndarray, extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row: sum ``weights`` of equal ``labels``; return the label with the largest sum and that sum.

    ``labels``/``weights``: ``Q x K`` (``PAD_LABEL`` columns ignored). ``extra``: optional ``Q x K``
    term added once per distinct label (taken from the label's first column). Ties go to the label
    whose first occurrence comes first. Rows with only padding get ``(PAD_LABEL, -inf)``.
    Vectorised: a ``K x K`` label-equality mask per row, processed in chunks of queries.
    """
    q, k = labels.shape
    out_label = np.full(q, PAD_LABEL, dtype=np.int64)
    out_score = np.full(q, -np.inf, dtype=np.float64)
    if k == 0 or q == 0:
        return out_label, out_score
    step = max(1, CHUNK_ELEMENTS // (k * k))
    w_all = np.asarray(weights, dtype=np.float64)
    for start in range(0, q, step):
        sl = slice(start, start + step)
        lab = labels[sl]
        w = w_all[sl]
        valid = lab != PAD_LABEL
        eq = lab[:, :, None] == lab[:, None, :]
        sums = np.einsum("qij,qj->qi", eq, np.where(valid, w, 0.0))
        if extra is not None:
            sums = sums + np.asarray(extra[sl], dtype=np.float64)
        # only a label's first column competes, so ties resolve to the earliest label
        first = ~np.tril(eq, -1).any(axis=2)
        sums = np.where(valid & first, sums, -np.inf)
        best = np.argmax(sums, axis=1)
        rows = np.arange(lab.shape[0])
        out_label[sl] = np.where(np.isfinite(sums[rows, best]), lab[rows, best], PAD_LABEL)
        out_score[sl] = sums[rows, best]
    return out_label, out_score
