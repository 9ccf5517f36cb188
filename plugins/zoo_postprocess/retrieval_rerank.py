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

import numpy as np

from zoo.postprocess import NeighbourRequest, Neighbours, Output, PostprocessError, PostprocessInputs, Ranking
from zoo_postprocess.base import PAD_LABEL, BasePostprocessor, best_label_per_row, neighbour_labels

LABEL_RULES = ("vote", "top1")
SIMILARITIES = ("mean", "max", "label_mean")
#: queries per chunk when merging the models' candidate lists
MERGE_CHUNK = 1024


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
    rows: np.ndarray, scores: np.ndarray, output_k: int, n_gallery: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per query: sum ``scores`` of equal ``rows`` (``-1`` ignored), keep the ``output_k`` best.

    ``rows``/``scores``: ``Q x L`` (the models' candidate lists side by side, model order). Ties: higher
    score, then smaller row. Sums run left to right in column order, in float64 (as a loop adding
    model by model would); a row occurring ``r`` times costs ``r - 1`` vectorised passes.
    """
    q, width = rows.shape
    out_rows = np.full((q, output_k), -1, dtype=np.int64)
    out_scores = np.full((q, output_k), -np.inf, dtype=np.float64)
    if width == 0 or q == 0:
        return out_rows, out_scores
    import torch

    cols_all = np.arange(width, dtype=np.int64)
    # padding gets distinct ids >= n_gallery so it never forms runs; (id, column) packed in one key
    # (int32 when it fits: half the memory traffic of the sort)
    key_dtype = np.int32 if (n_gallery + width + 1) * width < np.iinfo(np.int32).max else np.int64
    kk = min(output_k, width)
    for start in range(0, q, MERGE_CHUNK):
        r = rows[start : start + MERGE_CHUNK]
        n = r.shape[0]
        if (r < 0).any():
            r = np.where(r >= 0, r, n_gallery + cols_all[None, :])
        key = np.sort((r.astype(key_dtype) * key_dtype(width)) + cols_all.astype(key_dtype), axis=1)
        ids = key // key_dtype(width)
        cols = key - ids * key_dtype(width)
        acc = np.take_along_axis(scores[start : start + n], cols.astype(np.intp, copy=False), 1).astype(np.float64, copy=False)
        s_sorted = acc.copy()
        # add the later columns of each run of equal ids onto its first column, left to right
        dup = ids >= n_gallery  # padding
        for off in range(1, width):
            same = ids[:, off:] == ids[:, :-off]
            if off == 1:
                dup[:, 1:] |= same  # not the first of its run
            if not same.any():
                break
            acc[:, :-off] += np.where(same, s_sorted[:, off:], 0.0)
        np.copyto(acc, -np.inf, where=dup)
        if kk < width:
            # k+1 best, sorted: a tie between places k and k+1 needs every tied candidate (sorted fully below)
            top_v, sel_t = torch.topk(torch.from_numpy(acc), kk + 1, dim=1, sorted=True)
            top_v = top_v.numpy()
            tied = np.isfinite(top_v[:, kk]) & (top_v[:, kk] == top_v[:, kk - 1])
            sel = sel_t.numpy()[:, :kk]
        else:
            sel = np.broadcast_to(np.arange(width), (n, width))
            tied = np.zeros(n, dtype=bool)
        top_s = np.take_along_axis(acc, sel, 1)
        top_r = np.take_along_axis(ids, sel, 1).astype(np.int64)
        order = np.lexsort((top_r, -top_s), axis=1)
        top_s = np.take_along_axis(top_s, order, 1)
        top_r = np.take_along_axis(top_r, order, 1)
        for t in np.flatnonzero(tied):  # rare: exact score ties at the cut
            o = np.lexsort((ids[t], -acc[t]))[:kk]
            top_s[t], top_r[t] = acc[t, o], ids[t, o]
        valid = np.isfinite(top_s)
        out_rows[start : start + n, :kk] = np.where(valid, top_r, -1)
        out_scores[start : start + n, :kk] = top_s
    return out_rows, out_scores


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
        out = i_sim[safe]
        out *= np.where(i_label[safe] == q_key, 1.0, -self.down_weight)
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
            all_rows = np.concatenate(rows, axis=1)
            all_scores = np.concatenate(scores, axis=1)
            r, s = merge_sum_top(all_rows, np.where(all_rows >= 0, all_scores, 0.0), self.output_k, n_gallery)
            out_r[sl], out_s[sl] = r, s
        return Neighbours(out_r, out_s)
