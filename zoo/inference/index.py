"""faiss indexes over L2-normalised descriptors: choose, build, save/load, search on CPU or GPU.

Index types (all inner product, i.e. cosine on normalised descriptors):

* ``flat``: exact search (``IndexFlatIP``); with ``fp16`` an ``IndexScalarQuantizer`` (QT_fp16) that
  halves memory at a ~1e-3 score error;
* ``ivf``: inverted lists over a flat coarse quantizer (``IndexIVFFlat``; ``fp16`` ->
  ``IndexIVFScalarQuantizer`` QT_fp16), approximate, ``nprobe`` lists visited;
* ``ivfpq``: IVF + product quantisation (``IndexIVFPQ``, or autofaiss's OPQ + IVF-HNSW + PQ factory
  key), for galleries of millions: ``m`` bytes a vector;
* ``hnsw``: a graph over the vectors (``IndexHNSWFlat``, ``M`` links a vector; ``fp16`` ->
  ``IndexHNSWSQ``), approximate, ``efSearch`` candidates kept per query.

``auto`` (``zoo index``'s default) picks one of them from the gallery size and a memory budget
(:func:`zoo.inference.index_choice.choose_index`: exact flat while it fits and is fast, else
autofaiss's choice). :func:`build_gallery_index` trains approximate indexes on a sample (lists of
thousands with faiss's two-level k-means), tunes ``nprobe``/``efSearch`` to a recall target and
reports recall@100 against exact search on held-out gallery vectors (:mod:`zoo.inference.recall`).

Searching on a GPU (:func:`search_backend`): with faiss-gpu (``StandardGpuResources``) and CUDA
GPUs, :func:`to_gpu` clones the index onto every GPU (sharded, ``index_cpu_to_all_gpus``; fp16
storage maps to ``useFloat16``). With CUDA but without faiss-gpu, exact (flat) indexes are searched
as chunked matmul + top-k in torch (:class:`zoo.inference.torch_search.TorchFlatIndex`, float32,
float16 or bfloat16 storage); approximate indexes then stay on the CPU.

:func:`faiss_search_fn` is the exact :data:`~zoo.inference.search.SearchFn` the recognition and
retrieval pipelines hand to the post-processing orchestrator (flat, on the GPU when present).

An index folder (``zoo index EMB --out INDEX``) holds ``index.faiss`` (``faiss.write_index``),
``ids.json`` (row -> image id) and ``index.json`` (type, dim, count, parameters, source recipe, the
model identity of the embeddings (:mod:`zoo.inference.identity`), and for ``auto``/approximate builds
the choice, the memory budget and the recall report).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zoo import atomic
from zoo.inference.index_choice import (
    DEFAULT_MEMORY,
    IndexChoice,
    choose_index,
    default_nlist,
    default_nprobe,
    parse_key,
    training_size,
)
from zoo.inference.recall import RECALL_K, RECALL_QUERIES, RECALL_TARGET, HeldOut, RecallReport, doubling, heldout_rows, tune_search
from zoo.inference.search import SearchFn
from zoo.registry import ZooError

log = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "ivf", "ivfpq", "hnsw")
#: ``zoo index --type`` values: ``auto`` chooses one of :data:`INDEX_TYPES`
INDEX_CHOICES = ("auto", *INDEX_TYPES)
#: ``--device`` of the search commands
SEARCH_DEVICES = ("auto", "cpu", "cuda")
#: ``--gpu-storage``: how the torch GPU search (no faiss-gpu) holds a flat index
GPU_STORAGES = ("float32", "float16", "bfloat16")
INDEX_FORMAT = "zoo-index/1"
#: IVF quantizers with at least this many lists are trained with faiss's two-level k-means
TWO_LEVEL_MIN_LISTS = 2048
#: HNSW links per vector when not given
HNSW_M = 32
#: torch device of the ``torch-cuda`` search backend (tests point it at the CPU)
TORCH_SEARCH_DEVICE = "cuda"


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


def faiss_gpu_available() -> bool:
    """faiss-gpu built with CUDA (``StandardGpuResources``) and at least one visible GPU."""
    faiss = _faiss()
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def cuda_available() -> bool:
    """A CUDA GPU visible to torch."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def gpu_available() -> bool:
    """Exact search can run on a GPU: faiss-gpu, or CUDA through torch."""
    return faiss_gpu_available() or cuda_available()


