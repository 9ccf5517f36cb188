"""The post-processing orchestrator: run the neighbour searches a chain of post-processors asks for.

:func:`gather_inputs` reads each post-processor's :class:`~zoo.postprocess.NeighbourRequest` s,
searches with any :data:`~zoo.inference.search.SearchFn` (faiss in the pipeline, numpy in tests) —
on the whole descriptor or per ensemble member (:func:`split_models`), on transformed embeddings
when asked, each query's own row dropped for ``exclude_self`` — and bundles everything into one
:class:`~zoo.postprocess.PostprocessInputs`. Identical requests are searched once.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from zoo.inference.search import SearchFn, drop_self, exact_search
from zoo.postprocess import NeighbourRequest, Neighbours, PostprocessError, PostprocessInputs, Postprocessor


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
        if req.exclude_self:  # the query set searched in itself: query q is row q
            scores, rows = drop_self(scores, rows, np.arange(rows.shape[0]), req.k)
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
