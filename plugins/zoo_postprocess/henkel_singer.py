"""Henkel & Singer 2020 recognition post-processing (GLR2020 1st place; used by GLR2021 1st and top-100).

Seed: psinger/kaggle-landmark-recognition-2020-1st-place ``notebooks/blend_ranking.ipynb``
(SEED_SYSTEMS.md 6); the defaults are the notebook's. Per model ``m`` (its descriptor slice):

0. ``quantile=True``: a ``QuantileTransformer(output_distribution="normal")`` fit on the query
   embeddings is applied to every set (cell 6; sklearn 0.23.2 defaults n_quantiles=1000,
   subsample=100,000), rows re-L2-normalised (``transform_embeddings``; the notebook's cosine
   normalises them too). Fitting on the concatenation equals fitting each slice: the transform is
   per column.
1. Train-side penalty ``B[t]`` = mean cosine of gallery (train) image ``t`` to its
   ``train_penalty_k=5`` nearest non-landmark images (cell 7, ``k=5``).
2. ``a(q, t) = clamp(cos(q, t), 0, 1) - B[t]``; keep the ``top_k=3`` best of the query's
   ``candidates`` nearest gallery images (by cosine) -> 3 (label, score) pairs per model (cell 7,
   ``get_topk_cossim_sub(..., k=3)``).
3. Sum the scores per label over all models' pairs; prediction = argmax label, confidence = that sum
   (cell 9).
4. Test-side penalty (cells 11-12): confidence -= ``test_penalty_weight=1`` x mean cosine of the query
   to its nearest non-landmark images on the whole concatenated descriptor *after* the quantile
   transform (``test_penalty_transformed=True``), ``get_topk_cossim(val, nonlandmark, k=11)`` with
   column 0 dropped (``vals_2[:, 1:]``): ``test_penalty_k=10`` neighbours after ``drop_first=True``
   (the notebook's non-landmarks are validation images, so column 0 is the query itself; the
   notebook drops it for every query).

``candidates`` (default 50) bounds step 2: upstream scored every train image; the top-3 of
``clamp(cos) - B`` lies among the ``candidates`` nearest unless a penalty exceeds the cosine gap, so
raise it for exactness (the pipeline's search depth). ``drop_first=False`` /
``test_penalty_transformed=False`` give the earlier zoo variant (penalty on the plain descriptor, no
column dropped), for query sets that are not part of the non-landmark set.

Needs: per-model ``hs_query_gallery`` (query -> gallery, ``candidates``, transformed), per-model
``hs_gallery_non_landmark`` (gallery -> non_landmark, ``train_penalty_k``, transformed), whole
``hs_query_non_landmark`` (query -> non_landmark, ``test_penalty_k`` (+1 with ``drop_first``)),
``labels["gallery"]``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from zoo.postprocess import NON_LANDMARK, NeighbourRequest, Neighbours, Output, PostprocessError, PostprocessInputs, Recognition
from zoo_postprocess.base import PAD_LABEL, BasePostprocessor, best_label_per_row, neighbour_labels


def mean_valid(nb: Neighbours, k: int, drop_first: bool = False) -> np.ndarray:
    """Mean score of the first ``k`` real neighbours per row (0 where there are none), float64."""
    nb = nb.top(k + (1 if drop_first else 0))
    scores, valid = nb.scores.astype(np.float64), nb.valid
    if drop_first:
        scores, valid = scores[:, 1:], valid[:, 1:]
    n = valid.sum(1)
    return np.divide(np.where(valid, scores, 0.0).sum(1), n, out=np.zeros(scores.shape[0]), where=n > 0)


#: sklearn 0.23.2's QuantileTransformer default (the notebook's version); newer sklearn uses 10,000
QUANTILE_SUBSAMPLE = 100_000


def quantile_normal(sets: Mapping[str, np.ndarray], fit_on: str = "query", n_quantiles: int = 1000, seed: int = 0,
                    subsample: int = QUANTILE_SUBSAMPLE) -> dict[str, np.ndarray]:
    """Fit ``QuantileTransformer(output_distribution='normal')`` on ``sets[fit_on]``, apply to all, L2-normalise."""
    from sklearn.preprocessing import QuantileTransformer

    if fit_on not in sets:
        raise PostprocessError(f"quantile normalisation is fit on the '{fit_on}' embeddings, which are missing")
    fit = np.asarray(sets[fit_on], dtype=np.float32)
    qt = QuantileTransformer(
        n_quantiles=max(2, min(int(n_quantiles), fit.shape[0])), output_distribution="normal", random_state=seed,
        subsample=int(subsample),
    )
    qt.fit(fit)
    out = {}
    for name, x in sets.items():
        y = qt.transform(np.asarray(x, dtype=np.float32)).astype(np.float32)
        out[name] = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return out


class HenkelSingerRecognition(BasePostprocessor):
    """Henkel & Singer 2020: top-3 per model of clamp(cos,0,1) minus a train-side non-landmark penalty, summed per label, minus a test-side penalty."""

    name = "henkel-singer-2020"
    produces = "recognition"

    def __init__(
        self,
        top_k: int = 3,
        candidates: int = 50,
        train_penalty_k: int = 5,
        test_penalty_k: int = 10,
        test_penalty_weight: float = 1.0,
        drop_first: bool = True,
        quantile: bool = True,
        n_quantiles: int = 1000,
        test_penalty_transformed: bool = True,
    ) -> None:
        if int(candidates) < int(top_k):
            raise PostprocessError(f"{self.name}: candidates ({candidates}) must be >= top_k ({top_k})")
        self.top_k, self.candidates = int(top_k), int(candidates)
        self.train_penalty_k, self.test_penalty_k = int(train_penalty_k), int(test_penalty_k)
        self.test_penalty_weight = float(test_penalty_weight)
        self.drop_first = bool(drop_first)
        self.quantile, self.n_quantiles = bool(quantile), int(n_quantiles)
        self.test_penalty_transformed = bool(test_penalty_transformed)
        reqs = [
            NeighbourRequest("hs_query_gallery", "query", "gallery", self.candidates, per_model=True, transformed=self.quantile),
            NeighbourRequest("hs_gallery_non_landmark", "gallery", "non_landmark", self.train_penalty_k, per_model=True,
                             transformed=self.quantile),
        ]
        if self.test_penalty_weight:
            reqs.append(NeighbourRequest(
                "hs_query_non_landmark", "query", "non_landmark", self.test_penalty_k + (1 if self.drop_first else 0),
                transformed=self.quantile and self.test_penalty_transformed,
            ))
        self.requests = tuple(reqs)
        self.needs = frozenset({"labels:gallery"})

    def transform_embeddings(self, sets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.quantile:
            return super().transform_embeddings(sets)
        return quantile_normal(sets, "query", self.n_quantiles)

    def model_pairs(self, query_gallery: Neighbours, gallery_non_landmark: Neighbours, gallery_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One model's ``top_k`` (label, score) pairs per query: ``Q x top_k`` each (``PAD_LABEL`` padding)."""
        nb = query_gallery.top(self.candidates)
        penalty = mean_valid(gallery_non_landmark, self.train_penalty_k)
        if penalty.shape[0] != gallery_labels.shape[0]:
            raise PostprocessError(
                f"{self.name}: hs_gallery_non_landmark has {penalty.shape[0]} rows but there are "
                f"{gallery_labels.shape[0]} gallery labels"
            )
        labels = neighbour_labels(gallery_labels, nb.indices)
        safe = np.maximum(nb.indices, 0)
        a = np.clip(nb.scores.astype(np.float64), 0.0, 1.0) - penalty[safe]
        a = np.where(nb.valid, a, -np.inf)
        k = min(self.top_k, a.shape[1])
        order = np.argsort(-a, axis=1, kind="stable")[:, :k]
        top_a = np.take_along_axis(a, order, 1)
        top_l = np.take_along_axis(labels, order, 1)
        top_l = np.where(np.isfinite(top_a), top_l, PAD_LABEL)
        return top_l, np.where(np.isfinite(top_a), top_a, 0.0)

    def __call__(self, inputs: PostprocessInputs, previous: Output | None = None) -> Recognition:
        qgs = inputs.require_model_neighbours("hs_query_gallery", self.name)
        gns = inputs.require_model_neighbours("hs_gallery_non_landmark", self.name)
        if len(qgs) != len(gns):
            raise PostprocessError(f"{self.name}: {len(qgs)} per-model query lists but {len(gns)} penalty lists")
        gallery_labels = inputs.require_labels("gallery", self.name)
        pairs = [self.model_pairs(qg, gn, gallery_labels) for qg, gn in zip(qgs, gns)]
        labels = np.concatenate([p[0] for p in pairs], axis=1)
        scores = np.concatenate([p[1] for p in pairs], axis=1)
        best, conf = best_label_per_row(labels, scores)
        if self.test_penalty_weight:
            qn = inputs.require_neighbours("hs_query_non_landmark", self.name)
            conf = conf - self.test_penalty_weight * mean_valid(qn, self.test_penalty_k, self.drop_first)
        missing = best == PAD_LABEL
        return Recognition(np.where(missing, NON_LANDMARK, best), np.where(missing, 0.0, conf))
