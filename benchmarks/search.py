"""Top-k search: zoo's index/search vs a direct faiss.IndexFlatIP call vs chunked torch.mm + topk.

    python benchmarks/search.py                      # 10k queries x 200k x 512, top-100, CPU
    python benchmarks/search.py --device cuda        # faiss-gpu (index_cpu_to_all_gpus) and torch on CUDA

``zoo_torch_<storage>`` is zoo's GPU search without faiss-gpu
(:class:`zoo.inference.torch_search.TorchFlatIndex`: chunked matmul + running top-k) with float32,
float16 or bfloat16 storage (``--torch-storages``), on ``--device``. On CUDA without faiss-gpu,
``zoo`` is that same torch path (``to_gpu``) and ``faiss_direct`` runs on the CPU, so the ratios
are GPU torch against faiss CPU on the same machine.

All three run side by side in one process on the same random L2-normalised data (interleaved,
best of --repeat). Ratios are throughputs relative to zoo (>1: zoo faster). Peak extra host memory
per method is measured with VmHWM after resetting it (/proc/self/clear_refs), on CUDA torch's
peak allocation as well. Prints a one-line JSON result last.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rss import peak_extra_mb, reset_peak  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000, help="gallery size (default: 200000)")
    p.add_argument("--queries", type=int, default=10_000, help="number of queries (default: 10000)")
    p.add_argument("--dim", type=int, default=512, help="descriptor dimension (default: 512)")
    p.add_argument("-k", type=int, default=100, help="neighbours per query (default: 100)")
    p.add_argument("--repeat", type=int, default=2, help="interleaved repetitions, best kept (default: 2)")
    p.add_argument("--torch-chunk", type=int, default=1024, help="queries per torch.mm chunk (default: 1024)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--torch-storages", default=None,
                   help="storages of the zoo_torch methods, comma-separated (default: float32 on the CPU, "
                        "float32,float16,bfloat16 on CUDA; 'none' for none)")
    args = p.parse_args(argv)

    import faiss
    import torch

    from zoo.inference.index import IndexSpec, build_index, faiss_gpu_available, search, to_gpu
    from zoo.inference.torch_search import TorchFlatIndex

    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    cuda = args.device.startswith("cuda")
    faiss_gpu = cuda and faiss_gpu_available()
    storages = args.torch_storages or ("float32,float16,bfloat16" if cuda else "float32")
    storages = [] if storages == "none" else storages.split(",")

    def run_zoo() -> tuple[np.ndarray, np.ndarray]:
        index, _ = build_index([gallery], IndexSpec("flat"), args.n, args.dim, progress=False)
        if cuda:
            index = to_gpu(index)
        return search(index, queries, args.k)

    def run_faiss() -> tuple[np.ndarray, np.ndarray]:
        index = faiss.IndexFlatIP(args.dim)
        if faiss_gpu:
            res = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(res, 0, index)
        index.add(gallery)
        return index.search(queries, args.k)

    def run_torch() -> tuple[np.ndarray, np.ndarray]:
        dev = torch.device(args.device)
        g = torch.from_numpy(gallery).to(dev)
        out_s, out_i = [], []
        with torch.inference_mode():
            for s in range(0, args.queries, args.torch_chunk):
                q = torch.from_numpy(queries[s : s + args.torch_chunk]).to(dev)
                sc, ix = torch.topk(q @ g.T, args.k, dim=1)
                out_s.append(sc.cpu())
                out_i.append(ix.cpu())
        return torch.cat(out_s).numpy(), torch.cat(out_i).numpy()

    def run_zoo_torch(storage: str):
        def run() -> tuple[np.ndarray, np.ndarray]:
            index = TorchFlatIndex(gallery, device=args.device, storage=storage, query_chunk=args.torch_chunk)
            return search(index, queries, args.k)

        return run

    methods = {"zoo": run_zoo, "faiss_direct": run_faiss, "torch_mm_topk": run_torch,
               **{f"zoo_torch_{st}": run_zoo_torch(st) for st in storages}}
    best = {m: float("inf") for m in methods}
    mem = {m: 0.0 for m in methods}
    gpu_mem = {m: 0.0 for m in methods}
    results = {}
    for rep in range(args.repeat):
        for name, fn in methods.items():
            gc.collect()
            base = reset_peak()
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            s, i = fn()
            if cuda:
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            best[name] = min(best[name], dt)
            mem[name] = max(mem[name], peak_extra_mb(base))
            if cuda:
                gpu_mem[name] = max(gpu_mem[name], torch.cuda.max_memory_allocated() / 2**20)
            results[name] = np.asarray(i)
            print(f"rep {rep} {name}: {dt:.2f}s, peak extra host memory {mem[name]:.0f} MB", file=sys.stderr)
            del s, i
    agree = {m: float((results[m][:, :10] == results["faiss_direct"][:, :10]).mean()) for m in methods}
    out = {
        "benchmark": "search",
        "device": args.device,
        "machine": platform.node(),
        "cpus": os.cpu_count(),
        "n": args.n, "queries": args.queries, "dim": args.dim, "k": args.k,
        "faiss": faiss.__version__, "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
        "seconds": {m: round(v, 3) for m, v in best.items()},
        "zoo_vs_faiss_direct": round(best["faiss_direct"] / best["zoo"], 3),
        "zoo_vs_torch_mm_topk": round(best["torch_mm_topk"] / best["zoo"], 3),
        "queries_per_s": {m: round(args.queries / v, 1) for m, v in best.items()},
        "faiss_direct_on": "gpu" if faiss_gpu else "cpu",
        "peak_extra_host_mb": {m: round(v) for m, v in mem.items()},
        "top10_agreement_with_faiss": agree,
        "date": time.strftime("%Y-%m-%d"),
    }
    if cuda:
        out["peak_torch_gpu_mb"] = {m: round(v) for m, v in gpu_mem.items()}
    print(json.dumps(out))
    return 0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
