"""Exact top-k search as chunked matmul + ``topk`` in torch: GPU search without faiss-gpu.

The faiss-gpu wheels need CUDA runtimes that are not always installable; where CUDA is present and
faiss-gpu is not, :func:`zoo.inference.index.to_gpu` and :func:`zoo.inference.index.faiss_search_fn`
use :class:`TorchFlatIndex` instead (see :func:`zoo.inference.index.search_backend`). It has the part
of a faiss index's interface that zoo's search uses (``d``, ``ntotal``, ``metric_type``,
``search(x, k) -> (D, I)``), so :func:`zoo.inference.index.search` and ``IndexBundle`` search it
unchanged. It runs on any torch device (the tests compare it with faiss on the CPU).

Storage: ``float32`` (exact, the default), ``float16`` or ``bfloat16`` (half the memory; products of
the rounded vectors are accumulated and returned in float32, so only the storage rounding differs
from faiss: ~1e-3 for float16, ~1e-2 for bfloat16 on unit vectors). Queries are searched in blocks
of ``query_chunk`` against ``gallery_chunk`` rows at a time, keeping a running top-k, so the score
block never exceeds ``query_chunk x gallery_chunk`` floats however large the gallery.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: storage dtypes by the names the CLI and the index spec use
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: faiss metric codes (``faiss.METRIC_INNER_PRODUCT``, ``faiss.METRIC_L2``), kept here so that this
#: module does not need faiss
METRIC_INNER_PRODUCT, METRIC_L2 = 0, 1


def storage_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    aliases = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
    key = aliases.get(name, name)
    if key not in STORAGE_DTYPES:
        raise ValueError(f"unknown storage '{name}'; use one of {', '.join(STORAGE_DTYPES)}")
    return STORAGE_DTYPES[key]


class TorchFlatIndex:
    """An exact inner-product (or squared-L2) index over ``N x d`` vectors held as one torch tensor."""

    def __init__(
        self,
        vectors: np.ndarray | torch.Tensor,
        *,
        device: str | torch.device = "cuda",
        storage: str | torch.dtype = "float32",
        metric: str = "ip",
        query_chunk: int = 1024,
        gallery_chunk: int = 262_144,
    ) -> None:
        if metric not in ("ip", "l2"):
            raise ValueError(f"metric '{metric}': use 'ip' or 'l2'")
        x = torch.as_tensor(np.ascontiguousarray(vectors, dtype=np.float32)) if isinstance(vectors, np.ndarray) else vectors
        if x.ndim != 2:
            raise ValueError(f"vectors of shape {tuple(x.shape)}, expected N x d")
        self.device = torch.device(device)
        self.dtype = storage_dtype(storage)
        self.metric = metric
        self.metric_type = METRIC_INNER_PRODUCT if metric == "ip" else METRIC_L2
        self.query_chunk = int(query_chunk)
        self.gallery_chunk = int(gallery_chunk)
        self.vectors = x.to(self.device, self.dtype).contiguous()
        # squared norms of the stored (rounded) vectors, in float32, for l2
        self.sq_norms = self.vectors.float().pow(2).sum(1) if metric == "l2" else None

    @classmethod
    def from_faiss(cls, index: Any, **kwargs: Any) -> "TorchFlatIndex":
        """Copy a faiss flat index (``IndexFlat*`` or float16 ``IndexScalarQuantizer``) to torch."""
        metric = "l2" if int(index.metric_type) == METRIC_L2 else "ip"
        vectors = index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32)
        return cls(vectors, metric=metric, **kwargs)

    @property
    def d(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def ntotal(self) -> int:
        return int(self.vectors.shape[0])

    def _scores(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``q @ g.T`` in float32 (half storage: half products, float32 accumulation and output)."""
        if g.dtype == torch.float32:
            return q @ g.T
        if q.is_cuda:
            try:
                return torch.mm(q, g.T, out_dtype=torch.float32)
            except (TypeError, RuntimeError):  # older torch: no mm(out_dtype=); half output
                return (q @ g.T).float()
        return q.float() @ g.float().T  # CPU: no half GEMM with float32 output

    @torch.inference_mode()
    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss semantics: ``(D Q x k float32, I Q x k int64)``, best first (``ip``: largest inner
        products; ``l2``: smallest squared distances); ``k`` must not exceed ``ntotal``."""
        queries = np.ascontiguousarray(x, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.d:
            raise ValueError(f"queries of shape {queries.shape} do not fit an index of dimension {self.d}")
        k = int(k)
        if not 0 < k <= self.ntotal:
            raise ValueError(f"k={k} must be in 1..{self.ntotal}")
        out_d = np.empty((queries.shape[0], k), np.float32)
        out_i = np.empty((queries.shape[0], k), np.int64)
        for q0 in range(0, queries.shape[0], self.query_chunk):
            q = torch.from_numpy(queries[q0 : q0 + self.query_chunk]).to(self.device, self.dtype)
            best_s = best_i = None
            for g0 in range(0, self.ntotal, self.gallery_chunk):
                s = self._scores(q, self.vectors[g0 : g0 + self.gallery_chunk])
                if self.sq_norms is not None:  # rank by 2<q,g> - |g|^2 (|q|^2 is the same for a row)
                    s = 2 * s - self.sq_norms[g0 : g0 + self.gallery_chunk]
                top_s, top_i = torch.topk(s, min(k, s.shape[1]), dim=1)
                top_i += g0
                if best_s is not None:
                    top_s = torch.cat([best_s, top_s], 1)
                    top_i = torch.cat([best_i, top_i], 1)
                    top_s, pos = torch.topk(top_s, k, dim=1)
                    top_i = torch.gather(top_i, 1, pos)
                best_s, best_i = top_s, top_i
            assert best_s is not None and best_i is not None
            if self.sq_norms is not None:
                qn = torch.from_numpy(queries[q0 : q0 + self.query_chunk]).to(self.device)
                best_s = (qn.pow(2).sum(1, keepdim=True) - best_s).clamp_min_(0)
            out_d[q0 : q0 + len(q)] = best_s.float().cpu().numpy()
            out_i[q0 : q0 + len(q)] = best_i.cpu().numpy()
        return out_d, out_i

    def reconstruct_n(self, start: int, n: int) -> np.ndarray:
        return self.vectors[start : start + n].float().cpu().numpy()


def torch_search(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    metric: str = "ip",
    *,
    device: str | torch.device = "cuda",
    storage: str | torch.dtype = "float32",
) -> tuple[np.ndarray, np.ndarray]:
    """A :data:`~zoo.inference.search.SearchFn` on ``device``: padded with ``-inf``/``-1`` (``ip``)
    or ``+inf``/``-1`` (``l2``, squared distances) when the gallery has fewer than ``k`` rows."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    n = int(np.asarray(gallery).shape[0])
    kk = min(int(k), n)
    pad = np.inf if metric == "l2" else -np.inf
    scores = np.full((q.shape[0], k), pad, np.float32)
    rows = np.full((q.shape[0], k), -1, np.int64)
    if kk == 0 or q.shape[0] == 0:
        return scores, rows
    index = TorchFlatIndex(gallery, device=device, storage=storage, metric=metric)
    scores[:, :kk], rows[:, :kk] = index.search(q, kk)
    return scores, rows
