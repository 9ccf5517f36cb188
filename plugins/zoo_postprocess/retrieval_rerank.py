"""GLR2021 1st place retrieval: soft re-ranking by train-set labels, summed over models.

Seed: ChristofHenkel/kaggle-landmark-2021-1st-place, paper section 2.4 (SEED_SYSTEMS.md 2.4; no code
was released). Per model ``m`` (its own L2-normalised descriptor):

1. Label every query and index image from its ``train_k=3`` nearest train images.
2. For the query's ``top_k=750`` nearest index images with cosine ``s_qi``::

       s_qi += t_i          if label(q) == label(i)     ("up")
       s_qi -= 0.1 * t_i    otherwise                   ("down", ``down_weight``)

   where ``t_i`` is the index image's top-3 train similarity.
3. Sum each index image's scores over the models (an id missing from a model's top-750 adds 0) and
   return the ``output_k=100`` best (ties: smaller index row first).

The paper does not say how three neighbours give one label and one similarity; ours, both options:

* ``label_rule="vote"`` (default): the label with the largest summed cosine among the 3 neighbours
  (ties: the nearer neighbour's label); ``"top1"``: the nearest neighbour's label.
* ``similarity="mean"`` (default): mean cosine of the 3 neighbours; ``"max"``: the nearest one's
  cosine; ``"label_mean"``: mean cosine of the neighbours that carry the chosen label.

Needs per-model neighbour lists (``per_model=True``, inner product): ``rerank_query_index`` = query ->
gallery (the index), ``top_k`` columns; ``rerank_query_train`` = query -> train, ``train_k``;
``rerank_index_train`` = gallery -> train, ``train_k``; and ``labels["train"]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from zoo.postprocess import PAD_ROW, NeighbourRequest, Neighbours, Output, PostprocessError, PostprocessInputs, Ranking
from zoo_postprocess.base import PAD_LABEL, BasePostprocessor, best_label_per_row, neighbour_labels

LABEL_RULES = ("vote", "top1")
SIMILARITIES = ("mean", "max", "label_mean")
#: queries per chunk when merging the models' candidate lists (256 x 1500 float64 = 3 MB: cache-sized, and
#: freed buffers are reused without new page faults)
MERGE_CHUNK = 256
#: subtracted from the columns that must not compete (later occurrences of a row, padding)
DROPPED = 1e300


def label_and_similarity(
    nb: Neighbours, train_labels: np.ndarray, label_rule: str = "vote", similarity: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """One label (``PAD_LABEL`` when there is no neighbour) and one similarity per row of ``nb``."""
    labels = neighbour_labels(train_labels, nb.indices)
    valid = nb.valid
    cos = np.where(valid, nb.scores, 0.0).astype(np.float64)
    n_valid = valid.sum(1)
    if label_rule == "vote":
        label, _ = best_label_per_row(labels, cos)
    else:
        label = labels[:, 0] if labels.shape[1] else np.full(labels.shape[0], PAD_LABEL)
    if similarity == "mean":
        sim = np.divide(cos.sum(1), n_valid, out=np.zeros(cos.shape[0]), where=n_valid > 0)
    elif similarity == "max":
        sim = cos[:, 0] if cos.shape[1] else np.zeros(cos.shape[0])
    else:
        same = (labels == label[:, None]) & valid
        cnt = same.sum(1)
        sim = np.divide((cos * same).sum(1), cnt, out=np.zeros(cos.shape[0]), where=cnt > 0)
    return label, sim


def merge_sum_top(
    rows: np.ndarray | Sequence[np.ndarray],
    scores: np.ndarray | Sequence[np.ndarray],
    output_k: int,
    n_gallery: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per query: sum ``scores`` of equal ``rows`` (``-1`` ignored), keep the ``output_k`` best.

    ``rows``/``scores``: ``Q x L`` (the models' candidate lists side by side, model order), or the
    per-model ``Q x L_m`` blocks in model order (not concatenated here). Ties: higher score, then
    smaller row. Sums run left to right in column order, in float64 (as a loop adding model by model
    would). Per chunk of queries: one row-wise sort of packed ``(row, column)`` keys groups equal rows
    (columns in order), runs are summed onto their first column, and the best ``output_k`` are found
    by a partition on the sums.
    """
    row_blocks = [rows] if isinstance(rows, np.ndarray) else list(rows)
    score_blocks = [scores] if isinstance(scores, np.ndarray) else list(scores)
    q = row_blocks[0].shape[0] if row_blocks else 0
    width = sum(int(b.shape[1]) for b in row_blocks)
    out_rows = np.full((q, output_k), PAD_ROW, dtype=np.int64)
    out_scores = np.full((q, output_k), -np.inf, dtype=np.float64)
    if width == 0 or q == 0 or output_k == 0:
        return out_rows, out_scores
    # key = row << shift | column: sorting it groups equal rows, columns ascending; padding gets the
    # distinct rows n_gallery + column, so it never forms runs. int32 keys when they fit (faster sort).
    shift = max(1, (width - 1).bit_length())
    key_dtype = np.int32 if (n_gallery + width) << shift <= np.iinfo(np.int32).max else np.int64
    columns = np.arange(width, dtype=key_dtype)
    kk = min(output_k, width)
    for start in range(0, q, MERGE_CHUNK):
        n = min(MERGE_CHUNK, q - start)
        key = np.empty((n, width), dtype=key_dtype)
        chunk_scores = np.empty((n, width), dtype=np.float64)
        col = 0
        for r, sc in zip(row_blocks, score_blocks):
            w = r.shape[1]
            key[:, col : col + w] = r[start : start + n]
            chunk_scores[:, col : col + w] = sc[start : start + n]
            col += w
        pad = key < 0
        padded = bool(pad.any())
        if padded:
            np.copyto(key, n_gallery + columns, where=pad)
            chunk_scores[pad] = 0.0  # padding never sums with anything
        key <<= shift
        key |= columns
        key.sort(axis=1)
        ids = key >> shift
        key &= (1 << shift) - 1  # the column each sorted entry came from
        flat = np.add(key, (np.arange(n, dtype=np.intp) * width)[:, None], dtype=np.intp).reshape(-1)
        source = chunk_scores.reshape(-1)
        acc = np.take(source, flat)
        later = _sum_runs(acc, ids.reshape(-1), width, source, flat)
        # only the first entry of a run competes (it holds the run's sum); the others, and padding,
        # sink below every score (arithmetic, not a masked write: no branch per element)
        acc[1:] -= later * DROPPED
        acc = acc.reshape(n, width)
        if padded:
            acc -= (ids >= n_gallery) * DROPPED
        top_r, top_s = _best_by_score_then_row(acc, ids, kk)
        sunk = top_s < -DROPPED / 2
        out_rows[start : start + n, :kk] = np.where(sunk, PAD_ROW, top_r)
        out_scores[start : start + n, :kk] = np.where(sunk, -np.inf, top_s)
    return out_rows, out_scores


