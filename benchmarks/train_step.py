"""zoo's training loop vs a plain PyTorch loop: same model, batch, precision, data in memory.

zoo side: ``zoo.train.engine.Trainer`` (the real loop: sampler, per-sample dataset + collate, AMP
step, schedule, EMA off, logging) on an in-memory :class:`zoo.train.data.TensorSource` whose images
are already at the training size. Plain side: the same recipe model (same init), the same registered
loss, ``torch.optim.Adam`` (torch's default implementation; ``--plain-fused`` also times it with its
fused kernel, which zoo's ``adam`` uses by default), batches sliced from one pre-built tensor, autocast
(+ GradScaler for fp16).
Both time the steps after a warm-up. Goal: zoo >= 0.95x the plain loop's img/s.

    python benchmarks/train_step.py --device cpu                 # dev box: small images
    python benchmarks/train_step.py --device cuda --amp bf16 --channels-last --batch-size 64 --image-size 224
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_cfg(args: argparse.Namespace, n_classes: int):
    from omegaconf import OmegaConf

    return OmegaConf.create({
        "name": "bench-train-step",
        "data": {"image_size": args.image_size},
        "model": {
            "backbone": {"type": "timm", "name": args.backbone, "pretrained": False},
            "pooling": {"type": "gem", "p": 3.0, "p_trainable": True},
            "neck": {"type": "option_d"},
            "embedding_dim": 512,
            "head": {"type": "subcenter_arcface", "num_classes": n_classes, "subcenters": 3},
        },
        "loss": {"type": "arcface_dynamic", "s": 45.0},
        "train": {
            "seed": 0, "epochs": 1000, "batch_size": args.batch_size, "lr": 1e-4, "workers": args.workers,
            "amp": args.amp, "channels_last": args.channels_last, "log_every": args.warmup,
            "optimizer": {"type": "adam"}, "scheduler": {"type": "constant"},
        },
    })


def synthetic(args: argparse.Namespace, n_classes: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(0)
    n = args.batch_size * (args.warmup + args.steps + 2)
    images = rng.integers(0, 255, (n, args.image_size, args.image_size, 3), dtype=np.uint8)
    return images, [int(i % n_classes) for i in range(n)]


def run_zoo(args: argparse.Namespace, device: torch.device, n_classes: int) -> float:
    from zoo.plugins import get_registry
    from zoo.train.data import TensorSource
    from zoo.train.engine import Trainer

    images, labels = synthetic(args, n_classes)
    out = Path(tempfile.mkdtemp(prefix="zoo-bench-step-"))
    Trainer(make_cfg(args, n_classes), TensorSource({"train": (images, labels)}), out, registry=get_registry(),
            device=str(device), progress=False, max_steps=args.warmup + args.steps).fit()
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    first = next(r for r in recs if r["global_step"] == args.warmup)
    last = next(r for r in recs if r["global_step"] == args.warmup + args.steps)
    return args.steps * args.batch_size / (last["time"] - first["time"])


def run_plain(args: argparse.Namespace, device: torch.device, n_classes: int, fused: bool = False) -> float:
    from zoo.assembly import build_model
    from zoo.plugins import get_registry

    reg = get_registry()
    torch.manual_seed(0)
    model = build_model(make_cfg(args, n_classes), reg).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = reg.create("loss", "arcface_dynamic", s=45.0).to(device)
    loss_fn.set_class_counts(np.full(n_classes, 2))
    # torch's default Adam (what a plain loop writes), or its fused kernel (what zoo's adam uses by default)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True if fused else None)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    images, labels = synthetic(args, n_classes)
    # .contiguous(): a permuted HWC array stays channels_last in memory through .float() and the
    # arithmetic (preserve_format), which silently gave the plain side channels_last activations
    # (oneDNN's faster CPU layout) while zoo ran NCHW unless --channels-last
    x_all = ((torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std).contiguous()
    y_all = torch.tensor(labels)
    if device.type == "cuda":
        x_all = x_all.pin_memory()
    model.train()
    t0 = 0.0
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        sl = slice(i * args.batch_size, (i + 1) * args.batch_size)
        x = x_all[sl].to(device, non_blocking=True)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y_all[sl].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)["logits"]
        loss = loss_fn(logits.float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    ap.add_argument("--backbone", default="tf_efficientnet_b0", help="timm backbone (default tf_efficientnet_b0)")
    ap.add_argument("--image-size", type=int, default=64, help="training image size (default 64)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--classes", type=int, default=1000, help="head classes (default 1000)")
    ap.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--workers", type=int, default=0, help="zoo data-loader workers (default 0)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps (default 5)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    ap.add_argument("--repeats", type=int, default=2, help="alternate zoo/plain this many times, keep the best")
    ap.add_argument("--plain-fused", action="store_true",
                    help="also time the plain loop with Adam(fused=True), zoo's adam default "
                         "(isolates the loop's own overhead)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.steps % args.warmup:
        ap.error("--steps must be a multiple of --warmup (zoo logs every --warmup steps)")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    zoo_ips, plain_ips, fused_ips = [], [], []
    for _ in range(args.repeats):
        plain_ips.append(run_plain(args, device, args.classes))
        if args.plain_fused:
            fused_ips.append(run_plain(args, device, args.classes, fused=True))
        zoo_ips.append(run_zoo(args, device, args.classes))
    result = {
        "benchmark": "train_step", "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "backbone": args.backbone, "image_size": args.image_size, "batch_size": args.batch_size,
        "classes": args.classes, "amp": args.amp, "channels_last": args.channels_last,
        "workers": args.workers, "threads": args.threads,
        "zoo_img_s": round(max(zoo_ips), 2), "plain_img_s": round(max(plain_ips), 2),
        "ratio": round(max(zoo_ips) / max(plain_ips), 3),
        "all_zoo": [round(v, 2) for v in zoo_ips], "all_plain": [round(v, 2) for v in plain_ips],
    }
    if fused_ips:
        result.update({"plain_fused_img_s": round(max(fused_ips), 2),
                       "ratio_vs_plain_fused": round(max(zoo_ips) / max(fused_ips), 3),
                       "all_plain_fused": [round(v, 2) for v in fused_ips]})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
