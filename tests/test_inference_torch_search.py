"""GPU search without faiss-gpu: the torch matmul + top-k path equals faiss on the CPU, and the
backend choice (faiss-gpu, torch on CUDA, faiss CPU) with its fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

import faiss
import zoo.inference.index as index_mod
from zoo.inference.index import IndexSpec, SearchIndexError, build_index, faiss_search_fn, search, search_backend, to_gpu
from zoo.inference.torch_search import TorchFlatIndex, storage_dtype, torch_search


def unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def assert_tie_free(scores: np.ndarray) -> None:
    """Consecutive scores differ by far more than float32 rounding: the order is unambiguous."""
    assert (np.abs(np.diff(scores, axis=1)) > 1e-5).mean() > 0.99


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("query_chunk, gallery_chunk", [(1024, 262_144), (7, 113)])  # one block; many merged blocks
def test_torch_flat_equals_faiss_on_cpu(metric, query_chunk, gallery_chunk):
    g, q = unit(1500, 32, 0), unit(300, 32, 1)
    ref = faiss.IndexFlatIP(32) if metric == "ip" else faiss.IndexFlatL2(32)
    ref.add(g)
    d_ref, i_ref = ref.search(q, 50)
    assert_tie_free(d_ref)
    index = TorchFlatIndex(g, device="cpu", metric=metric, query_chunk=query_chunk, gallery_chunk=gallery_chunk)
    d, i = index.search(q, 50)
    assert d.dtype == np.float32 and i.dtype == np.int64 and d.shape == i.shape == (300, 50)
    assert np.array_equal(i, i_ref)
    np.testing.assert_allclose(d, d_ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("storage, tol", [("float16", 2e-3), ("bfloat16", 1.6e-2)])
def test_half_storage_rounds_only_the_vectors(storage, tol):
    g, q = unit(2000, 64, 2), unit(100, 64, 3)
    index = TorchFlatIndex(g, device="cpu", storage=storage, gallery_chunk=500)
    assert index.vectors.dtype == storage_dtype(storage) and index.dtype == storage_dtype(storage)
    d, i = index.search(q, 20)
    # the scores are the rounded vectors' exact products, close to the float32 ones of the same rows
    exact = np.take_along_axis(q @ g.T, i, axis=1)
    assert np.abs(d - exact).max() < tol
    ref = faiss.IndexFlatIP(64)
    ref.add(g)
    _, i_ref = ref.search(q, 20)
    overlap = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(i, i_ref)])
    assert overlap > (0.97 if storage == "float16" else 0.85)
    assert np.all(np.diff(d, axis=1) <= 0)  # best first


def test_from_faiss_and_zoo_search_padding():
    g = unit(40, 16, 4)
    flat, _ = build_index([g], IndexSpec("flat"), 40, 16, progress=False)
    idx = TorchFlatIndex.from_faiss(flat, device="cpu")
    assert (idx.d, idx.ntotal, idx.metric_type) == (16, 40, faiss.METRIC_INNER_PRODUCT)
    np.testing.assert_array_equal(idx.reconstruct_n(0, 40), g)
    q = unit(5, 16, 5)
    s, r = search(idx, q, 50)  # zoo's search pads k > ntotal like faiss indexes
    s_ref, r_ref = search(flat, q, 50)
    assert np.array_equal(r, r_ref) and (r[:, 40:] == -1).all() and np.isneginf(s[:, 40:]).all()
    np.testing.assert_allclose(s[:, :40], s_ref[:, :40], atol=1e-5)
    l2 = faiss.IndexFlatL2(16)
    l2.add(g)
    assert TorchFlatIndex.from_faiss(l2, device="cpu").metric == "l2"
    with pytest.raises(ValueError, match="k=41"):
        idx.search(q, 41)
    with pytest.raises(ValueError, match="unknown storage 'int8'"):
        storage_dtype("int8")


def test_torch_search_fn_pads_like_the_faiss_one():
    g, q = unit(30, 8, 6), unit(4, 8, 7)
    cpu = faiss_search_fn(gpu=False)
    for metric, pad in (("ip", -np.inf), ("l2", np.inf)):
        s, r = torch_search(q, g, 40, metric, device="cpu")
        s_ref, r_ref = cpu(q, g, 40, metric)
        assert np.array_equal(r, r_ref) and (r[:, 30:] == -1).all() and (s[:, 30:] == pad).all()
        np.testing.assert_allclose(s[:, :30], s_ref[:, :30], atol=1e-5)


@pytest.fixture
def cuda_without_faiss_gpu(monkeypatch):
    """A machine with CUDA and no faiss-gpu, the torch device pointed at the CPU."""
    monkeypatch.setattr(index_mod, "faiss_gpu_available", lambda: False)
    monkeypatch.setattr(index_mod, "cuda_available", lambda: True)
    monkeypatch.setattr(index_mod, "TORCH_SEARCH_DEVICE", "cpu")


def test_backend_choice(monkeypatch):
    monkeypatch.setattr(index_mod, "faiss_gpu_available", lambda: False)
    monkeypatch.setattr(index_mod, "cuda_available", lambda: False)
    assert search_backend() == "faiss-cpu" and search_backend("cpu") == "faiss-cpu"
    with pytest.raises(SearchIndexError, match="--device cuda: no CUDA GPU"):
        search_backend("cuda")
    with pytest.raises(SearchIndexError, match="unknown search device 'tpu'"):
        search_backend("tpu")
    monkeypatch.setattr(index_mod, "cuda_available", lambda: True)
    assert search_backend() == search_backend("cuda") == "torch-cuda" and search_backend("cpu") == "faiss-cpu"
    monkeypatch.setattr(index_mod, "faiss_gpu_available", lambda: True)
    assert search_backend() == "faiss-gpu" and search_backend("cpu") == "faiss-cpu"


def test_to_gpu_uses_torch_for_flat_indexes_only(cuda_without_faiss_gpu):
    g, q = unit(600, 16, 8), unit(20, 16, 9)
    flat, _ = build_index([g], IndexSpec("flat"), 600, 16, progress=False)
    moved = to_gpu(flat)
    assert isinstance(moved, TorchFlatIndex) and moved.dtype == storage_dtype("float32")
    assert np.array_equal(search(moved, q, 10)[1], search(flat, q, 10)[1])
    half, _ = build_index([g], IndexSpec("flat", fp16=True), 600, 16, progress=False)
    assert to_gpu(half, fp16=True).dtype == storage_dtype("float16")  # fp16 indexes default to float16 storage
    assert to_gpu(flat, storage="bfloat16").dtype == storage_dtype("bfloat16")
    assert to_gpu(flat, device="cpu") is flat  # --device cpu / --cpu
    ivf, _ = build_index([g], IndexSpec("ivf", nlist=8), 600, 16, progress=False)
    assert to_gpu(ivf) is ivf  # approximate indexes stay with faiss on the CPU


def test_faiss_search_fn_runs_torch_on_cuda_without_faiss_gpu(cuda_without_faiss_gpu, monkeypatch):
    import zoo.inference.torch_search as ts

    calls, real = [], ts.torch_search

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ts, "torch_search", spy)  # faiss_search_fn imports it when it is called
    g, q = unit(200, 8, 10), unit(10, 8, 11)
    s, r = faiss_search_fn(storage="float32")(q, g, 5)
    assert calls and calls[0]["device"] == "cpu" and calls[0]["storage"] == "float32"
    s_ref, r_ref = faiss_search_fn(gpu=False)(q, g, 5)
    assert np.array_equal(r, r_ref)
    np.testing.assert_allclose(s, s_ref, atol=1e-5)