def search_backend(device: str = "auto") -> str:
    """Where exact search runs: ``"faiss-gpu"`` (faiss-gpu and CUDA GPUs), ``"torch-cuda"`` (CUDA
    without faiss-gpu: chunked matmul + top-k) or ``"faiss-cpu"``; ``device``: auto | cpu | cuda."""
    if device not in SEARCH_DEVICES:
        raise SearchIndexError(f"unknown search device '{device}'; use one of {', '.join(SEARCH_DEVICES)}")
    if device == "cpu":
        return "faiss-cpu"
    if faiss_gpu_available():
        return "faiss-gpu"
    if cuda_available():
        return "torch-cuda"
    if device == "cuda":
        raise SearchIndexError("--device cuda: no CUDA GPU is visible (torch.cuda.is_available() is False); "
                               "use --device auto or --device cpu")
    return "faiss-cpu"


@dataclass
class IndexSpec:
    """How to build an index; ``None`` parameters get defaults that depend on the gallery size.

    ``key``: a faiss ``index_factory`` string for indexes the other fields do not describe (autofaiss's
    OPQ + IVF-HNSW + PQ choices); ``nlist``/``m``/``nbits`` then mirror it.
    """

    type: str = "flat"
    fp16: bool = False
    nlist: int | None = None
    m: int | None = None
    nbits: int = 8
    nprobe: int | None = None
    train_size: int | None = None
    hnsw_m: int | None = None
    ef_search: int | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if self.type not in INDEX_TYPES:
            raise SearchIndexError(f"unknown index type '{self.type}'; use one of {', '.join(INDEX_CHOICES)}")
        if self.type == "ivfpq" and self.fp16:
            raise SearchIndexError(
                "--fp16 does not apply to ivfpq (its codes are already m bytes a vector); use "
                "--type flat --fp16 or --type ivf --fp16 for float16 storage"
            )

    @classmethod
    def from_choice(cls, choice: IndexChoice, *, fp16: bool = False, **params: Any) -> "IndexSpec":
        """The spec of an :class:`~zoo.inference.index_choice.IndexChoice` (``fp16`` applies to
        flat, IVF-flat and HNSW vectors; PQ codes ignore it)."""
        info = parse_key(choice.key)
        family = info["family"]
        return cls(
            type=family, fp16=fp16 and family != "ivfpq", nlist=info.get("nlist"), m=info.get("m"),
            nbits=info.get("nbits", 8), hnsw_m=info.get("hnsw_m"), key=None if info["simple"] else choice.key,
            **params,
        )

    @property
    def factory_key(self) -> str:
        """The faiss ``index_factory`` string of this (resolved) spec."""
        if self.key:
            return self.key
        vec = "SQfp16" if self.fp16 else "Flat"
        if self.type == "flat":
            return vec
        if self.type == "hnsw":
            return f"HNSW{self.hnsw_m}" + ("_SQfp16" if self.fp16 else "")
        if self.type == "ivf":
            return f"IVF{self.nlist},{vec}"
        return f"IVF{self.nlist},PQ{self.m}x{self.nbits}"

    @property
    def needs_training(self) -> bool:
        return self.type in ("ivf", "ivfpq")

    def resolved(self, n: int, d: int) -> "IndexSpec":
        spec = IndexSpec(**asdict(self))
        if spec.type in ("ivf", "ivfpq"):
            if spec.nlist is None:
                spec.nlist = default_nlist(n)
            if spec.nprobe is None:
                spec.nprobe = default_nprobe(int(spec.nlist))
        if spec.type == "ivfpq":
            if spec.m is None:
                spec.m = max(m for m in range(1, min(d, 64) + 1) if d % m == 0 and m <= max(1, d // 4))
            if d % spec.m and not spec.key:
                raise SearchIndexError(f"ivfpq: m={spec.m} must divide the dimension {d}")
        if spec.type == "hnsw" and spec.hnsw_m is None:
            spec.hnsw_m = HNSW_M
        if spec.needs_training and spec.train_size is None:
            spec.train_size = max(training_size(f"IVF{spec.nlist}", n, d), min(n, 2 ** spec.nbits))
        return spec


def new_index(spec: IndexSpec, d: int) -> Any:
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if spec.key:
        return faiss.index_factory(d, spec.key, ip)
    if spec.type == "flat":
        if spec.fp16:
            return faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, ip)
        return faiss.IndexFlatIP(d)
    if spec.type == "hnsw":
        if spec.fp16:
            return faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_fp16, int(spec.hnsw_m), ip)
        return faiss.IndexHNSWFlat(d, int(spec.hnsw_m), ip)
    quantizer = faiss.IndexFlatIP(d)
    if spec.type == "ivf":
        if spec.fp16:
            index = faiss.IndexIVFScalarQuantizer(quantizer, d, int(spec.nlist), faiss.ScalarQuantizer.QT_fp16, ip)
        else:
            index = faiss.IndexIVFFlat(quantizer, d, int(spec.nlist), ip)
    else:
        index = faiss.IndexIVFPQ(quantizer, d, int(spec.nlist), int(spec.m), int(spec.nbits), ip)
    return index  # the python wrapper keeps the quantizer alive (faiss referenced_objects)


