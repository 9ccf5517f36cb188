"""Inference: embedding at scale, faiss search, recognition/retrieval pipelines and the demo.

Modules (each named for what it holds; preprocessing is :class:`zoo.data.config.DataConfig`):

* :mod:`~zoo.inference.dataset`: the streaming dataset (decode once, stack by shape in workers).
* :mod:`~zoo.inference.embed`: :class:`~zoo.inference.embed.Embedder` and the sharded, resumable,
  ``torchrun``-aware :func:`~zoo.inference.embed.embed_to_folder` (``zoo embed``).
* :mod:`~zoo.inference.shards`: the embeddings folder (manifest + shards) reader/writer.
* :mod:`~zoo.inference.index`: faiss indexes (flat / ivf / ivfpq, fp16, GPU), chunked search and the
  faiss search function of the pipeline.
* :mod:`~zoo.inference.search`: exact numpy search and the one self-match removal.
* :mod:`~zoo.inference.neighbours`: the post-processing orchestrator (the searches a chain asks for).
* :mod:`~zoo.inference.pipeline`: recognition / retrieval composing the registered post-processors.
* :mod:`~zoo.inference.retrieval`: retrieval metrics through the registered ``metric`` components.
* :mod:`~zoo.inference.results`: neighbour lists as ids (the ``zoo search`` CSV).
* :mod:`~zoo.inference.html_report` and :mod:`~zoo.inference.demo`: ``zoo demo``.
* :mod:`~zoo.inference.submission` (Kaggle CSVs). The post-processing contract is public:
  :mod:`zoo.postprocess`.
"""