def _sum_runs(acc: np.ndarray, ids: np.ndarray, width: int, source: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Add the later entries of each run of equal ``ids`` onto its first entry of ``acc``, left to right.

    ``acc``/``ids``/``flat``: lines of ``width`` entries, flattened (contiguous: every pass is one
    SIMD-friendly loop); ``acc[p] == source[flat[p]]`` on entry. Returns ``later`` (``bool``, one
    shorter): ``later[p]`` when entry ``p + 1`` continues the run of entry ``p`` on the same line.
    Runs of two (a row found by two models) take one vectorised pass; longer runs (a row listed twice
    by one model, or found by three or more models) are rare and continue sparsely from ``source``.
    """
    later = ids[1:] == ids[:-1]
    later[width - 1 :: width] = False  # the next line starts there
    if not later.any():
        return later
    if np.isfinite(acc).all():
        acc[:-1] += acc[1:] * later  # branch-free: x * False == 0 for finite x
    else:
        acc[:-1] += np.where(later, acc[1:], 0.0)
    if width < 3:
        return later
    deeper = ids[2:] == ids[:-2]
    deeper[width - 2 :: width] = False  # pairs across a line end
    deeper[width - 1 :: width] = False
    starts = np.flatnonzero(deeper)  # entries with two or more after them in their run
    off = 2
    while starts.size:
        acc[starts] += source[flat[starts + off]]
        off += 1
        starts = starts[starts % width + off < width]
        starts = starts[ids[starts + off] == ids[starts]]
    return later


def _best_by_score_then_row(acc: np.ndarray, ids: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``kk`` best entries per line of ``acc`` (rows ``ids`` ascending along each line), ordered by
    score descending, then row ascending: ``(rows int64 n x kk, scores float64 n x kk)``."""
    n, width = acc.shape
    if kk < width:
        # the kk-th best value per line; lines with exactly kk values at or above it (no tie at the
        # cut) keep those, in row order; the others (ties at the cut) are sorted in full
        threshold = np.partition(acc, width - kk, axis=1)[:, width - kk]
        keep = acc >= threshold[:, None]
        exact = keep.sum(axis=1) == kk
        if exact.all():
            pos = np.flatnonzero(keep).reshape(n, kk)  # flat positions, line by line
        else:
            keep[~exact] = False
            pos = np.empty((n, kk), dtype=np.intp)
            pos[exact] = np.flatnonzero(keep).reshape(-1, kk)
            for t in np.flatnonzero(~exact):
                pos[t] = np.lexsort((ids[t], -acc[t]))[:kk] + t * width
    else:
        pos = np.arange(width) + np.arange(n)[:, None] * width
    top_s = np.take(acc.reshape(-1), pos)
    # candidates are in ascending row order: a stable sort by score keeps smaller rows first on ties
    order = np.argsort(-top_s, axis=1, kind="stable")
    pos = np.take_along_axis(pos, order, 1)
    return np.take(ids.reshape(-1), pos).astype(np.int64), np.take_along_axis(top_s, order, 1)


class RetrievalRerank(BasePostprocessor):
    """GLR2021 1st place retrieval: up/down re-ranking by top-3 train labels, top-750 per model summed, top-100 out."""

    name = "glr2021-retrieval-rerank"
    produces = "ranking"

    def __init__(
        self,
        top_k: int = 750,
        output_k: int = 100,
        train_k: int = 3,
        down_weight: float = 0.1,
        label_rule: str = "vote",
        similarity: str = "mean",
    ) -> None:
        if label_rule not in LABEL_RULES:
            raise PostprocessError(f"{self.name}: label_rule must be one of {LABEL_RULES}, not '{label_rule}'")
        if similarity not in SIMILARITIES:
            raise PostprocessError(f"{self.name}: similarity must be one of {SIMILARITIES}, not '{similarity}'")
        self.top_k, self.output_k, self.train_k = int(top_k), int(output_k), int(train_k)
        self.down_weight = float(down_weight)
        self.label_rule, self.similarity = label_rule, similarity
        self.requests = (
            NeighbourRequest("rerank_query_index", "query", "gallery", self.top_k, per_model=True),
            NeighbourRequest("rerank_query_train", "query", "train", self.train_k, per_model=True),
            NeighbourRequest("rerank_index_train", "gallery", "train", self.train_k, per_model=True),
        )
        self.needs = frozenset({"labels:train"})

    def adjust(
        self, qi: Neighbours, q_label: np.ndarray, i_label: np.ndarray, i_sim: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One model's candidate rows and re-ranked scores (float64, ``-inf`` padding) for some queries."""
        if qi.indices.size and int(qi.indices.max()) >= i_label.shape[0]:
            raise PostprocessError(
                f"{self.name}: a query->index row ({int(qi.indices.max())}) is beyond the {i_label.shape[0]} rows "
                "of rerank_index_train; both lists must use the same index (gallery) set"
            )
        rows = qi.indices
        padded = bool(rows.size) and int(rows.min()) < 0
        safe = np.maximum(rows, 0) if padded else rows
        # a query without a label must match nothing, not the index images without one
        q_key = np.where(q_label == PAD_LABEL, PAD_LABEL + 1, q_label)[:, None]
        out = np.take(i_sim, safe)
        out *= np.where(np.take(i_label, safe) == q_key, 1.0, -self.down_weight)
        out += qi.scores
        if padded:
            out[rows < 0] = -np.inf
        return rows, out

    def __call__(self, inputs: PostprocessInputs, previous: Output | None = None) -> Ranking:
        qis = inputs.require_model_neighbours("rerank_query_index", self.name)
        qts = inputs.require_model_neighbours("rerank_query_train", self.name)
        its = inputs.require_model_neighbours("rerank_index_train", self.name)
        if not (len(qis) == len(qts) == len(its)):
            raise PostprocessError(f"{self.name}: per-model lists disagree on the number of models")
        train_labels = inputs.require_labels("train", self.name)
        # label every index image once per model, then re-rank the queries in chunks
        index_info = [
            label_and_similarity(it.top(self.train_k), train_labels, self.label_rule, self.similarity) for it in its
        ]
        query_labels = [
            label_and_similarity(qt.top(self.train_k), train_labels, self.label_rule, self.similarity)[0] for qt in qts
        ]
        n_gallery = its[0].num_queries
        n_q = qis[0].num_queries
        out_r = np.full((n_q, self.output_k), -1, dtype=np.int64)
        out_s = np.full((n_q, self.output_k), -np.inf, dtype=np.float32)
        for start in range(0, n_q, MERGE_CHUNK):
            sl = slice(start, start + MERGE_CHUNK)
            rows, scores = [], []
            for qi, q_label, (i_label, i_sim) in zip(qis, query_labels, index_info):
                r, s = self.adjust(qi.rows(sl).top(self.top_k), q_label[sl], i_label, i_sim)
                rows.append(r)
                scores.append(s)
            out_r[sl], out_s[sl] = merge_sum_top(rows, scores, self.output_k, n_gallery)
        return Neighbours(out_r, out_s)
