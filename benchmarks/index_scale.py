"""Index choice at gallery scale: what ``zoo index --memory BUDGET`` builds, and what it costs.

    nice -n 19 python benchmarks/index_scale.py                         # 1M x 512, budgets 4G 2G 1G 256M
    nice -n 19 python benchmarks/index_scale.py --n 200000 --budgets 4G 1G 128M

For each memory budget the index is chosen and built exactly as ``zoo index`` does
(:func:`zoo.inference.index.build_gallery_index`: the choice, training on a sample, nprobe / efSearch
tuned to recall@100 >= 0.95 on held-out gallery vectors), plus the exact flat index as the baseline
(``--budgets`` may name ``flat``). Data: clustered synthetic L2-normalised descriptors (``--clusters``
Gaussian blobs, so IVF lists and graphs have structure as real descriptors do); queries are drawn
from the same distribution but are not in the gallery. For every choice it reports the build time
(train + add + tuning), the index size (``faiss.serialize_index`` bytes) and the growth of the
process's peak RSS during the build, queries/s of a batch search (top-100, this machine's threads),
and recall@100 of the queries against exact search (``faiss.knn`` over the whole gallery).
Prints one JSON line per choice and a summary JSON line last.
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


def clustered(n: int, d: int, clusters: int, seed: int, *, chunk: int = 100_000) -> np.ndarray:
    """``n x d`` unit vectors around ``clusters`` random centres (noise 0.5 per dimension of the
    unit-norm centre scale), generated in chunks to keep the peak at one copy."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        x = centres[rng.integers(0, clusters, m)] + rng.standard_normal((m, d), dtype=np.float32) * (0.5 / np.sqrt(d))
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="gallery size (default: 1000000)")
    p.add_argument("--dim", type=int, default=512, help="descriptor dimension (default: 512)")
    p.add_argument("--queries", type=int, default=1000, help="queries, not in the gallery (default: 1000)")
    p.add_argument("--clusters", type=int, default=10_000, help="Gaussian blobs of the synthetic data (default: 10000)")
    p.add_argument("-k", type=int, default=100, help="recall@k (default: 100)")
    p.add_argument("--budgets", nargs="+", default=["flat", "4G", "2G", "1G", "256M"],
                   help="memory budgets for zoo's choice; 'flat', 'ivf', 'ivfpq', 'hnsw' build that type as "
                        "zoo index --type does (default: flat 4G 2G 1G 256M)")
    p.add_argument("--flat-max", type=int, default=None,
                   help="zoo index --flat-max: 0 makes the budgets choose as past the exact range (default: zoo's)")
    p.add_argument("--recall-queries", type=int, default=1000, help="held-out gallery vectors for tuning (default: 1000)")
    args = p.parse_args(argv)

    import faiss

    from zoo.inference.index import INDEX_TYPES, IndexSpec, build_gallery_index, search

    t0 = time.perf_counter()
    data = clustered(args.n + args.queries, args.dim, args.clusters, seed=0)
    gallery, queries = data[: args.n], np.ascontiguousarray(data[args.n :])
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, truth = faiss.knn(queries, gallery, args.k, metric=faiss.METRIC_INNER_PRODUCT)
    truth_s = time.perf_counter() - t0
    print(f"data {args.n:,} x {args.dim} in {gen_s:.1f}s; exact top-{args.k} of {args.queries} queries in {truth_s:.1f}s",
          file=sys.stderr)
    chunks = [gallery[s : s + 100_000] for s in range(0, args.n, 100_000)]  # streamed like embedding shards

    rows = []
    for budget in args.budgets:
        gc.collect()
        base = reset_peak()
        t0 = time.perf_counter()
        if budget in INDEX_TYPES:
            built = build_gallery_index(chunks, args.n, args.dim, IndexSpec(budget),
                                        recall_queries=args.recall_queries, progress=False)
        else:
            built = build_gallery_index(chunks, args.n, args.dim, None, memory=budget, flat_max=args.flat_max,
                                        recall_queries=args.recall_queries, progress=False)
        build_s = time.perf_counter() - t0
        peak_mb = peak_extra_mb(base)
        size_mb = faiss.serialize_index(built.index).nbytes / 2**20
        t0 = time.perf_counter()
        _, found = search(built.index, queries, args.k)
        qps = args.queries / (time.perf_counter() - t0)
        row = {
            "budget": budget,
            "key": built.spec.factory_key,
            "type": built.spec.type,
            "nprobe": built.spec.nprobe,
            "ef_search": built.spec.ef_search,
            "reason": built.choice.reason if built.choice else f"--type {budget}",
            "build_s": round(build_s, 1),
            "build_parts_s": {k: round(v, 1) for k, v in built.timings.items()},
            "index_mb": round(size_mb, 1),
            "estimated_mb": round(built.choice.estimated_bytes / 2**20, 1) if built.choice else None,
            "peak_rss_growth_mb": round(peak_mb),
            "queries_per_s": round(qps, 1),
            f"recall@{args.k}": round(recall_at(found, truth), 4),
            f"heldout_recall@{args.k}": round(built.recall.recall, 4) if built.recall else None,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        del built
    print(json.dumps({
        "benchmark": "index_scale", "machine": platform.node(), "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(), "n": args.n, "dim": args.dim, "queries": args.queries,
        "clusters": args.clusters, "flat_max": args.flat_max, "faiss": faiss.__version__, "faiss_threads": faiss.omp_get_max_threads(),
        "data_s": round(gen_s, 1), "exact_truth_s": round(truth_s, 1), "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
