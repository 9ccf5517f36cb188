"""The post-processing contract: what a post-processor plugin reads, returns and promises.

A post-processor turns neighbour lists (and optionally labels, head outputs, images, the previous
output) into a recognition (one label + confidence per query) or a retrieval ranking. Plugin authors
implement :class:`Postprocessor` against the types of this module and register a factory under the
kind ``postprocessor`` (hook ``zoo_register_postprocessors``)::

    import numpy as np
    from zoo.postprocess import NON_LANDMARK, NeighbourRequest, PostprocessInputs, Recognition

    class NearestLabel:
        requests = (NeighbourRequest("nn", "query", "gallery", k=1),)
        needs = frozenset({"labels:gallery"})
        produces = "recognition"

        def transform_embeddings(self, sets):
            return dict(sets)

        def __call__(self, inputs: PostprocessInputs, previous=None) -> Recognition:
            nb = inputs.require_neighbours("nn", "nearest-label")
            labels = inputs.require_labels("gallery", "nearest-label")
            found = nb.valid[:, 0]  # False where the gallery was empty (padding)
            return Recognition(np.where(found, labels[nb.indices[:, 0]], NON_LANDMARK),
                               np.where(found, nb.scores[:, 0], 0.0))

Conventions (every array is numpy, row ``q`` is query ``q``):

* **Rows, not ids.** Neighbour lists hold integer *row numbers* into an image set (the row order of
  that set's embedding matrix), never string ids; the pipeline maps rows to ids when it writes files.
* **Padding.** A neighbour list shorter than ``K`` (fewer gallery images than ``K``, or an id dropped
  as the query itself) is padded at the end with row :data:`PAD_ROW` (``-1``) and score ``-inf``
  (faiss' convention).
* **Higher score = better**, sorted best first. Inner-product searches give cosines (descriptors are
  L2-normalised); Euclidean searches give ``-squared distance`` so the order is the same.
* **Labels** are ``int64`` class ids (the gallery's/train set's label encoding), :data:`NON_LANDMARK`
  (``-1``) meaning "non-landmark / no prediction" (an empty ``landmarks`` cell in the Kaggle CSV).

Image sets a post-processor may ask for (:data:`IMAGE_SETS`):

* ``query``: the test images being recognised / the retrieval queries.
* ``gallery``: recognition: the labelled images whose labels are predicted (GLR: the train set);
  retrieval: the index images that are ranked and returned.
* ``train``: retrieval only: a labelled set used to label query and index images (GLR2021 1st place
  re-ranking: GLDv2x + ...); for recognition ``train`` and ``gallery`` are the same set and a
  post-processor asks for ``gallery``.
* ``non_landmark``: distractor images known not to show a landmark (Henkel & Singer 2020: the 2019
  test images labelled non-landmark).

How the pipeline drives a chain of post-processors (the recipe's ``inference.postprocess`` list)::

    pps = [registry.create("postprocessor", c.pop("type"), **c) for c in cfg.inference.postprocess]
    inputs = zoo.inference.neighbours.gather_inputs(pps, embeddings, search=faiss_search, model_dims=dims, ...)
    out = None
    for pp in pps:
        out = pp(inputs, out)        # Recognition or Ranking

Each post-processor lists the neighbour searches it needs as :class:`NeighbourRequest` s
(``pp.requests``), the other inputs it reads (``pp.needs``), and may transform each model's
embeddings before its searches (``pp.transform_embeddings``, e.g. the Henkel quantile
normalisation). The pipeline fulfils the requests (exact search, self-matches removed, per ensemble
member when asked) and hands the result over as :class:`PostprocessInputs`; a post-processor never
searches itself and must not modify its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Protocol, Sequence, Union, runtime_checkable

import numpy as np

from zoo.registry import ZooError

__all__ = [
    "IMAGE_SETS",
    "NON_LANDMARK",
    "PAD_ROW",
    "NeighbourRequest",
    "Neighbours",
    "Output",
    "PostprocessError",
    "PostprocessInputs",
    "Postprocessor",
    "Ranking",
    "Recognition",
]

#: label of "non-landmark" / "no prediction" (an empty ``landmarks`` cell in Kaggle CSVs)
NON_LANDMARK: int = -1
#: row index used to pad neighbour lists
PAD_ROW: int = -1

ImageSet = Literal["query", "gallery", "train", "non_landmark"]
IMAGE_SETS: tuple[str, ...] = ("query", "gallery", "train", "non_landmark")
Metric = Literal["ip", "l2"]


class PostprocessError(ZooError):
    """Post-processing inputs that do not fit (missing neighbour lists, wrong shapes)."""


def _as(arr: Any, dtype: Any, name: str, ndim: int) -> np.ndarray:
    out = np.ascontiguousarray(np.asarray(arr), dtype=dtype)
    if out.ndim != ndim:
        raise PostprocessError(f"{name} must be {ndim}-D, got shape {out.shape}")
    return out


@dataclass(frozen=True)
class Neighbours:
    """Top-``K`` neighbours of ``Q`` queries in one image set (also a retrieval :data:`Ranking`).

    ``indices``: ``int64 Q x K`` rows into the searched set, best first, ``-1`` padding.
    ``scores``: ``float32 Q x K`` similarities (cosine for ``ip``, ``-squared L2`` for ``l2``), sorted
    descending, ``-inf`` at padding.
    """

    indices: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        idx = _as(self.indices, np.int64, "Neighbours.indices", 2)
        sc = _as(self.scores, np.float32, "Neighbours.scores", 2)
        if idx.shape != sc.shape:
            raise PostprocessError(f"Neighbours: indices {idx.shape} and scores {sc.shape} differ in shape")
        object.__setattr__(self, "indices", idx)
        object.__setattr__(self, "scores", sc)

    @property
    def num_queries(self) -> int:
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    @property
    def valid(self) -> np.ndarray:
        """``bool Q x K``: True where a column holds a real neighbour (not padding)."""
        return self.indices >= 0

    def top(self, k: int) -> "Neighbours":
        """The first ``k`` columns (padded with ``-1``/``-inf`` when ``K < k``)."""
        if k <= self.k:
            return Neighbours(self.indices[:, :k], self.scores[:, :k])
        pad = k - self.k
        return Neighbours(
            np.pad(self.indices, ((0, 0), (0, pad)), constant_values=PAD_ROW),
            np.pad(self.scores, ((0, 0), (0, pad)), constant_values=-np.inf),
        )

    def rows(self, sel: np.ndarray | slice) -> "Neighbours":
        """The neighbour lists of a subset of queries."""
        return Neighbours(self.indices[sel], self.scores[sel])


#: A retrieval result: for every query the ranked rows of the ``gallery`` (index) set with scores.
Ranking = Neighbours


@dataclass(frozen=True)
class Recognition:
    """One predicted label and confidence per query (Kaggle recognition: ``id,landmarks`` = "label score").

    ``labels``: ``int64 Q``, ``NON_LANDMARK`` (-1) = non-landmark / no prediction (written as an empty
    cell). ``confidences``: ``float64 Q``; GAP sorts by it (higher = more confident). float64 because the
    GLR2020 fusion's powers (``cos**8 * 1e-8**12``) underflow float32.
    ``top_labels`` / ``top_confidences``: optional ``Q x P`` candidate lists, best first, ``-1``/``-inf``
    padding (e.g. GLR2019's softmax top-20); ``labels == top_labels[:, 0]`` when both are set.
    """

    labels: np.ndarray
    confidences: np.ndarray
    top_labels: np.ndarray | None = None
    top_confidences: np.ndarray | None = None

    def __post_init__(self) -> None:
        lab = _as(self.labels, np.int64, "Recognition.labels", 1)
        conf = _as(self.confidences, np.float64, "Recognition.confidences", 1)
        if lab.shape != conf.shape:
            raise PostprocessError(f"Recognition: labels {lab.shape} and confidences {conf.shape} differ")
        object.__setattr__(self, "labels", lab)
        object.__setattr__(self, "confidences", conf)
        if (self.top_labels is None) != (self.top_confidences is None):
            raise PostprocessError("Recognition: give both top_labels and top_confidences or neither")
        if self.top_labels is not None:
            tl = _as(self.top_labels, np.int64, "Recognition.top_labels", 2)
            tc = _as(self.top_confidences, np.float64, "Recognition.top_confidences", 2)
            if tl.shape != tc.shape or tl.shape[0] != lab.shape[0]:
                raise PostprocessError(
                    f"Recognition: top_labels {tl.shape} / top_confidences {tc.shape} must be Q x P with Q={lab.shape[0]}"
                )
            object.__setattr__(self, "top_labels", tl)
            object.__setattr__(self, "top_confidences", tc)

    @property
    def num_queries(self) -> int:
        return int(self.labels.shape[0])

    @property
    def is_landmark(self) -> np.ndarray:
        return self.labels != NON_LANDMARK

    def with_labels(self, labels: np.ndarray) -> "Recognition":
        """A copy with new top-1 labels (confidences and candidate lists kept)."""
        return Recognition(labels, self.confidences, self.top_labels, self.top_confidences)


Output = Union[Recognition, Ranking]


@dataclass(frozen=True)
class NeighbourRequest:
    """One neighbour search a post-processor needs; the pipeline stores its result in the inputs.

    ``key``: where the result goes: ``inputs.neighbours[key]`` (``per_model=False``) or
    ``inputs.model_neighbours[key]`` (a list with one :class:`Neighbours` per ensemble member,
    searched on that member's descriptor slice, ``per_model=True``).
    ``query`` / ``gallery``: image sets (:data:`IMAGE_SETS`) searched from / in.
    ``k``: columns wanted (fewer when the set is smaller; padded). ``metric``: ``ip`` or ``l2``.
    ``transformed``: search on the embeddings returned by ``pp.transform_embeddings`` (per model).
    ``exclude_self``: the two sets are the same images; drop each query's own row.
    """

    key: str
    query: str
    gallery: str
    k: int
    per_model: bool = False
    metric: str = "ip"
    transformed: bool = False
    exclude_self: bool = False

    def __post_init__(self) -> None:
        for s in (self.query, self.gallery):
            if s not in IMAGE_SETS:
                raise PostprocessError(f"NeighbourRequest '{self.key}': unknown image set '{s}'; use one of {IMAGE_SETS}")
        if self.metric not in ("ip", "l2"):
            raise PostprocessError(f"NeighbourRequest '{self.key}': metric must be 'ip' or 'l2', not '{self.metric}'")
        if int(self.k) < 1:
            raise PostprocessError(f"NeighbourRequest '{self.key}': k must be >= 1")


@dataclass
class PostprocessInputs:
    """Everything a chain of post-processors may read; fields a post-processor does not need stay empty.

    ``num_queries``: Q.
    ``neighbours``: whole-descriptor neighbour lists by request key (``Neighbours`` with Q or N rows,
    the number of rows of the request's ``query`` set).
    ``model_neighbours``: per-member lists by request key (one ``Neighbours`` per ensemble member).
    ``labels``: ``int64`` label per row of a labelled set: ``labels["gallery"]`` (N_gallery) and, for
    retrieval re-ranking, ``labels["train"]``; ``NON_LANDMARK`` allowed.
    ``head_logits``: ``float32 Q x C``: what the model's ``forward`` returns under ``"logits"`` (class
    cosines of an ArcFace head, averaged over ensemble members as :class:`zoo.assembly.ZooEnsemble`
    does; plain logits of a linear head), for head fusion and softmax recognition. Columns are the
    same label ids as ``labels["gallery"]``.
    ``images``: a sequence of ``H x W x 3 uint8`` query images (may be lazy), for detector rules.
    ``query_ids``/``gallery_ids``: optional string ids (post-processors never need them).
    """

    num_queries: int
    neighbours: dict[str, Neighbours] = field(default_factory=dict)
    model_neighbours: dict[str, list[Neighbours]] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    head_logits: np.ndarray | None = None
    images: Sequence[np.ndarray] | None = None
    query_ids: Sequence[str] | None = None
    gallery_ids: Sequence[str] | None = None

    def require_neighbours(self, key: str, who: str) -> Neighbours:
        if key not in self.neighbours:
            raise PostprocessError(
                f"{who} needs the neighbour list '{key}' (inputs.neighbours); have {sorted(self.neighbours)}. "
                "Build the inputs with zoo.inference.neighbours.gather_inputs(pps, ...)"
            )
        return self.neighbours[key]

    def require_model_neighbours(self, key: str, who: str) -> list[Neighbours]:
        if key not in self.model_neighbours:
            raise PostprocessError(
                f"{who} needs the per-model neighbour lists '{key}' (inputs.model_neighbours); have "
                f"{sorted(self.model_neighbours)}. Build the inputs with zoo.inference.neighbours.gather_inputs(pps, ...)"
            )
        return self.model_neighbours[key]

    def require_labels(self, image_set: str, who: str) -> np.ndarray:
        if image_set not in self.labels:
            raise PostprocessError(
                f"{who} needs the labels of the '{image_set}' images (inputs.labels['{image_set}']); "
                f"have labels for {sorted(self.labels) or 'no set'}"
            )
        return np.asarray(self.labels[image_set], dtype=np.int64)

    def require_head(self, who: str) -> np.ndarray:
        if self.head_logits is None:
            raise PostprocessError(
                f"{who} needs the head outputs (inputs.head_logits, Q x C); the recipe's model has "
                "no head or the pipeline did not keep its logits"
            )
        return np.asarray(self.head_logits, dtype=np.float32)


@runtime_checkable
class Postprocessor(Protocol):
    """What ``registry.create("postprocessor", name, **cfg)`` returns.

    ``requests``: the neighbour searches it reads. ``needs``: other inputs it reads, a subset of
    ``{"labels:gallery", "labels:train", "head_logits", "images", "previous"}`` (``previous``: it
    transforms the output of the post-processor before it in the chain). ``produces``:
    ``"recognition"`` or ``"ranking"``. ``transform_embeddings(sets)``: given one member's
    embeddings by image set, return the embeddings its ``transformed`` requests search (identity for
    most). ``__call__(inputs, previous)`` returns the new output; it must not modify its arguments.
    """

    requests: tuple[NeighbourRequest, ...]
    needs: frozenset[str]
    produces: str

    def transform_embeddings(self, sets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def __call__(self, inputs: PostprocessInputs, previous: Output | None = None) -> Output: ...
