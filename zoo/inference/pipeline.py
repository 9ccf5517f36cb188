"""Recognition and retrieval on embedded image sets, composing the recipe's post-processors.

The recipe's ``inference.postprocess`` list names registered post-processors (``type:`` + options);
:func:`build_postprocessors` creates them, :func:`zoo.inference.neighbours.gather_inputs` runs the neighbour
searches they ask for (here with faiss, on GPU when available) and the chain runs in order. Without
post-processors:

* recognition = the label of the nearest gallery image, its cosine as confidence (``knn_k`` is
  used by post-processors only);
* retrieval = the gallery ranked by cosine.

String labels are mapped to the ``int64`` class ids of :mod:`zoo.postprocess` by the one label
encoder, :class:`zoo.data.labels.LabelMap`, built from the gallery (train) labels
(``encode(labels, unknown=NON_LANDMARK)``), and back (``names``) when writing submissions.
"""

from __future__ import annotations

import logging
from collections import abc
from typing import Any, Mapping, Sequence

import numpy as np

from zoo.inference.index import SearchIndexError, faiss_search_fn, gpu_available, search, to_gpu
from zoo.inference.neighbours import gather_inputs
from zoo.inference.search import SearchFn, drop_self, own_rows
from zoo.postprocess import NON_LANDMARK, Neighbours, Output, PostprocessInputs, Recognition
from zoo.registry import Registry, ZooError

log = logging.getLogger(__name__)


class PipelineError(ZooError):
    """A recognition/retrieval run whose inputs or post-processors do not fit together."""


def inference_config(cfg: Any) -> dict[str, Any]:
    """The recipe's ``inference`` section as a plain dict (empty when absent)."""
    from omegaconf import DictConfig, OmegaConf

    node = cfg.get("inference") if cfg is not None else None
    if node is None:
        return {}
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)  # type: ignore[return-value]


def build_postprocessors(inference: Mapping[str, Any], registry: Registry, *, produces: str) -> list[Any]:
    """Create the chain named in ``inference.postprocess``; every step must produce ``produces``."""
    chain = []
    for i, item in enumerate(inference.get("postprocess") or []):
        spec = dict(item)
        name = spec.pop("type", None)
        if not name:
            raise PipelineError(f"inference.postprocess[{i}] has no 'type' (a registered postprocessor name)")
        pp = registry.create("postprocessor", str(name), **spec)
        got = getattr(pp, "produces", produces)
        if got != produces:
            raise PipelineError(
                f"post-processor '{name}' produces a {got}, but this command needs a {produces}; "
                f"use it with `zoo {'recognize' if got == 'recognition' else 'retrieve'}`"
            )
        chain.append(pp)
    return chain


def needs_head(chain: Sequence[Any]) -> bool:
    return any({"head_cosines", "head_logits"} & set(getattr(pp, "needs", ())) for pp in chain)


def needs_images(chain: Sequence[Any]) -> bool:
    return any("images" in getattr(pp, "needs", ()) for pp in chain)


class LazyImages(abc.Sequence):
    """Query images decoded on access (``H x W x 3`` uint8), for detector post-processors."""

    def __init__(self, paths: Sequence[Any]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: Any) -> Any:
        from zoo.data.images import read_image

        if isinstance(i, slice):
            return [read_image(p) for p in self.paths[i]]
        return read_image(self.paths[i])


def run_chain(chain: Sequence[Any], inputs: PostprocessInputs, first: Output | None = None) -> Output | None:
    out = first
    for pp in chain:
        out = pp(inputs, out)
    return out


def recognize(
    query: np.ndarray,
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    chain: Sequence[Any] = (),
    search_fn: SearchFn | None = None,
    model_dims: Sequence[int] | None = None,
    head_logits: np.ndarray | None = None,
    non_landmark: np.ndarray | None = None,
    images: Sequence[np.ndarray] | None = None,
    query_ids: Sequence[str] | None = None,
) -> Recognition:
    """One label + confidence per query (``int64`` labels of ``gallery_labels``' encoding).

    Without post-processors (or when the first one transforms a previous output) the base
    prediction is the nearest gallery image's label with its cosine.
    """
    search_fn = search_fn or faiss_search_fn()
    if not chain or "previous" in getattr(chain[0], "needs", ()):
        scores, rows = search_fn(query, gallery, 1, "ip")
        labels = np.where(rows[:, 0] >= 0, gallery_labels[np.maximum(rows[:, 0], 0)], NON_LANDMARK)
        first = Recognition(labels, np.where(rows[:, 0] >= 0, scores[:, 0], 0.0))
        if not chain:
            return first
    else:
        first = None
    embeddings = {"query": query, "gallery": gallery}
    if non_landmark is not None:
        embeddings["non_landmark"] = non_landmark
    inputs = gather_inputs(chain, embeddings, search=search_fn, model_dims=model_dims,
                           labels={"gallery": gallery_labels}, head_logits=head_logits, images=images,
                           query_ids=query_ids)
    out = run_chain(chain, inputs, first)
    if not isinstance(out, Recognition):
        raise PipelineError(f"the post-processing chain returned {type(out).__name__}, expected a Recognition")
    return out


