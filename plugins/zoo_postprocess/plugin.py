"""Built-in post-processors, ensemble combiners and the detector interface of the seed systems.

**Post-processor contract** (kind ``postprocessor``). A recipe lists a chain::

    inference:
      knn_k: 5
      postprocess:
        - {type: henkel-singer-2020, candidates: 50}
        - {type: non-landmark-frequency, max_count: 20}

``registry.create("postprocessor", type, **cfg)`` returns an object ``pp`` (see
``zoo.postprocess.Postprocessor``, the public contract) with

* ``pp.requests``: the :class:`~zoo.postprocess.NeighbourRequest` s it reads (key, query set ->
  gallery set, ``k``, ``per_model``, ``metric``, ``transformed``, ``exclude_self``);
* ``pp.needs``: other inputs (``labels:gallery``, ``labels:train``, ``head_logits``, ``images``, ``previous``);
* ``pp.produces``: ``"recognition"`` (-> :class:`~zoo.postprocess.Recognition`) or ``"ranking"``
  (-> :class:`~zoo.postprocess.Neighbours` over gallery rows);
* ``pp.transform_embeddings(sets)`` for ``transformed`` requests (per model slice);
* ``pp(inputs, previous) -> output``, vectorised over queries.

The pipeline builds ``inputs`` with ``zoo.inference.neighbours.gather_inputs(pps, embeddings, search=...,
model_dims=...)`` (it runs every request with the given search function, e.g. faiss) and threads the
output through the chain: ``out = None; for pp in pps: out = pp(inputs, out)``.

Neighbour lists each post-processor needs (``Q`` queries; "gallery" = recognition train set /
retrieval index; all inner product on L2-normalised descriptors unless stated):

============================  ===========================================================================
``glr2020-knn-head-fusion``   ``glr2020_knn``: query->gallery, k=5, whole descriptor; + labels[gallery],
                              head_logits (averaged head cosines) when ``use_head``
``glr2021-retrieval-rerank``  per model: ``rerank_query_index`` query->gallery k=750;
                              ``rerank_query_train`` query->train k=3; ``rerank_index_train``
                              gallery->train k=3; + labels[train]
``henkel-singer-2020``        per model, quantile-transformed: ``hs_query_gallery`` query->gallery
                              k=candidates (50); ``hs_gallery_non_landmark`` gallery->non_landmark k=5;
                              whole descriptor: ``hs_query_non_landmark`` query->non_landmark k=10;
                              + labels[gallery]
``knn-retrieval``             ``knn_<metric>``: query->gallery, k (5), metric ip or l2
``softmax-topk``              none; head_logits
``non-landmark-frequency``    none; previous Recognition
``non-landmark-detector``     none; previous Recognition, images, a registered ``detector``
============================  ===========================================================================

**Ensemble combiners** (kind ``ensemble``): ``concat``, ``family_mean_concat`` (see
``zoo_postprocess.ensembles``). **Detectors** (kind ``detector``): ``factory(**cfg) -> detect(images:
list[H x W x 3 uint8]) -> list[(boxes N x 4 xyxy, conf N)]``; none registered here (no weights offline).
"""

from __future__ import annotations

from typing import Any

from zoo import hookimpl


@hookimpl
def zoo_register_postprocessors(registrar: Any) -> None:
    registrar.add(
        "glr2020-knn-head-fusion", "zoo_postprocess.knn_head_fusion:KnnHeadFusion",
        description="GLR2020 3rd: top-5 kNN per-class sum of cos^8, times ArcFace head cosine^12 (notebook: 9/10)",
        produces="recognition", system="glr2020-3rd", test_kwargs={},
    )
    registrar.add(
        "glr2021-retrieval-rerank", "zoo_postprocess.retrieval_rerank:RetrievalRerank",
        description="GLR2021 1st retrieval: top-3 train-label up/down re-ranking (+t / -0.1 t), top-750 per model summed, top-100",
        produces="ranking", system="glr2021-1st", test_kwargs={"top_k": 10, "output_k": 5},
    )
    registrar.add(
        "henkel-singer-2020", "zoo_postprocess.henkel_singer:HenkelSingerRecognition",
        description="Henkel & Singer 2020: quantile-normalised top-3 per model of clamp(cos,0,1) - non-landmark penalties",
        produces="recognition", system="henkel-singer-2020", test_kwargs={},
    )
    registrar.add(
        "non-landmark-frequency", "zoo_postprocess.non_landmark_rules:FrequencyRule",
        description="GLR2021 top-100: a class predicted more than 20 times becomes non-landmark",
        produces="recognition", system="glr2021-top100", test_kwargs={},
    )
    registrar.add(
        "non-landmark-detector", "zoo_postprocess.non_landmark_rules:DetectorRule",
        description="GLR2021 top-100: detections (conf>=0.5) covering > 1/2.7 of the image -> non-landmark",
        produces="recognition", system="glr2021-top100", test_kwargs={"detector": "any-registered-detector"},
    )
    registrar.add(
        "knn-retrieval", "zoo_postprocess.knn_retrieval:KnnRetrieval",
        description="GUIE 2022: plain k-NN retrieval (k=5; Euclidean or inner product)",
        produces="ranking", system="guie2022-2nd", test_kwargs={},
    )
    registrar.add(
        "softmax-topk", "zoo_postprocess.softmax_topk:SoftmaxTopK",
        description="GLR2019: softmax over the classifier logits, top-1 prediction with top-20 candidates",
        produces="recognition", system="glr2019", test_kwargs={},
    )


@hookimpl
def zoo_register_ensembles(registrar: Any) -> None:
    registrar.add(
        "concat", "zoo_postprocess.ensembles:concat",
        description="GLR2020 3rd: per-member L2-normalised descriptors concatenated", test_kwargs={},
    )
    registrar.add(
        "family_mean_concat", "zoo_postprocess.ensembles:family_mean_concat",
        description="GLR2021 1st: L2-normalised descriptors averaged per member family, then concatenated",
        test_kwargs={},
    )
