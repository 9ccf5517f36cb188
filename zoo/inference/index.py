"""faiss indexes over L2-normalised descriptors: build, save/load, move to GPU, chunked search.

Index types (all inner product, i.e. cosine on normalised descriptors):

* ``flat``: exact search (``IndexFlatIP``); with ``fp16`` an ``IndexScalarQuantizer`` (QT_fp16) that
  halves memory at a ~1e-3 score error;
* ``ivf``: inverted lists over a flat coarse quantizer (``IndexIVFFlat``; ``fp16`` ->
  ``IndexIVFScalarQuantizer`` QT_fp16), approximate, ``nprobe`` lists visited;
* ``ivfpq``: IVF + product quantisation (``IndexIVFPQ``), for galleries of millions: ``m`` bytes a vector.

On a machine with faiss-gpu and CUDA GPUs, :func:`to_gpu` clones the index onto every GPU, sharded
(``index_cpu_to_all_gpus`` with ``shard=True``); fp16 storage maps to ``useFloat16``.

:func:`faiss_search_fn` is the exact :data:`~zoo.inference.search.SearchFn` the recognition and
retrieval pipelines hand to the post-processing orchestrator (flat indexes, on GPU when present).

An index folder (``zoo index EMB --out INDEX``) holds ``index.faiss`` (``faiss.write_index``),
``ids.json`` (row -> image id) and ``index.json`` (type, dim, count, parameters, source recipe, and the
model identity of the embeddings, :mod:`zoo.inference.identity`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zoo import atomic
from zoo.inference.search import SearchFn
from zoo.registry import ZooError

log = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "ivf", "ivfpq")
INDEX_FORMAT = "zoo-index/1"


class SearchIndexError(ZooError):
    """An index that cannot be built, read or searched as asked."""


def _faiss() -> Any:
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its INFO lines are noise in the CLI
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss is installed in every supported setup
        raise SearchIndexError(
            "faiss is not installed; install it with: pip install 'instance-zoo[cpu]' (or [gpu])"
        ) from exc
    return faiss


def gpu_available() -> bool:
    """faiss-gpu built with CUDA and at least one visible GPU."""
    faiss = _faiss()
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@dataclass
class IndexSpec:
    """How to build an index; ``None`` parameters get defaults that depend on the gallery size."""

    type: str = "flat"
    fp16: bool = False
    nlist: int | None = None
    m: int | None = None
    nbits: int = 8
    nprobe: int | None = None
    train_size: int = 262_144

    def __post_init__(self) -> None:
        if self.type not in INDEX_TYPES:
            raise SearchIndexError(f"unknown index type '{self.type}'; use one of {', '.join(INDEX_TYPES)}")
        if self.type == "ivfpq" and self.fp16:
            raise SearchIndexError(
                "--fp16 does not apply to ivfpq (its codes are already m bytes a vector); use "
                "--type flat --fp16 or --type ivf --fp16 for float16 storage"
            )

    def resolved(self, n: int, d: int) -> "IndexSpec":
        spec = IndexSpec(**asdict(self))
        if spec.type in ("ivf", "ivfpq"):
            if spec.nlist is None:
                spec.nlist = int(max(1, min(65536, round(4 * math.sqrt(max(n, 1))), max(1, n // 39))))
            if spec.nprobe is None:
                spec.nprobe = int(min(spec.nlist, max(1, spec.nlist // 16, 16)))
        if spec.type == "ivfpq":
            if spec.m is None:
                spec.m = max(m for m in range(1, min(d, 64) + 1) if d % m == 0 and m <= max(1, d // 4))
            if d % spec.m:
                raise SearchIndexError(f"ivfpq: m={spec.m} must divide the dimension {d}")
        return spec


def new_index(spec: IndexSpec, d: int) -> Any:
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if spec.type == "flat":
        if spec.fp16:
            return faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, ip)
        return faiss.IndexFlatIP(d)
    quantizer = faiss.IndexFlatIP(d)
    if spec.type == "ivf":
        if spec.fp16:
            index = faiss.IndexIVFScalarQuantizer(quantizer, d, int(spec.nlist), faiss.ScalarQuantizer.QT_fp16, ip)
        else:
            index = faiss.IndexIVFFlat(quantizer, d, int(spec.nlist), ip)
    else:
        index = faiss.IndexIVFPQ(quantizer, d, int(spec.nlist), int(spec.m), int(spec.nbits), ip)
    return index  # the python wrapper keeps the quantizer alive (faiss referenced_objects)


def set_nprobe(index: Any, nprobe: int | None) -> None:
    if not nprobe:
        return
    faiss = _faiss()
    try:
        faiss.extract_index_ivf(index).nprobe = int(nprobe)
    except (RuntimeError, AttributeError):
        if hasattr(faiss, "GpuParameterSpace"):
            try:
                faiss.GpuParameterSpace().set_index_parameter(index, "nprobe", int(nprobe))
                return
            except RuntimeError:
                pass
        faiss.ParameterSpace().set_index_parameter(index, "nprobe", int(nprobe))


def build_index(
    chunks: Sequence[np.ndarray] | Any, spec: IndexSpec, n_total: int, d: int, *, progress: bool = True
) -> tuple[Any, IndexSpec]:
    """Build from an iterable of ``n x d`` float32 chunks (consumed twice for IVF: train, then add).

    ``chunks`` may be a callable returning a fresh iterator (so a shard folder is streamed, not loaded).
    """
    from tqdm.auto import tqdm

    spec = spec.resolved(n_total, d)
    index = new_index(spec, d)
    fresh = chunks if callable(chunks) else (lambda: iter(chunks))
    if not index.is_trained:
        sample = _training_sample(fresh(), spec.train_size, n_total)
        need = {"ivf": spec.nlist, "ivfpq": max(int(spec.nlist or 1), 2 ** spec.nbits)}[spec.type]
        if sample.shape[0] < int(need or 1):
            raise SearchIndexError(
                f"{spec.type} with nlist={spec.nlist}"
                + (f", nbits={spec.nbits}" if spec.type == "ivfpq" else "")
                + f" needs at least {need} training vectors, the gallery has {sample.shape[0]}; "
                "use --type flat for small galleries or lower --nlist/--nbits"
            )
        t0 = time.perf_counter()
        index.train(sample)
        log.info("trained %s on %d vectors in %.1fs", spec.type, sample.shape[0], time.perf_counter() - t0)
    set_nprobe(index, spec.nprobe)
    with tqdm(total=n_total, desc="index", unit="vec", disable=not progress) as bar:
        for chunk in fresh():
            x = np.ascontiguousarray(chunk, dtype=np.float32)
            if x.ndim != 2 or x.shape[1] != d:
                raise SearchIndexError(f"embedding chunk of shape {x.shape}, expected N x {d}")
            index.add(x)
            bar.update(x.shape[0])
    return index, spec


def _training_sample(chunks: Any, size: int, n_total: int) -> np.ndarray:
    """An evenly strided sample of up to ``size`` vectors drawn while streaming the chunks."""
    step = max(1, n_total // max(1, size))
    parts, seen = [], 0
    for chunk in chunks:
        x = np.asarray(chunk, dtype=np.float32)
        start = (-seen) % step
        parts.append(x[start::step])
        seen += x.shape[0]
    return np.ascontiguousarray(np.concatenate(parts)[:size]) if parts else np.zeros((0, 1), np.float32)


def to_gpu(index: Any, *, fp16: bool = False, shard: bool = True) -> Any:
    """Clone onto every visible GPU (sharded) when faiss-gpu and CUDA are present; else unchanged."""
    if not gpu_available():
        return index
    faiss = _faiss()
    if isinstance(index, faiss.IndexScalarQuantizer):
        # GPU faiss has no flat scalar-quantizer index: rebuild as a flat index stored in float16
        flat = faiss.IndexFlatIP(index.d)
        flat.add(index.reconstruct_n(0, index.ntotal))
        index, fp16 = flat, True
    co = faiss.GpuMultipleClonerOptions()
    co.shard = bool(shard)
    co.useFloat16 = bool(fp16)
    nprobe = None
    try:
        nprobe = faiss.extract_index_ivf(index).nprobe
    except (RuntimeError, AttributeError):
        pass
    gpu = faiss.index_cpu_to_all_gpus(index, co=co)
    set_nprobe(gpu, nprobe)
    log.info("index on %d GPU(s) (sharded=%s, fp16=%s)", faiss.get_num_gpus(), shard, fp16)
    return gpu


def search(index: Any, queries: np.ndarray, k: int, *, chunk: int = 16384, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner products, ``chunk`` queries at a time: ``(scores Q x k float32, rows Q x k int64)``.

    ``k`` larger than the index pads with score ``-inf`` and row ``-1``.
    """
    from tqdm.auto import tqdm

    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != index.d:
        raise SearchIndexError(f"queries of shape {q.shape} do not fit an index of dimension {index.d}")
    kk = max(1, min(int(k), int(index.ntotal)))
    scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
    rows = np.full((q.shape[0], k), -1, dtype=np.int64)
    if index.ntotal == 0 or q.shape[0] == 0:
        return scores, rows
    for start in tqdm(range(0, q.shape[0], chunk), desc="search", unit="chunk", disable=not progress):
        d, i = index.search(q[start : start + chunk], kk)
        scores[start : start + chunk, :kk] = d
        rows[start : start + chunk, :kk] = i
    scores[rows < 0] = -np.inf
    return scores, rows