def retrieve(
    query: np.ndarray,
    gallery: np.ndarray | None,
    *,
    k: int = 100,
    index: Any = None,
    exclude_self: bool = False,
    query_ids: Sequence[str] | None = None,
    gallery_ids: Sequence[str] | None = None,
    chain: Sequence[Any] = (),
    search_fn: SearchFn | None = None,
    model_dims: Sequence[int] | None = None,
    train: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
) -> Neighbours:
    """Ranked gallery rows per query (``Q x k``, ``-1`` padding).

    ``index``: a prebuilt faiss index over the gallery (``zoo index``; IVF-PQ for large galleries),
    used for the plain ranking. Post-processors search the ``gallery`` (and ``train``) embeddings.
    ``exclude_self``: queries are gallery images; each query's own row is dropped.
    """
    if not chain:
        if index is None:
            if gallery is None:
                raise PipelineError("retrieve: give the gallery embeddings or a gallery index")
            index = _flat(gallery)
        depth = k + (1 if exclude_self else 0)
        scores, rows = search(index, query, depth)
        if exclude_self:
            if query_ids is None or gallery_ids is None:
                raise PipelineError("retrieve: exclude_self needs query_ids and gallery_ids")
            scores, rows = drop_self(scores, rows, own_rows(query_ids, gallery_ids), k)
        return Neighbours(rows[:, :k], scores[:, :k])
    if gallery is None:
        raise PipelineError(
            "post-processors re-rank with the gallery embeddings; pass the gallery as an embeddings folder "
            "or images, not only a faiss index"
        )
    embeddings = {"query": query, "gallery": gallery}
    labels = {}
    if train is not None:
        embeddings["train"] = train
        if train_labels is not None:
            labels["train"] = train_labels
    inputs = gather_inputs(chain, embeddings, search=search_fn or faiss_search_fn(), model_dims=model_dims,
                           labels=labels, query_ids=query_ids, gallery_ids=gallery_ids)
    first = None
    if any("previous" in getattr(pp, "needs", ()) for pp in chain[:1]):
        first = retrieve(query, gallery, k=k, exclude_self=exclude_self, query_ids=query_ids,
                         gallery_ids=gallery_ids)
    out = run_chain(chain, inputs, first)
    if not isinstance(out, Neighbours):
        raise PipelineError(f"the post-processing chain returned {type(out).__name__}, expected a Ranking")
    if exclude_self and query_ids is not None and gallery_ids is not None:
        s, r = drop_self(out.scores, out.indices, own_rows(query_ids, gallery_ids), out.k)
        out = Neighbours(r, s)
    return out.top(k)


def _flat(gallery: np.ndarray) -> Any:
    from zoo.inference.index import IndexSpec, build_index

    if gallery.ndim != 2:
        raise SearchIndexError(f"gallery embeddings of shape {gallery.shape}, expected N x D")
    index, _ = build_index([gallery], IndexSpec("flat"), gallery.shape[0], gallery.shape[1], progress=False)
    return to_gpu(index) if gpu_available() else index


def model_dims_of(model: Any) -> list[int] | None:
    """Widths of the independent descriptors an ensemble's output concatenates (``None`` for a single
    model): the combiner's ``slice_dims`` (one per family for GLR2021's family mean-concat), else the
    members' widths when they add up to the ensemble's."""
    members = getattr(model, "members", None)
    if members is None:
        return None
    dims = [int(m.embedding_dim) for m in members]
    slicer = getattr(getattr(model, "combiner", None), "slice_dims", None)
    if callable(slicer):
        dims = [int(d) for d in slicer(dims, getattr(model, "member_cfgs", [{}] * len(dims)))]
    return dims if sum(dims) == int(getattr(model, "embedding_dim", -1)) else None