def _ivf_of(index: Any) -> Any:
    try:
        return _faiss().extract_index_ivf(index)
    except (RuntimeError, AttributeError):
        return None


def _hnsw_of(index: Any) -> Any:
    """The HNSW graph searched first: the index's own, or its IVF's quantizer's."""
    faiss = _faiss()
    ivf = _ivf_of(index)
    target = faiss.downcast_index(ivf.quantizer) if ivf is not None else index
    if isinstance(target, faiss.IndexPreTransform):
        target = faiss.downcast_index(target.index)
    return target.hnsw if isinstance(target, faiss.IndexHNSW) else None


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


def set_ef_search(index: Any, ef_search: int | None) -> None:
    """HNSW ``efSearch`` of an HNSW index or of an IVF index's HNSW quantizer (no-op otherwise)."""
    if not ef_search:
        return
    hnsw = _hnsw_of(index)
    if hnsw is not None:
        hnsw.efSearch = int(ef_search)


def set_search_params(index: Any, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Set the stored/tuned search parameters on a CPU faiss index (GPU clones: ``nprobe`` only)."""
    if nprobe and (_ivf_of(index) is not None or "Gpu" in type(index).__name__):
        set_nprobe(index, nprobe)
    if ef_search and "Gpu" not in type(index).__name__:
        set_ef_search(index, ef_search)


def train_index(index: Any, sample: np.ndarray, spec: IndexSpec) -> None:
    """Train on ``sample``; IVF quantizers of :data:`TWO_LEVEL_MIN_LISTS` lists or more with faiss's
    two-level k-means (``faiss.contrib.clustering.two_level_clustering``: sqrt(nlist) coarse clusters,
    each split in proportion to its size), which costs ~sqrt(nlist) times less than flat k-means."""
    faiss = _faiss()
    ivf = _ivf_of(index)
    if ivf is None or int(ivf.nlist) < TWO_LEVEL_MIN_LISTS:
        index.train(sample)
        return
    from faiss.contrib.clustering import two_level_clustering

    x, outer = sample, faiss.downcast_index(index)
    if isinstance(outer, faiss.IndexPreTransform):  # OPQ etc.: train the transforms, cluster their output
        for i in range(outer.chain.size()):
            vt = outer.chain.at(i)
            vt.train(x)
            x = vt.apply(x)
    centroids, _ = two_level_clustering(np.ascontiguousarray(x, dtype=np.float32), int(np.sqrt(ivf.nlist)),
                                        int(ivf.nlist), spherical=ivf.metric_type == faiss.METRIC_INNER_PRODUCT)
    ivf.quantizer.train(centroids)
    ivf.quantizer.add(centroids)
    ivf.train(x)  # the quantizer is trained (nlist centroids): this trains the codes (PQ) only
    index.is_trained = True


def build_index(
    chunks: Sequence[np.ndarray] | Any,
    spec: IndexSpec,
    n_total: int,
    d: int,
    *,
    progress: bool = True,
    heldout: HeldOut | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[Any, IndexSpec]:
    """Build from an iterable of ``n x d`` float32 chunks (consumed twice for IVF: train, then add).

    ``chunks`` may be a callable returning a fresh iterator (so a shard folder is streamed, not loaded).
    ``heldout``: rows kept out of the training sample whose vectors (and, once collected, exact
    neighbours) are gathered on the way (:class:`zoo.inference.recall.HeldOut`).
    """
    from tqdm.auto import tqdm

    spec = spec.resolved(n_total, d)
    index = new_index(spec, d)
    fresh = chunks if callable(chunks) else (lambda: iter(chunks))
    timings = timings if timings is not None else {}
    t0 = time.perf_counter()
    if not index.is_trained:
        sample = _training_sample(fresh(), int(spec.train_size or n_total), n_total, heldout)
        need = {"ivf": spec.nlist, "ivfpq": max(int(spec.nlist or 1), 2 ** spec.nbits)}.get(spec.type, 1)
        if sample.shape[0] < int(need or 1):
            raise SearchIndexError(
                f"{spec.type} with nlist={spec.nlist}"
                + (f", nbits={spec.nbits}" if spec.type == "ivfpq" else "")
                + f" needs at least {need} training vectors, the gallery has {sample.shape[0]}; "
                "use --type flat for small galleries or lower --nlist/--nbits"
            )
        train_index(index, sample, spec)
        del sample
        log.info("trained %s on %s vectors in %.1fs", spec.factory_key, f"{spec.train_size:,}", time.perf_counter() - t0)
    timings["train_s"] = time.perf_counter() - t0
    set_search_params(index, spec.nprobe, spec.ef_search)
    t0 = time.perf_counter()
    offset = 0
    exact = heldout is not None and heldout.collected  # collected while sampling: exact top-k in this pass
    with tqdm(total=n_total, desc="index", unit="vec", disable=not progress) as bar:
        for chunk in fresh():
            x = np.ascontiguousarray(chunk, dtype=np.float32)
            if x.ndim != 2 or x.shape[1] != d:
                raise SearchIndexError(f"embedding chunk of shape {x.shape}, expected N x {d}")
            index.add(x)
            if exact:
                heldout.add_exact(offset, x)  # type: ignore[union-attr]
            elif heldout is not None:
                heldout.collect(offset, x)
            offset += x.shape[0]
            bar.update(x.shape[0])
    timings["add_s"] = time.perf_counter() - t0
    return index, spec


def _training_sample(chunks: Any, size: int, n_total: int, heldout: HeldOut | None = None) -> np.ndarray:
    """An evenly strided sample of up to ``size`` vectors drawn while streaming the chunks (held-out
    rows left out, and collected)."""
    step = max(1, n_total // max(1, size))
    parts, seen = [], 0
    for chunk in chunks:
        x = np.asarray(chunk, dtype=np.float32)
        start = (-seen) % step
        picked = np.arange(start, x.shape[0], step)
        if heldout is not None and len(heldout):
            heldout.collect(seen, x)
            picked = picked[~np.isin(picked + seen, heldout.rows)]
        parts.append(x[picked])
        seen += x.shape[0]
    return np.ascontiguousarray(np.concatenate(parts)[:size]) if parts else np.zeros((0, 1), np.float32)


@dataclass
class GalleryBuild:
    """An index built by :func:`build_gallery_index`: the index, its resolved spec, the choice that
    led to it (``auto``), its recall report (approximate indexes) and the build timings (s)."""

    index: Any
    spec: IndexSpec
    choice: IndexChoice | None = None
    recall: RecallReport | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {"factory_key": self.spec.factory_key,
                               "build_seconds": {k: round(v, 2) for k, v in self.timings.items()}}
        if self.choice is not None:
            out["choice"] = self.choice.to_dict()
        if self.recall is not None:
            out["recall"] = self.recall.to_dict()
        return out


def build_gallery_index(
    chunks: Sequence[np.ndarray] | Any,
    n_total: int,
    d: int,
    spec: IndexSpec | None = None,
    *,
    memory: str | int = DEFAULT_MEMORY,
    flat_max: int | None = None,
    fp16: bool = False,
    recall_queries: int = RECALL_QUERIES,
    recall_k: int = RECALL_K,
    recall_target: float = RECALL_TARGET,
    seed: int = 0,
    progress: bool = True,
) -> GalleryBuild:
    """Choose (``spec=None``: :func:`~zoo.inference.index_choice.choose_index` under ``memory``), build
    and, for an approximate index, tune and measure it on ``recall_queries`` held-out gallery vectors.

    ``nprobe``/``efSearch`` given in ``spec`` are kept and only measured; otherwise the smallest value
    reaching ``recall_target`` recall@``recall_k`` is kept (``recall_target=0``: the defaults, measured).
    """
    choice = None
    if spec is None:
        choice = choose_index(n_total, d, memory, flat_max=flat_max, fp16=fp16)
        train = training_size(choice.key, n_total, d, choice.memory) if parse_key(choice.key).get("nlist") else None
        spec = IndexSpec.from_choice(choice, fp16=fp16, train_size=train)
    given_nprobe, given_ef = spec.nprobe, spec.ef_search
    approximate = spec.type != "flat"
    rows = heldout_rows(n_total, recall_queries, seed) if approximate and recall_queries else np.zeros(0, np.int64)
    held = HeldOut(rows, d, recall_k) if len(rows) else None
    timings: dict[str, float] = {}
    index, spec = build_index(chunks, spec, n_total, d, progress=progress, heldout=held, timings=timings)
    report = None
    if held is not None:
        t0 = time.perf_counter()
        fresh = chunks if callable(chunks) else (lambda: iter(chunks))
        if held.exact_seen < n_total:  # nothing was trained: the add pass collected them, one more pass for the truth
            offset = 0
            for chunk in fresh():
                x = np.ascontiguousarray(chunk, dtype=np.float32)
                held.add_exact(offset, x)
                offset += x.shape[0]
        held.finish_exact(n_total)
        report = _tune(index, spec, held, given_nprobe, given_ef, recall_target)
        spec = replace(spec, nprobe=spec.nprobe if report.param != "nprobe" else report.value,
                       ef_search=spec.ef_search if report.param != "efSearch" else report.value)
        if report.param == "nprobe" and _hnsw_of(index) is not None:  # IVF-HNSW quantizer: 2 x nprobe (autofaiss)
            spec = replace(spec, ef_search=given_ef or max(16, 2 * int(report.value or 1)))
        timings["recall_s"] = time.perf_counter() - t0
    return GalleryBuild(index, spec, choice, report, timings)


def _tune(index: Any, spec: IndexSpec, held: HeldOut, nprobe: int | None, ef: int | None, target: float) -> RecallReport:
    def rows_of(q: np.ndarray, k: int) -> np.ndarray:
        return search(index, q, k)[1]

    quantizer_hnsw = _hnsw_of(index) is not None and _ivf_of(index) is not None
    if spec.type in ("ivf", "ivfpq") and nprobe is None and target > 0:
        def apply(v: int) -> None:
            set_nprobe(index, v)
            if quantizer_hnsw and not ef:
                set_ef_search(index, max(16, 2 * v))

        return tune_search(rows_of, held, param="nprobe", ladder=doubling(1, int(spec.nlist)), apply=apply,
                           target=target)
    if spec.type == "hnsw" and ef is None and target > 0:
        start = 1 << int(held.k).bit_length()  # efSearch below k acts as k in faiss
        return tune_search(rows_of, held, param="efSearch", ladder=doubling(start, max(start, 4096)),
                           apply=lambda v: set_ef_search(index, v), target=target)
    report = tune_search(rows_of, held, param=None)
    value = spec.ef_search if spec.type == "hnsw" else spec.nprobe
    if value:
        report.param, report.value = ("efSearch" if spec.type == "hnsw" else "nprobe"), int(value)
    return report


def to_gpu(index: Any, *, fp16: bool = False, shard: bool = True, device: str = "auto",
           storage: str | None = None) -> Any:
    """The index where :func:`search_backend` says exact search runs; unchanged on the CPU.

    faiss-gpu: cloned onto every visible GPU (sharded). CUDA without faiss-gpu: a flat index becomes a
    :class:`~zoo.inference.torch_search.TorchFlatIndex` on ``cuda`` with ``storage`` (default float16
    for ``fp16`` indexes, else float32); approximate indexes stay on the CPU.
    """
    backend = search_backend(device)
    if backend == "faiss-cpu":
        return index
    faiss = _faiss()
    if backend == "torch-cuda":
        if not isinstance(index, (faiss.IndexFlat, faiss.IndexScalarQuantizer)):
            log.info("%s stays on the CPU: without faiss-gpu only exact (flat) indexes are searched on the GPU",
                     type(index).__name__)
            return index
        from zoo.inference.torch_search import TorchFlatIndex

        half = fp16 or isinstance(index, faiss.IndexScalarQuantizer)
        gpu = TorchFlatIndex.from_faiss(index, device=TORCH_SEARCH_DEVICE, storage=storage or ("float16" if half else "float32"))
        log.info("flat index on the GPU through torch (%s storage; faiss-gpu is not installed)", gpu.dtype)
        return gpu
    if isinstance(index, faiss.IndexScalarQuantizer):
        # GPU faiss has no flat scalar-quantizer index: rebuild as a flat index stored in float16
        flat = faiss.IndexFlatIP(index.d)
        flat.add(index.reconstruct_n(0, index.ntotal))
        index, fp16 = flat, True
    co = faiss.GpuMultipleClonerOptions()
    co.shard = bool(shard)
    co.useFloat16 = bool(fp16 or storage in ("float16", "bfloat16"))
    nprobe = None
    try:
        nprobe = faiss.extract_index_ivf(index).nprobe
    except (RuntimeError, AttributeError):
        pass
    gpu = faiss.index_cpu_to_all_gpus(index, co=co)
    set_nprobe(gpu, nprobe)
    log.info("index on %d GPU(s) (sharded=%s, fp16=%s)", faiss.get_num_gpus(), shard, co.useFloat16)
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
    #: how it was just built (choice, recall report, timings); ``None`` when loaded from a folder
    build: GalleryBuild | None = field(default=None, repr=False, compare=False)

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
        set_search_params(index, spec.nprobe, spec.ef_search)
        for key in ("format", "dim", "ntotal"):
            meta.pop(key, None)
        return cls(index, ids, spec, meta)

    def search(self, queries: np.ndarray, k: int, *, chunk: int = 16384, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        return search(self.index, queries, k, chunk=chunk, progress=progress)


def faiss_search_fn(*, gpu: bool = True, chunk: int = 16384, storage: str = "float32") -> SearchFn:
    """An exact :data:`SearchFn` (``ip`` or squared ``l2``) on the :func:`search_backend`: faiss-gpu,
    torch on CUDA (``storage``: float32 | float16 | bfloat16), or faiss flat indexes on the CPU."""
    faiss = _faiss()
    backend = search_backend("auto" if gpu else "cpu")
    if backend == "torch-cuda":
        from zoo.inference.torch_search import torch_search

        def on_cuda(queries: np.ndarray, gallery: np.ndarray, k: int, metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:
            return torch_search(queries, gallery, k, metric, device=TORCH_SEARCH_DEVICE, storage=storage)

        return on_cuda

    def fn(queries: np.ndarray, gallery: np.ndarray, k: int, metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:
        d = gallery.shape[1]
        index = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
        index.add(np.ascontiguousarray(gallery, dtype=np.float32))
        if backend == "faiss-gpu":
            index = to_gpu(index)
        scores, rows = search(index, queries, k, chunk=chunk)
        if metric == "l2":  # SearchFn: l2 gives squared distances, +inf at padding
            scores = np.where(rows < 0, np.inf, scores)
        return scores, rows

    return fn


def index_from_store(
    store_path: str | Path,
    spec: IndexSpec | None = None,
    *,
    memory: str | int = DEFAULT_MEMORY,
    flat_max: int | None = None,
    fp16: bool = False,
    recall_queries: int = RECALL_QUERIES,
    recall_target: float = RECALL_TARGET,
    progress: bool = True,
) -> IndexBundle:
    """Build an index from a ``zoo embed`` folder, streaming its shards (``spec=None``: chosen under
    ``memory``; see :func:`build_gallery_index`)."""
    from zoo.inference.shards import EmbeddingStore

    store = EmbeddingStore(store_path)
    store.check_complete()
    ids: list[str] = []

    def chunks() -> Any:
        ids.clear()
        for shard_ids, emb in store.iter_shards():
            ids.extend(shard_ids)
            yield emb

    built = build_gallery_index(chunks, len(store), store.dim, spec, memory=memory, flat_max=flat_max, fp16=fp16,
                                recall_queries=recall_queries, recall_target=recall_target, progress=progress)
    meta = {"embeddings": str(Path(store_path).resolve()), "recipe": store.manifest.get("recipe"),
            "checkpoint": store.manifest.get("checkpoint"), "identity": store.identity.to_dict(), **built.meta()}
    return IndexBundle(built.index, ids, built.spec, meta, built)
