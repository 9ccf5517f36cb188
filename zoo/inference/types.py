"""Typed data that post-processors take and return, and the contract between them and the pipeline.

Conventions (every array is numpy, row ``q`` is query ``q``):

* **Rows, not ids.** Neighbour lists hold integer *row numbers* into an image set (the row order of
  that set's embedding matrix), never string ids; the pipeline maps rows to ids when it writes files.
* **Padding.** A neighbour list shorter than ``K`` (fewer gallery images than ``K``, or an id dropped
  as the query itself) is padded at the end with row ``-1`` and score ``-inf`` (faiss' convention).
* **Higher score = better**, sorted best first. Inner-product searches give cosines (descriptors are
  L2-normalised); Euclidean searches give ``-squared distance`` so the order is the same.
* **Labels** are ``int64`` class ids (the gallery's/train set's label encoding), ``NON_LANDMARK = -1``
  meaning "non-landmark / no prediction" (an empty ``landmarks`` cell in the Kaggle CSV).

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
    inputs = gather_inputs(pps, embeddings, search=my_faiss_search, model_dims=dims, ...)
    out = None
    for pp in pps:
        out = pp(inputs, out)        # Recognition or Ranking

Each post-processor object satisfies :class:`Postprocessor`: it lists the neighbour searches it needs
as :class:`NeighbourRequest` s (``pp.requests``), the other inputs it reads (``pp.needs``), and may
transform each model's embeddings before its searches (``pp.transform_embeddings``, e.g. the Henkel
quantile normalisation). :func:`gather_inputs` fulfils the requests with any search function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence, Union, runtime_checkable

import numpy as np

from zoo.registry import ZooError

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
    """One neighbour search a post-processor needs; :func:`gather_inputs` stores its result.

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
                "Build the inputs with zoo.inference.types.gather_inputs(pps, ...)"
            )
        return self.neighbours[key]

    def require_model_neighbours(self, key: str, who: str) -> list[Neighbours]:
        if key not in self.model_neighbours:
            raise PostprocessError(
                f"{who} needs the per-model neighbour lists '{key}' (inputs.model_neighbours); have "
                f"{sorted(self.model_neighbours)}. Build the inputs with zoo.inference.types.gather_inputs(pps, ...)"
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


#: ``search(queries N x d, gallery M x d, k, metric) -> (scores N x k, rows N x k)``, best first,
#: padded with ``-inf``/``-1`` when ``M < k`` (faiss ``IndexFlatIP``/``IndexFlatL2`` semantics, L2
#: returning *squared distances*; :func:`gather_inputs` negates them).
SearchFn = Callable[[np.ndarray, np.ndarray, int, str], tuple[np.ndarray, np.ndarray]]


def exact_search(queries: np.ndarray, gallery: np.ndarray, k: int, metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:
    """Brute-force :data:`SearchFn` in numpy (tests, small sets); ``l2`` returns squared distances."""
    q = np.asarray(queries, dtype=np.float32)
    g = np.asarray(gallery, dtype=np.float32)
    n, m = q.shape[0], g.shape[0]
    kk = min(k, m)
    scores = np.full((n, k), np.inf if metric == "l2" else -np.inf, dtype=np.float32)
    rows = np.full((n, k), PAD_ROW, dtype=np.int64)
    if kk == 0 or n == 0:
        return scores, rows
    sim = q @ g.T
    if metric == "l2":
        sim = -((q * q).sum(1)[:, None] - 2 * sim + (g * g).sum(1)[None, :])
    part = np.argpartition(-sim, kk - 1, axis=1)[:, :kk] if kk < m else np.tile(np.arange(m), (n, 1))
    vals = np.take_along_axis(sim, part, 1)
    order = np.argsort(-vals, axis=1, kind="stable")
    rows[:, :kk] = np.take_along_axis(part, order, 1)
    best = np.take_along_axis(vals, order, 1)
    scores[:, :kk] = -best if metric == "l2" else best
    return scores, rows


def _drop_self(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove row ``q`` from query ``q``'s list (same set searched in itself); keep ``k`` columns."""
    own = rows == np.arange(rows.shape[0])[:, None]
    # stable-move own matches to the end, then cut
    order = np.argsort(own, axis=1, kind="stable")
    rows = np.take_along_axis(rows, order, 1)
    scores = np.take_along_axis(scores, order, 1)
    moved = np.take_along_axis(own, order, 1)
    rows = np.where(moved, PAD_ROW, rows)[:, :k]
    scores = np.where(moved, -np.inf, scores)[:, :k]
    return scores, rows


def split_models(embeddings: np.ndarray, model_dims: Sequence[int] | None) -> list[np.ndarray]:
    """Split a concatenated ensemble descriptor into per-member slices, each re-L2-normalised."""
    x = np.asarray(embeddings, dtype=np.float32)
    if not model_dims:
        model_dims = [x.shape[1]]
    if sum(model_dims) != x.shape[1]:
        raise PostprocessError(
            f"model_dims {list(model_dims)} sum to {sum(model_dims)} but the descriptors have {x.shape[1]} dims"
        )
    out, start = [], 0
    for d in model_dims:
        part = x[:, start : start + d]
        norm = np.linalg.norm(part, axis=1, keepdims=True)
        out.append(part / np.maximum(norm, 1e-12))
        start += d
    return out


def gather_inputs(
    postprocessors: Sequence[Postprocessor],
    embeddings: Mapping[str, np.ndarray],
    *,
    search: SearchFn = exact_search,
    model_dims: Sequence[int] | None = None,
    labels: Mapping[str, np.ndarray] | None = None,
    head_logits: np.ndarray | None = None,
    images: Sequence[np.ndarray] | None = None,
    query_ids: Sequence[str] | None = None,
    gallery_ids: Sequence[str] | None = None,
) -> PostprocessInputs:
    """Run every neighbour search the chain asks for and bundle the inputs.

    ``embeddings``: L2-normalised descriptors by image set (``"query"`` required; ``Q x D``).
    ``model_dims``: the ensemble members' descriptor widths in concatenation order (per-model requests
    search each slice, re-normalised; ``None`` = one model). ``search``: e.g. a faiss flat search.
    Identical requests of different post-processors are searched once (largest ``k``).
    """
    if "query" not in embeddings:
        raise PostprocessError("gather_inputs: embeddings['query'] is required")
    q = int(np.asarray(embeddings["query"]).shape[0])
    inputs = PostprocessInputs(
        num_queries=q,
        labels={k: np.asarray(v, dtype=np.int64) for k, v in (labels or {}).items()},
        head_logits=None if head_logits is None else np.asarray(head_logits, dtype=np.float32),
        images=images,
        query_ids=query_ids,
        gallery_ids=gallery_ids,
    )
    split_cache: dict[str, list[np.ndarray]] = {}

    def model_sets(names: Sequence[str]) -> list[dict[str, np.ndarray]]:
        for s in names:
            if s not in embeddings:
                raise PostprocessError(f"a post-processor needs embeddings of the '{s}' images; have {sorted(embeddings)}")
            if s not in split_cache:
                split_cache[s] = split_models(embeddings[s], model_dims)
        n_models = len(split_cache[names[0]])
        return [{s: split_cache[s][i] for s in names} for i in range(n_models)]

    def run(qx: np.ndarray, gx: np.ndarray, req: NeighbourRequest) -> Neighbours:
        k = req.k + (1 if req.exclude_self else 0)
        scores, rows = search(np.ascontiguousarray(qx, dtype=np.float32), np.ascontiguousarray(gx, dtype=np.float32), k, req.metric)
        scores = np.asarray(scores, dtype=np.float32)
        rows = np.asarray(rows, dtype=np.int64)
        if req.metric == "l2":
            scores = -scores
        scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
        if req.exclude_self:
            scores, rows = _drop_self(scores, rows, req.k)
        return Neighbours(rows, scores)

    transformed: dict[tuple[int, bool], list[dict[str, np.ndarray]]] = {}  # (id(pp), per_model) -> sets

    def transformed_sets(pp: Postprocessor, per_model: bool) -> list[dict[str, np.ndarray]]:
        key = (id(pp), per_model)
        if key not in transformed:  # one transform per post-processor (and per model), shared by its requests
            if per_model:
                transformed[key] = [dict(pp.transform_embeddings(m)) for m in model_sets(list(embeddings))]
            else:
                full = {s: np.asarray(x, dtype=np.float32) for s, x in embeddings.items()}
                transformed[key] = [dict(pp.transform_embeddings(full))]
        return transformed[key]

    for pp in postprocessors:
        for req in getattr(pp, "requests", ()):
            store = inputs.model_neighbours if req.per_model else inputs.neighbours
            if req.key in store and store[req.key] and _k_of(store[req.key]) >= req.k:
                continue
            sets = [req.query, req.gallery]
            for s in sets:
                if s not in embeddings:
                    raise PostprocessError(
                        f"post-processor request '{req.key}' needs embeddings of the '{s}' images; have {sorted(embeddings)}"
                    )
            if req.transformed:
                per = transformed_sets(pp, req.per_model)
            elif req.per_model:
                per = model_sets(sets)
            else:
                per = [{s: np.asarray(embeddings[s]) for s in sets}]
            results = [run(m[req.query], m[req.gallery], req) for m in per]
            store[req.key] = results if req.per_model else results[0]  # type: ignore[index]
    return inputs


def _k_of(value: Neighbours | list[Neighbours]) -> int:
    return min(n.k for n in value) if isinstance(value, list) else value.k
