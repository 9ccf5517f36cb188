"""Which faiss index for a gallery of ``n x d`` descriptors under a memory budget (``zoo index --type auto``).

The choice above the exact range is autofaiss's (``get_optimal_index_keys_v2``: HNSW when its graph
and vectors fit the budget, IVF-flat when that fits, else OPQ + IVF + PQ compressed to the budget),
and so are the size estimates (``IndexMetadata.estimated_index_size_in_bytes``) and the training
sample size (``get_optimal_train_size``). zoo keeps one policy of its own in front of it: the gallery
stays an exact flat index

* under :data:`FLAT_THRESHOLD` vectors (autofaiss's ``flat_threshold``, raised from its 1,000 because
  zoo galleries are searched in large query batches, where exact search is a matrix product), and
* while exact search is still fast: ``n * d`` at most :data:`FLAT_MAX_WORK` multiply-adds per query
  (262,144 vectors of dimension 512; about 1-2 ms a query on a 2-core CPU, far less on a GPU),

in both cases only when the flat index fits the budget. ``flat_max`` (vectors) replaces both limits.

autofaiss's keys (e.g. ``HNSW32``, ``IVF16384,Flat``, ``OPQ256_768,IVF16384_HNSW32,PQ256x8``) are
faiss ``index_factory`` strings; :func:`parse_key` reads the parameters zoo's index spec keeps.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from zoo.registry import ZooError

#: the ``--memory`` default: the index (not the build) must fit in this
DEFAULT_MEMORY = "4G"
#: always exact below this many vectors (when the flat index fits the budget)
FLAT_THRESHOLD = 10_000
#: exact while ``n * d`` (multiply-adds per query) is at most this and the flat index fits
FLAT_MAX_WORK = 2**27


class IndexChoiceError(ZooError):
    """No index of the gallery fits the memory budget, or the budget is not a size."""


@dataclass(frozen=True)
class IndexChoice:
    """The index picked for a gallery: a faiss factory key, its family and why."""

    key: str
    family: str  # flat | ivf | ivfpq | hnsw
    reason: str
    estimated_bytes: int
    memory: str
    candidates: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["candidates"] = list(self.candidates)
        return out


def parse_memory(memory: str | int | float) -> int:
    """``"4G"``, ``"512M"``, ``"1.5GB"`` or a number of bytes -> bytes (autofaiss's parser; 1G = 2**30)."""
    if isinstance(memory, (int, float)):
        return int(memory)
    from autofaiss.utils.cast import cast_memory_to_bytes

    try:
        return int(cast_memory_to_bytes(str(memory).strip()))
    except ValueError:
        raise IndexChoiceError(f"--memory {memory}: not a size; give e.g. 4G, 512M or 1.5G") from None


def format_bytes(n: float) -> str:
    from autofaiss.utils.cast import cast_bytes_to_memory_string

    return cast_bytes_to_memory_string(float(n))


def parse_key(key: str) -> dict[str, Any]:
    """Family and parameters of an autofaiss/faiss factory key: ``{"family", "nlist", "m", "nbits",
    "hnsw_m", "simple"}`` (``simple``: zoo builds it from the parameters alone, no factory string)."""
    if key == "Flat":
        return {"family": "flat", "simple": True}
    if m := re.fullmatch(r"HNSW(\d+)(,Flat)?", key):
        return {"family": "hnsw", "hnsw_m": int(m.group(1)), "simple": True}
    if m := re.fullmatch(r"IVF(\d+),Flat", key):
        return {"family": "ivf", "nlist": int(m.group(1)), "simple": True}
    ivf = re.search(r"IVF(\d+)", key)
    pq = re.search(r"PQ(\d+)(?:x(\d+))?$", key)
    if ivf and pq:
        return {"family": "ivfpq", "nlist": int(ivf.group(1)), "m": int(pq.group(1)),
                "nbits": int(pq.group(2) or 8), "simple": False}
    raise IndexChoiceError(f"index key '{key}': not a flat, HNSW, IVF-flat or IVF-PQ faiss factory key")


def estimated_bytes(key: str, n: int, d: int, *, fp16: bool = False) -> int:
    """autofaiss's size estimate of ``key`` over ``n x d`` vectors (float16 flat/IVF-flat: half the vectors)."""
    from autofaiss.external.metadata import IndexMetadata

    size = int(IndexMetadata(key, n, d).estimated_index_size_in_bytes())
    if size < 0:
        raise IndexChoiceError(f"index key '{key}': autofaiss has no size estimate for it")
    if fp16 and parse_key(key)["family"] in ("flat", "ivf"):
        size -= n * d * 2
    return size


def training_size(key: str, n: int, d: int, memory: str | None = None) -> int:
    """Training vectors autofaiss asks for (up to 100 a list, at least 31, bounded by ``memory``)."""
    from autofaiss.external.optimize import get_optimal_train_size

    return int(get_optimal_train_size(n, key, memory, d))


def choose_index(
    n: int, d: int, memory: str | int = DEFAULT_MEMORY, *, flat_max: int | None = None, fp16: bool = False
) -> IndexChoice:
    """The index for ``n`` descriptors of dimension ``d`` that fits ``memory`` (see the module doc)."""
    budget = parse_memory(memory)
    memory_text = memory if isinstance(memory, str) else format_bytes(budget)
    flat_bytes = estimated_bytes("Flat", n, d, fp16=fp16)
    limit = int(flat_max) if flat_max is not None else max(FLAT_THRESHOLD - 1, FLAT_MAX_WORK // max(1, d))
    if flat_bytes <= budget and n <= limit:
        if flat_max is None and n < FLAT_THRESHOLD:
            reason = f"exact: {n:,} vectors, under {FLAT_THRESHOLD:,}"
        else:
            reason = (f"exact: {n:,} vectors fit --memory {memory_text} and exact search is fast up to "
                      f"{limit:,} vectors of dimension {d}")
        return IndexChoice("Flat", "flat", reason, flat_bytes, memory_text)
    from autofaiss.external.optimize import get_optimal_index_keys_v2

    threshold = FLAT_THRESHOLD if flat_max is None else min(FLAT_THRESHOLD, int(flat_max) + 1)
    keys = get_optimal_index_keys_v2(n, d, memory_text if isinstance(memory, str) else f"{budget}B",
                                     flat_threshold=threshold)
    fitting = [k for k in keys if estimated_bytes(k, n, d, fp16=fp16) <= budget]
    if not fitting:
        smallest = _smallest_index(n, d)
        raise IndexChoiceError(
            f"no index of {n:,} x {d} descriptors fits --memory {memory_text} (the smallest autofaiss builds, "
            f"{smallest}, needs ~{format_bytes(estimated_bytes(smallest, n, d))}); raise --memory"
        )
    key = fitting[0]
    family = parse_key(key)["family"]
    why = {"hnsw": "the HNSW graph and vectors fit", "ivf": "IVF-flat fits",
           "ivfpq": "compressed (OPQ + IVF + PQ) to fit", "flat": "exact"}[family]
    reason = f"autofaiss for {n:,} x {d} under --memory {memory_text}: {why}"
    if flat_bytes <= budget:
        reason += (f" (exact flat would fit too but is slow past {limit:,} vectors)" if flat_max is None
                   else f" (exact flat would fit too; --flat-max {limit:,})")
    return IndexChoice(key, family, reason, estimated_bytes(key, n, d, fp16=fp16), memory_text, tuple(keys))


def _smallest_index(n: int, d: int) -> str:
    from autofaiss.external.optimize import get_optimal_quantization

    keys = get_optimal_quantization(n, d, force_quantization_value=min(
        (q for q in (4, 8, 16) if q < d), default=1))
    return keys[0] if keys else "Flat"


def default_nprobe(nlist: int) -> int:
    """IVF lists visited when nothing is tuned: nlist / 16, at least 16 (all of them when fewer)."""
    return int(min(nlist, max(1, nlist // 16, 16)))


def default_nlist(n: int) -> int:
    """zoo's IVF list count for ``--type ivf/ivfpq`` without ``--nlist``: ~4 sqrt(N), at least 39 vectors a list."""
    return int(max(1, min(65536, round(4 * math.sqrt(max(n, 1))), max(1, n // 39))))
