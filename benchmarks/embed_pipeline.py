"""`zoo embed` on real JPEGs vs the same model's forward on pre-decoded tensors (compute-only bound).

    python benchmarks/embed_pipeline.py                           # default recipe, instance-eval photos
    python benchmarks/embed_pipeline.py --images ../shared/data/grocery-store --limit 512
    python benchmarks/embed_pipeline.py --device cuda --recipe default --batch-size 64

Both sides see the same batches: the images are first decoded and bucketed exactly as the
pipeline does, kept in memory, and the compute-only side times normalisation + forward on them.
The pipeline side times :func:`zoo.inference.embed.embed_to_folder` end to end (decode in
workers, resize, bucket, forward, shard writes). Interleaved, best of --repeat. The ratio
``pipeline_vs_compute`` is pipeline throughput / compute-only throughput (goal >= 0.85). Each side
also reports its process CPU seconds (all threads), and the JSON records ``uptime``'s load average
before and after: on a shared machine the wall-clock ratio is only as good as the load was steady.
``--decode-threads 1`` decodes serially in the main thread (zoo embed on a CPU before issue 13.5;
the default is one thread per core). Also reports the peak RSS at 1x and 10x the images (same files
listed 10x) for the flat-memory check. Prints a one-line JSON result last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _default_images() -> Path:
    return REPO.parent / "shared" / "data" / "instance-eval"


def _records(images: Path, limit: int | None):
    from zoo.data.images import list_images

    src = images / "labels.csv" if (images / "labels.csv").is_file() else images
    recs = list_images(src, images if src != images else None)
    return recs[:limit] if limit else recs


def _load() -> list[float]:
    """The 1, 5 and 15-minute load averages (``uptime``)."""
    return [round(v, 2) for v in os.getloadavg()]


def _memory_child(args: argparse.Namespace, factor: int) -> int:
    """Embed ``factor`` x the images in this process; print peak RSS (kB)."""
    import zoo
    from zoo.data.images import ImageRecord
    from zoo.inference.embed import EmbedOptions, embed_to_folder

    recs = _records(Path(args.images), args.limit)
    many = [ImageRecord(f"{i:08d}", recs[i % len(recs)].path) for i in range(len(recs) * factor)]
    model = zoo.create_model(args.recipe, overrides=args.override)
    with tempfile.TemporaryDirectory() as tmp:
        embed_to_folder(model, many, tmp, options=EmbedOptions(
            batch_size=args.batch_size, num_workers=args.workers, device=args.device, progress=False,
            shard_size=args.shard_size))
    print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default=str(_default_images()), help="image folder or instance-eval folder")
    p.add_argument("--recipe", default="default", help="recipe (default: default; weights do not matter here)")
    p.add_argument("-o", "--override", action="append", default=[], help="recipe override (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="use the first N images")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=None, help="decoding workers (default: as zoo embed)")
    p.add_argument("--shard-size", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--decode-threads", type=int, default=None,
                   help="threads decoding a chunk when there are no workers (default: zoo's, one per core)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--memory", action="store_true", help="also measure peak RSS at 1x and 10x images")
    p.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.memory_child:
        return _memory_child(args, args.memory_child)

    import torch

    import zoo
    import zoo.inference.embed as embed_module
    from zoo.inference.dataset import ImageStream
    from zoo.inference.embed import EmbedOptions, Embedder, embed_to_folder, resolve_device

    if args.decode_threads:  # the benchmark's A/B switch (zoo itself sizes this from the cores)
        embed_module.default_decode_threads = lambda workers: args.decode_threads if workers == 0 else 1
    load_before = _load()

    recs = _records(Path(args.images), args.limit)
    model = zoo.create_model(args.recipe, overrides=args.override)
    device = resolve_device(args.device)
    embedder = Embedder(model, device=device)
    # the exact batches of the pipeline, decoded once up front
    stream = ImageStream(recs, embedder.preprocesses)
    buckets: dict = {}
    batches = []
    for i in range(len(recs)):
        s = stream[i]
        if s.inputs is None:
            continue
        b = buckets.setdefault(s.key, [])
        b.append(s)
        if len(b) == args.batch_size:
            batches.append(buckets.pop(s.key))
    batches.extend(buckets.values())
    stacked = [[torch.stack([s.inputs[j] for s in b]) for j in range(len(b[0].inputs))] for b in batches]
    if device.type == "cuda":
        stacked = [[t.pin_memory() for t in b] for b in stacked]
    n = sum(len(b) for b in batches)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def compute_only() -> float:
        sync()
        t0 = time.perf_counter()
        for b in stacked:
            embedder(stream.member_inputs(b))
        sync()
        return time.perf_counter() - t0

    def pipeline() -> float:
        tmp = tempfile.mkdtemp()
        try:
            sync()
            t0 = time.perf_counter()
            embed_to_folder(model, recs, tmp, options=EmbedOptions(
                batch_size=args.batch_size, num_workers=args.workers, device=str(device), progress=False,
                shard_size=args.shard_size))
            sync()
            return time.perf_counter() - t0
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    compute_only()  # warm-up (cudnn autotune, allocator)
    best = {"compute_only": float("inf"), "pipeline": float("inf")}
    cpu = {"compute_only": float("inf"), "pipeline": float("inf")}
    runs: dict[str, list[float]] = {"compute_only": [], "pipeline": []}
    for rep in range(args.repeat):
        for name, fn in (("pipeline", pipeline), ("compute_only", compute_only)):
            c0 = time.process_time()
            dt = fn()
            cpu[name] = min(cpu[name], time.process_time() - c0)
            best[name] = min(best[name], dt)
            runs[name].append(round(n / dt, 2))
            print(f"rep {rep} {name}: {dt:.2f}s ({n / dt:.1f} img/s), load {_load()}", file=sys.stderr)
    out = {
        "benchmark": "embed_pipeline",
        "device": str(device),
        "machine": platform.node(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "recipe": args.recipe,
        "overrides": args.override,
        "images": n,
        "batch_size": args.batch_size,
        "img_per_s": {k: round(n / v, 2) for k, v in best.items()},
        "pipeline_vs_compute": round(best["compute_only"] / best["pipeline"], 3),
        "runs_img_per_s": runs,
        "cpu_s_per_img": {k: round(v / n, 4) for k, v in cpu.items()},
        "decode_threads": args.decode_threads or "default",
        "workers": args.workers if args.workers is not None else "default",
        "load_before": load_before,
        "load_after": _load(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if args.memory:
        peaks = {}
        for factor in (1, 10):
            cmd = [sys.executable, __file__, "--memory-child", str(factor), "--images", args.images,
                   "--recipe", args.recipe, "--batch-size", str(args.batch_size), "--device", args.device,
                   "--shard-size", str(args.shard_size)]
            cmd += sum((["-o", o] for o in args.override), [])
            cmd += (["--limit", str(args.limit)] if args.limit else []) + (["--workers", str(args.workers)] if args.workers is not None else [])
            cmd += ["--threads", str(args.threads)] if args.threads else []
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            peaks[f"{factor}x"] = json.loads(res.stdout.strip().splitlines()[-1])["maxrss_kb"] // 1024
        out["peak_rss_mb"] = peaks
        out["peak_rss_10x_vs_1x"] = round(peaks["10x"] / peaks["1x"], 3)
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
