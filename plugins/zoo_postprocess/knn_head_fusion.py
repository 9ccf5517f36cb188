"""GLR2020 3rd place recognition post-processing: top-5 kNN label scores fused with the ArcFace head.

Seed: haqishen/Google-Landmark-Recognition-2020-3rd-Place-Solution (seed document
000_6df0a360bef8463b.txt sections 4.2-4.3; SEED_SYSTEMS.md 1.3). For query ``q`` with nearest gallery
images ``j = 1..k`` (cosine ``s_j``, label ``l_j``)::

    score(l) = sum_{j: l_j = l} s_j ** knn_power * h(l) ** head_power      (combine = "multiply")
    score(l) = sum_{j: l_j = l} s_j ** knn_power + h(l) ** head_power      (combine = "add")

``h(l)`` = head cosine of class ``l`` if ``l`` is among the query's ``head_top_k`` best head classes,
else ``1e-8`` (the notebook's ``classify_dict.get(lid, 1e-8)``); with ``restrict_to_gallery`` the head
cosines of classes absent from the gallery are lowered by 1 first (``probs[:, in_gallery] += 1;
probs -= 1``). Prediction = argmax label, confidence = its score.

Defaults follow the seed document: ``knn_power=8``, ``head_power=12`` (section 4.2/4.3), ``k=5``,
``head_top_k=5`` (``CLS_TOP_K``); the released notebook multiplies with powers 9 and 10
(``knn_power=9, head_power=10``). ``use_head=False`` gives post-processing step 1 alone.

Needs: neighbour list ``glr2020_knn`` = query -> gallery, ``k`` columns, inner product, whole
(concatenated) descriptor; ``labels["gallery"]``; ``head_logits`` (Q x C, the members' averaged head
cosines) when ``use_head``.
"""

from __future__ import annotations

import numpy as np

from zoo.postprocess import NON_LANDMARK, NeighbourRequest, Output, PostprocessError, PostprocessInputs, Recognition
from zoo_postprocess.base import PAD_LABEL, BasePostprocessor, best_label_per_row, neighbour_labels

#: head score of a class outside the query's top head classes (notebook ``classify_dict.get(lid, 1e-8)``)
MISSING_HEAD_SCORE = 1e-8


def gallery_classes(gallery_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``bool C``: which head classes occur in the gallery (notebook ``pred_mask``)."""
    present = np.zeros(num_classes, dtype=bool)
    present[gallery_labels[(gallery_labels >= 0) & (gallery_labels < num_classes)]] = True
    return present


def top_classes(head: np.ndarray, lowered: np.ndarray | None, k: int) -> np.ndarray:
    """Indices of the ``k`` best classes per row (``torch.topk``), classes in ``lowered`` counted 1 lower."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(head, dtype=np.float32))
    if lowered is not None:
        t = t - torch.from_numpy(lowered.astype(np.float32))[None, :]
    return torch.topk(t, k, dim=1, sorted=False).indices.numpy()


#: queries per chunk of the head lookup (bounds the float copies of ``Q x C`` head outputs)
HEAD_CHUNK = 4096


class KnnHeadFusion(BasePostprocessor):
    """GLR2020 3rd place: per-class sum of ``cos**knn_power`` over the top-k neighbours, fused with ``head**head_power``."""

    name = "glr2020-knn-head-fusion"
    produces = "recognition"

    def __init__(
        self,
        k: int = 5,
        knn_power: float = 8.0,
        head_power: float = 12.0,
        use_head: bool = True,
        head_top_k: int | None = 5,
        restrict_to_gallery: bool = True,
        combine: str = "multiply",
    ) -> None:
        if combine not in ("multiply", "add"):
            raise PostprocessError(f"{self.name}: combine must be 'multiply' or 'add', not '{combine}'")
        if int(k) < 1:
            raise PostprocessError(f"{self.name}: k must be >= 1")
        self.k = int(k)
        self.knn_power = float(knn_power)
        self.head_power = float(head_power)
        self.use_head = bool(use_head)
        self.head_top_k = int(head_top_k) if head_top_k else None
        self.restrict_to_gallery = bool(restrict_to_gallery)
        self.combine = combine
        self.requests = (NeighbourRequest("glr2020_knn", "query", "gallery", self.k),)
        self.needs = frozenset({"labels:gallery", "head_logits"} if self.use_head else {"labels:gallery"})

    def head_scores(self, head: np.ndarray, gallery_labels: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``h(l)`` for every neighbour label (``Q x K`` float64), in chunks of queries.

        With ``restrict_to_gallery`` classes absent from the gallery are lowered by 1 (in float64, as
        the notebook's ``probs -= 1``) before the top ``head_top_k`` classes are chosen.
        """
        n_cls = head.shape[1]
        present = gallery_classes(gallery_labels, n_cls) if self.restrict_to_gallery else np.ones(n_cls, dtype=bool)
        in_range = (labels >= 0) & (labels < n_cls)
        safe = np.where(in_range, labels, 0)
        out = np.full(labels.shape, MISSING_HEAD_SCORE, dtype=np.float64)
        top_k = self.head_top_k if self.head_top_k is not None and self.head_top_k < n_cls else None
        for start in range(0, head.shape[0], HEAD_CHUNK):
            sl = slice(start, start + HEAD_CHUNK)
            h = head[sl]
            lab = safe[sl]
            direct = np.take_along_axis(h, lab, 1).astype(np.float64) - np.where(present[lab], 0.0, 1.0)
            ok = in_range[sl]
            if top_k is not None:
                top = top_classes(h, None if present.all() else ~present, top_k)
                ok = ok & (lab[:, :, None] == top[:, None, :]).any(axis=2)
            out[sl] = np.where(ok, direct, MISSING_HEAD_SCORE)
        return out

    def __call__(self, inputs: PostprocessInputs, previous: Output | None = None) -> Recognition:
        nb = inputs.require_neighbours("glr2020_knn", self.name).top(self.k)
        gallery_labels = inputs.require_labels("gallery", self.name)
        labels = neighbour_labels(gallery_labels, nb.indices)
        cos = np.where(nb.valid, nb.scores, 0.0).astype(np.float64)
        knn = np.power(cos, self.knn_power)
        extra = None
        if self.use_head:
            head = inputs.require_head(self.name)
            if head.shape[0] != nb.num_queries:
                raise PostprocessError(f"{self.name}: head_logits has {head.shape[0]} rows for {nb.num_queries} queries")
            h = np.power(self.head_scores(head, gallery_labels, labels), self.head_power)
            if self.combine == "multiply":
                knn = knn * h
            else:
                extra = h
        best, score = best_label_per_row(labels, knn, extra)
        missing = best == PAD_LABEL
        return Recognition(np.where(missing, NON_LANDMARK, best), np.where(missing, 0.0, score))