@dataclass
class IndexBundle:
    """A faiss index with its row -> id map and how it was built."""

    index: Any
    ids: list[str]
    spec: IndexSpec
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: str | Path) -> Path:
        faiss = _faiss()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cpu = self.index
        if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(cpu).__name__:
            cpu = faiss.index_gpu_to_cpu(cpu)
        with atomic.atomic_path(folder / "index.faiss") as tmp:
            faiss.write_index(cpu, str(tmp))
        atomic.write_json(folder / "ids.json", self.ids)
        atomic.write_json(
            folder / "index.json",
            {"format": INDEX_FORMAT, "dim": int(cpu.d), "ntotal": int(cpu.ntotal), "spec": asdict(self.spec),
             **self.meta},
        )
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "IndexBundle":
        faiss = _faiss()
        folder = Path(folder)
        meta_file = folder / "index.json"
        if not meta_file.is_file():
            raise SearchIndexError(f"{folder} is not an index folder (no index.json); build one with: zoo index EMB --out {folder}")
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != INDEX_FORMAT:
            raise SearchIndexError(f"{meta_file}: format '{meta.get('format')}', expected '{INDEX_FORMAT}'")
        index = faiss.read_index(str(folder / "index.faiss"))
        ids = json.loads((folder / "ids.json").read_text())
        if len(ids) != index.ntotal:
            raise SearchIndexError(f"{folder}: {index.ntotal} vectors but {len(ids)} ids")
        spec = IndexSpec(**meta.pop("spec"))
        set_nprobe(index, spec.nprobe)
        for key in ("format", "dim", "ntotal"):
            meta.pop(key, None)
        return cls(index, ids, spec, meta)

    def search(self, queries: np.ndarray, k: int, *, chunk: int = 16384, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        return search(self.index, queries, k, chunk=chunk, progress=progress)


def faiss_search_fn(*, gpu: bool = True, chunk: int = 16384) -> SearchFn:
    """A :data:`SearchFn` over exact faiss flat indexes (``ip`` or squared ``l2``), GPU when present."""
    faiss = _faiss()

    def fn(queries: np.ndarray, gallery: np.ndarray, k: int, metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:
        d = gallery.shape[1]
        index = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
        index.add(np.ascontiguousarray(gallery, dtype=np.float32))
        if gpu and gpu_available():
            index = to_gpu(index)
        scores, rows = search(index, queries, k, chunk=chunk)
        if metric == "l2":  # SearchFn: l2 gives squared distances, +inf at padding
            scores = np.where(rows < 0, np.inf, scores)
        return scores, rows

    return fn


def index_from_store(store_path: str | Path, spec: IndexSpec, *, progress: bool = True) -> IndexBundle:
    """Build an index from a ``zoo embed`` folder, streaming its shards."""
    from zoo.inference.shards import EmbeddingStore

    store = EmbeddingStore(store_path)
    store.check_complete()
    ids: list[str] = []

    def chunks() -> Any:
        ids.clear()
        for shard_ids, emb in store.iter_shards():
            ids.extend(shard_ids)
            yield emb

    n = len(store)
    index, resolved = build_index(chunks, spec, n, store.dim, progress=progress)
    meta = {"embeddings": str(Path(store_path).resolve()), "recipe": store.manifest.get("recipe"),
            "checkpoint": store.manifest.get("checkpoint"), "identity": store.identity.to_dict()}
    return IndexBundle(index, ids, resolved, meta)
