"""A real AMP + DDP training step at GLDv2 scale: img/s and memory with the sub-center heads.

Builds the GLR2021-style model (timm backbone -> GeM -> option-D 512 -> sub-center ArcFace k=3) with a
head over 81,313 (GLDv2x) and 203,094 (full GLDv2) classes, the dynamic-margin ArcFace loss, Adam,
and runs zoo's own :class:`zoo.train.step.TrainStep` under torch DDP (NCCL on CUDA, gloo on CPU)
with autocast (bf16, or fp16 + GradScaler). Synthetic in-memory batches; no special casing of the
big heads. Launch with torchrun (a plain ``python`` run is a world of one)::

    torchrun --nproc_per_node=1 benchmarks/ddp_amp_step.py --device cuda --amp bf16
    torchrun --nproc_per_node=8 benchmarks/ddp_amp_step.py --device cuda --amp fp16 --batch-size 32
    python benchmarks/ddp_amp_step.py --device cpu --classes 81313 --backbone mobilenetv2_035 --image-size 64

Rank 0 prints one JSON line per head size: global img/s, peak GPU memory per rank (CUDA) or the
process's max RSS (CPU), and the head's parameter + Adam-state bytes.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np
import torch


def one_config(args: argparse.Namespace, ctx, n_classes: int) -> dict:
    from omegaconf import OmegaConf
    from torch.nn.parallel import DistributedDataParallel as DDP

    from zoo.assembly import build_model
    from zoo.plugins import get_registry
    from zoo.train.step import TrainStep

    reg = get_registry()
    cfg = OmegaConf.create({
        "name": "bench-ddp",
        "model": {
            "backbone": {"type": "timm", "name": args.backbone, "pretrained": False},
            "pooling": {"type": "gem", "p": 3.0, "p_trainable": True},
            "neck": {"type": "option_d"},
            "embedding_dim": 512,
            "head": {"type": "subcenter_arcface", "num_classes": n_classes, "subcenters": 3},
        },
    })
    device = ctx.device
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    model = build_model(cfg, reg).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    head_params = sum(p.numel() for p in model.head.parameters())
    wrapped = model
    if ctx.distributed:
        wrapped = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = reg.create("loss", "arcface_dynamic", s=45.0).to(device)
    rng = np.random.default_rng(0)
    loss_fn.set_class_counts(rng.integers(1, 200, n_classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    step = TrainStep(wrapped, loss_fn, opt, device=device, amp=args.amp, channels_last=args.channels_last)
    g = torch.Generator().manual_seed(ctx.rank)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g)
    y = torch.randint(0, n_classes, (args.batch_size,), generator=g)
    if device.type == "cuda":
        x, y = x.pin_memory(), y.pin_memory()
    t0 = 0.0
    loss = torch.zeros(())
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            ctx.barrier()
            t0 = time.perf_counter()
        loss = step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ctx.barrier()
    elapsed = time.perf_counter() - t0
    out = {
        "benchmark": "ddp_amp_step", "classes": n_classes, "subcenters": 3, "head_params": head_params,
        "head_param_and_adam_bytes": head_params * 4 * 4,  # fp32 weight + grad + exp_avg + exp_avg_sq
        "backbone": args.backbone, "image_size": args.image_size, "batch_per_rank": args.batch_size,
        "world_size": ctx.world_size, "backend": ctx.backend or "none", "amp": args.amp,
        "img_s": round(args.steps * args.batch_size * ctx.world_size / elapsed, 2),
        "step_ms": round(1000 * elapsed / args.steps, 2), "final_loss": round(float(loss), 4),
        "finite": bool(torch.isfinite(loss)),
    }
    if device.type == "cuda":
        out["device"] = torch.cuda.get_device_name()
        out["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    else:
        out["device"] = "cpu"
        out["max_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    del step, opt, wrapped, model
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    ap.add_argument("--backbone", default="tf_efficientnet_b3", help="timm backbone (default tf_efficientnet_b3)")
    ap.add_argument("--image-size", type=int, default=256, help="default 256 (GLR2020 step 0)")
    ap.add_argument("--batch-size", type=int, default=32, help="per process")
    ap.add_argument("--classes", type=int, nargs="+", default=[81313, 203094])
    ap.add_argument("--amp", default="bf16", choices=["off", "bf16", "fp16"])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    from zoo.distributed import init_distributed, shutdown_distributed

    ctx = init_distributed(args.device, force=True)  # a world of one under torchrun still runs NCCL DDP
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        for n in args.classes:
            res = one_config(args, ctx, n)
            if ctx.is_main:
                print(json.dumps(res), flush=True)
    finally:
        shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
