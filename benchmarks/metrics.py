"""Metrics on large prediction sets: GAP on 1M recognition predictions, mAP@100 on 1M rankings.

    python benchmarks/metrics.py                       # 1M queries, loops timed on 20000 of them
    python benchmarks/metrics.py --queries 200000

Side by side in one run: the vectorised metric (``zoo_metrics``) on all queries and a direct
per-query loop of the same definition on ``--loop-queries`` of them (GAP's loop runs on all: it
is one sorted pass), extrapolated linearly. Values must agree to 1e-9 on the looped subset.
Synthetic data: GAP with 20% non-landmark truths and 10% "no prediction"; mAP@100 with 1-30
relevant ids per query among 10M index ids, about 10% of ranked ids relevant. Prints a one-line
JSON result last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def gap_loop(pred, conf, true, ignore_non_landmarks=False) -> float:
    """psinger / top-100 array GAP, one prediction at a time."""
    order = np.argsort(-conf, kind="stable")
    m = int((true >= 0).sum())
    i = correct = 0
    total = 0.0
    for k in order.tolist():
        p = pred[k]
        if p == -1 or (ignore_non_landmarks and true[k] == -1):
            continue
        i += 1
        if p == true[k]:
            correct += 1
            total += correct / i
    return total / m


def map_loop(ranked, relevant, k=100) -> float:
    aps = []
    for row, rel in zip(ranked.tolist(), relevant):
        rel = set(rel.tolist())
        if not rel:
            continue
        seen, hits, s = set(), 0, 0.0
        for i, x in enumerate(row[:k], 1):
            if x in rel and x not in seen:
                hits += 1
                s += hits / i
            seen.add(x)
        aps.append(s / min(len(rel), k))
    return float(np.mean(aps)) if aps else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=1_000_000, help="predictions / rankings (default: 1000000)")
    p.add_argument("--loop-queries", type=int, default=20_000, help="rankings the mAP loop runs on (default: 20000)")
    p.add_argument("-k", type=int, default=100, help="ranking depth (default: 100)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from zoo_metrics.gap import gap
    from zoo_metrics.ranking import map_at_k

    rng = np.random.default_rng(args.seed)
    q, k = args.queries, args.k
    # recognition
    true = np.where(rng.random(q) < 0.2, -1, rng.integers(0, 80_000, q))
    pred = np.where(rng.random(q) < 0.5, true, rng.integers(0, 80_000, q))
    pred = np.where(rng.random(q) < 0.1, -1, pred)
    conf = rng.random(q)
    t0 = time.perf_counter()
    g = gap(pred, conf, true)
    g_ign = gap(pred, conf, true, ignore_non_landmarks=True)
    t_gap = (time.perf_counter() - t0) / 2
    t0 = time.perf_counter()
    g_loop = gap_loop(pred, conf, true)
    t_gap_loop = time.perf_counter() - t0
    g_ign_loop = gap_loop(pred, conf, true, True)
    # retrieval: relevant ids padded (Q x 30), rankings with ~10% relevant ids
    n_rel = rng.integers(1, 31, q)
    relevant = rng.integers(0, 10_000_000, (q, 30))
    relevant[np.arange(30)[None, :] >= n_rel[:, None]] = -1
    ranked = rng.integers(0, 10_000_000, (q, k))
    pick = rng.random((q, k)) < 0.1
    src = relevant[np.arange(q)[:, None], rng.integers(0, 30, (q, k)) % n_rel[:, None]]
    ranked = np.where(pick, src, ranked)
    t0 = time.perf_counter()
    m = map_at_k(ranked, relevant, k=k)
    t_map = time.perf_counter() - t0
    nl = min(args.loop_queries, q)
    rel_lists = [r[r >= 0] for r in relevant[:nl]]
    t0 = time.perf_counter()
    m_loop_sub = map_loop(ranked[:nl], rel_lists, k)
    t_map_loop = (time.perf_counter() - t0) * q / nl
    m_sub = map_at_k(ranked[:nl], relevant[:nl], k=k)
    out = {
        "benchmark": "metrics",
        "machine": platform.node(), "cpus": os.cpu_count(), "queries": q, "k": k, "loop_queries": nl,
        "gap": {"value": g, "value_landmarks_only": g_ign, "vectorised_s": round(t_gap, 3), "loop_s": round(t_gap_loop, 2),
                "speedup": round(t_gap_loop / t_gap, 1),
                "agree": bool(abs(g - g_loop) < 1e-9 and abs(g_ign - g_ign_loop) < 1e-9)},
        "map_at_k": {"value": m, "vectorised_s": round(t_map, 3), "loop_s_extrapolated": round(t_map_loop, 1),
                     "speedup": round(t_map_loop / t_map, 1), "agree_on_subset": bool(abs(m_sub - m_loop_sub) < 1e-9)},
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"GAP on {q}: {t_gap:.2f}s (loop {t_gap_loop:.1f}s); mAP@{k}: {t_map:.2f}s (loop ~{t_map_loop:.0f}s)", file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
