"""Inference: embedding at scale, faiss search, recognition/retrieval pipelines and the demo.

Modules (each named for what it holds):

* :mod:`~zoo.inference.preprocess`: a recipe's ``data`` section -> resize (CPU) + normalise (device).
* :mod:`~zoo.inference.dataset`: the streaming dataset (decode once, stack by shape in workers).
* :mod:`~zoo.inference.embed`: :class:`~zoo.inference.embed.Embedder` and the sharded, resumable,
  ``torchrun``-aware :func:`~zoo.inference.embed.embed_to_folder` (``zoo embed``).
* :mod:`~zoo.inference.store`: the embeddings folder (manifest + shards) reader/writer.
* :mod:`~zoo.inference.index`: faiss indexes (flat / ivf / ivfpq, fp16, GPU) and chunked search.
* :mod:`~zoo.inference.pipeline`: recognition / retrieval composing the registered post-processors.
* :mod:`~zoo.inference.retrieval`: retrieval metrics through the registered ``metric`` components.
* :mod:`~zoo.inference.results`: neighbour lists (self-match removal, the ``zoo search`` CSV).
* :mod:`~zoo.inference.html_report` and :mod:`~zoo.inference.demo`: ``zoo demo``.
* :mod:`~zoo.inference.types` (post-processor data) and :mod:`~zoo.inference.submission` (Kaggle CSVs).
"""
