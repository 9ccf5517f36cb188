"""The GPU checks of the training step (issue 13.6), in one go on a lent GPU machine.

1. **No host synchronisation inside the step**: zoo's real ``Trainer`` on CUDA (tf_efficientnet_b0 at
   64 px, batch 16, 7 steps an epoch, 2 epochs, ``log_every`` 3; bf16 and fp16) under
   ``torch.cuda.set_sync_debug_mode("warn")``. Every synchronising CUDA call is attributed to the
   ``zoo.train`` function that made it and the global step. Expected: the metrics logger's one read
   per record (steps 3, 6, 7, 9, 12, 14) and the end-of-epoch bookkeeping (steps 7, 14); anything in
   ``TrainStep``, the prefetcher, the per-batch callbacks or the epoch start is a failure.
2. **zoo vs a plain loop**: ``benchmarks/train_step.py --device cuda`` (bf16, channels_last, batch 64,
   224 px, 6 loader workers, 3 repeats), the plain loop with torch's default Adam and with fused Adam
   (zoo's ``adam`` default), alternating in one process.

    python benchmarks/gpu_train_step.py                 # about 3-5 minutes on an H100
    python benchmarks/gpu_train_step.py --skip-bench    # the synchronisation check only (~1 min)

Prints one JSON line per check; exits 1 when a synchronisation is found inside the step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ZOO_TRAIN = str(HERE.parent / "zoo" / "train")
#: where a synchronisation is a failure (the per-step path)
STEP_PATH = ("TrainStep.", "EpochLoop._start", "MetricsLogger.on_batch_end", "ProgressBar.", "DevicePrefetcher.",
             "mixed_loss")
BENCH = ["--device", "cuda", "--amp", "bf16", "--channels-last", "--batch-size", "64", "--image-size", "224",
         "--warmup", "10", "--steps", "50", "--workers", "6", "--repeats", "3"]


def make_cfg(amp: str, n_classes: int):
    """``train_step.py``'s model and loss (the benchmark's recipe) as a 2-epoch tiny run with a warm-up
    cosine schedule and gradient clipping, so the sync check covers the scheduler and the unscale path."""
    import argparse

    from omegaconf import OmegaConf

    sys.path.insert(0, str(HERE))
    from train_step import make_cfg as bench_cfg

    cfg = bench_cfg(argparse.Namespace(backbone="tf_efficientnet_b0", image_size=64, batch_size=16, workers=2,
                                       amp=amp, channels_last=True, warmup=3), n_classes)
    return OmegaConf.merge(cfg, {
        "name": "gpu-sync-check",
        "train": {"epochs": 2, "clip_grad": 1.0,
                  "scheduler": {"type": "warmup_cosine", "warmup_epochs": 0.5}},
    })


def check_syncs(amp: str) -> dict:
    """Run the tiny trainer under the CUDA sync debug mode; the synchronising calls by (function, step)."""
    from zoo.plugins import get_registry
    from zoo.train.data import TensorSource
    from zoo.train.engine import Trainer

    n_classes = 8
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (16 * 7, 64, 64, 3), dtype=np.uint8)
    labels = [int(i % n_classes) for i in range(len(images))]
    out = Path(tempfile.mkdtemp(prefix="zoo-gpu-sync-"))
    trainer = Trainer(make_cfg(amp, n_classes), TensorSource({"train": (images, labels)}), out,
                      registry=get_registry(), device="cuda", progress=False)
    calls: Counter = Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchronizing" not in str(message):
            return
        where, frame = "(outside zoo.train)", sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename.startswith(ZOO_TRAIN):
                where = f"{Path(frame.f_code.co_filename).stem}:{frame.f_code.co_qualname}:{frame.f_lineno}"
                break
            frame = frame.f_back
        calls[(where, trainer.state.global_step)] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.fit()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    in_step = {f"{w}@{s}": n for (w, s), n in calls.items() if any(p in w for p in STEP_PATH)}
    return {"check": "no_sync_in_step", "amp": amp, "device": torch.cuda.get_device_name(),
            "steps": trainer.state.global_step, "ok": not in_step, "in_step": in_step,
            "all": {f"{w}@{s}": n for (w, s), n in sorted(calls.items(), key=lambda kv: kv[0][1])}}


def run_bench(extra: list[str], timeout: int) -> dict:
    cmd = [sys.executable, str(HERE / "train_step.py"), *BENCH, *extra]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"check": "train_step", "command": " ".join(cmd[1:]), "error": f"timed out after {timeout}s"}
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode or not lines:
        return {"check": "train_step", "command": " ".join(cmd[1:]), "error": done.stderr[-2000:]}
    return {"check": "train_step", "command": " ".join(cmd[1:]), **json.loads(lines[-1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-bench", action="store_true", help="only the synchronisation check")
    ap.add_argument("--bench-timeout", type=int, default=300, help="seconds for the train_step.py run (default 300)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device: run this on the lent GPU machine"}))
        return 2
    ok = True
    for amp in ("bf16", "fp16"):
        result = check_syncs(amp)
        ok &= result["ok"]
        print(json.dumps(result), flush=True)
    if not args.skip_bench:
        print(json.dumps(run_bench(["--plain-fused"], args.bench_timeout)), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
