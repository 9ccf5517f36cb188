"""Plain k-nearest-neighbour retrieval: the query's ``k`` nearest gallery images, best first.

Seed: GUIE 2022 2nd place (XL-H/GUIE-2nd-Place-Solution; SEED_SYSTEMS.md 0.7/3): the host scored
mP@5 from a k-NN search with ``k=5`` and **Euclidean** distance on the (<= 64-d) embeddings
(``metric="l2"``; on L2-normalised descriptors the order equals cosine order). Scores are
``-squared distance`` for ``l2`` and cosines for ``ip``.

Needs: neighbour list ``knn_<metric>`` = query -> gallery, ``k`` columns, whole descriptor.
"""

from __future__ import annotations

from zoo.postprocess import NeighbourRequest, Output, PostprocessError, PostprocessInputs, Ranking
from zoo_postprocess.base import BasePostprocessor


class KnnRetrieval(BasePostprocessor):
    """GUIE 2022: k-NN retrieval (k=5, Euclidean by default in the GUIE recipe)."""

    name = "knn-retrieval"
    produces = "ranking"

    def __init__(self, k: int = 5, metric: str = "ip", exclude_self: bool = False) -> None:
        if metric not in ("ip", "l2"):
            raise PostprocessError(f"{self.name}: metric must be 'ip' or 'l2', not '{metric}'")
        self.k, self.metric = int(k), metric
        self.key = f"knn_{metric}"
        self.requests = (NeighbourRequest(self.key, "query", "gallery", self.k, metric=metric, exclude_self=bool(exclude_self)),)

    def __call__(self, inputs: PostprocessInputs, previous: Output | None = None) -> Ranking:
        return inputs.require_neighbours(self.key, self.name).top(self.k)
