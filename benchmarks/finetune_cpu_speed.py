"""Where a CPU fine-tuning step of ``default-finetune`` spends its time: image size, frozen early
blocks, channels_last, bf16 autocast, torch threads, and the per-sample data path (decode + augment).

Model steps use zoo's own :class:`zoo.train.step.TrainStep` on the recipe's model (ArcFace head over
66 classes, the grocery-heldout class count) with synthetic uint8 batches, so only the model's
forward + backward + optimizer step are timed. The data path (``--data``) times decoding and the
recipe's augmentation of real grocery-store photos per sample, the work each loader worker does.
Every configuration is timed alternately ``--repeats`` times and the best is kept (the machine is
shared; ``uptime`` load is printed with each figure).

    python benchmarks/finetune_cpu_speed.py --sizes 160,192,224,256 --batch-size 32
    python benchmarks/finetune_cpu_speed.py --sizes 192 --freeze 0,2,3 --channels-last --bf16
    python benchmarks/finetune_cpu_speed.py --data --sizes 192
Prints one JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
GROCERY = Path(os.environ.get("ZOO_GROCERY", REPO.parent / "shared" / "data" / "grocery-store"))


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def freeze_patterns(n_blocks: int) -> list[str]:
    """Parameter-name patterns freezing the stem and the first ``n_blocks`` stages of an EfficientNet."""
    if n_blocks <= 0:
        return []
    return ["backbone.net.conv_stem.*", "backbone.net.bn1.*", *[f"backbone.net.blocks.{i}.*" for i in range(n_blocks)]]


def build_step(recipe: str, overrides: list[str], size: int, freeze: int, channels_last: bool, amp: str,
               batch: int, num_classes: int):
    import zoo
    from zoo.plugins import get_registry
    from zoo.train.step import TrainStep
    from zoo.train.transitions import apply_trainable

    reg = get_registry()
    model = zoo.create_model(recipe, pretrained=False, overrides=[*overrides, f"model.head.num_classes={num_classes}"])
    apply_trainable(model, freeze=freeze_patterns(freeze), trainable=[], freeze_first_n_params=0)
    for m in model.modules():  # the recipe's freeze_bn_stats
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    cfg = zoo.get_recipe(recipe, overrides)
    loss = reg.create("loss", str(cfg.loss.type), **{k: v for k, v in cfg.loss.items() if k != "type"})
    groups = reg.create("param_groups", "stratified", model, lr=1e-3, backbone_lr_scale=0.1, weight_decay=1e-5)
    opt = reg.create("optimizer", "adamw", groups, lr=1e-3, weight_decay=1e-5)
    step = TrainStep(model, loss, opt, device=torch.device("cpu"), amp=amp, channels_last=channels_last,
                     mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, num_classes, (batch,), generator=g)
    return step, x, y


def time_steps(step, x, y, warmup: int, steps: int) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this process). CPU seconds hardly depend on
    other processes' load (time slices are not counted), so they rank configurations on a shared box."""
    for _ in range(warmup):
        step(x, y)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step(x, y)
    n = x.shape[0] * steps
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def time_data(size: int, augment: str | None, n: int) -> dict[str, float]:
    """Per-sample CPU milliseconds of decode + transform for ``n`` grocery photos (one thread, no workers)."""
    import csv

    from zoo.data.images import read_image
    from zoo.plugins import get_registry

    with open(GROCERY / "labels.csv", newline="") as f:
        paths = [GROCERY / r["path"] for r in csv.DictReader(f)][:n]
    tf = get_registry().create("augmentation", augment or "resize_val", size, mean=(0.5,) * 3, std=(0.5,) * 3)
    t0 = time.process_time()
    imgs = [read_image(p, max_side=2 * size) for p in paths]
    t1 = time.process_time()
    for im in imgs:
        tf(image=im)
    t2 = time.process_time()
    return {"decode_ms": 1000 * (t1 - t0) / n, "transform_ms": 1000 * (t2 - t1) / n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="default-finetune")
    ap.add_argument("--sizes", default="192", help="comma-separated square training sizes")
    ap.add_argument("--freeze", default="0", help="comma-separated numbers of frozen EfficientNet stages")
    ap.add_argument("--channels-last", action="store_true", help="also time channels_last")
    ap.add_argument("--bf16", action="store_true", help="also time bf16 autocast")
    ap.add_argument("--threads", default="2", help="comma-separated torch intra-op thread counts")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", action="store_true", help="time decode + augmentation per sample instead")
    ap.add_argument("--augment", default="guie_train,resize_val", help="pipelines timed with --data")
    ap.add_argument("-o", "--override", action="append", default=[], help="recipe override")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.data:
        torch.set_num_threads(1)
        for size in sizes:
            for aug in args.augment.split(","):
                r = time_data(size, aug, 64)
                print(json.dumps({"size": size, "augment": aug, **{k: round(v, 2) for k, v in r.items()},
                                  "load": load_avg()}), flush=True)
        return 0
    configs = []
    for size in sizes:
        for fr in [int(v) for v in args.freeze.split(",")]:
            for th in [int(v) for v in args.threads.split(",")]:
                configs.append((size, fr, False, "off", th))
                if args.channels_last:
                    configs.append((size, fr, True, "off", th))
                if args.bf16:
                    configs.append((size, fr, False, "bf16", th))
    best: dict[tuple, float] = {}
    best_cpu: dict[tuple, float] = {}
    loads: dict[tuple, list[float]] = {}
    for _ in range(args.repeats):
        for c in configs:
            size, fr, cl, amp, th = c
            torch.set_num_threads(th)
            torch.manual_seed(0)
            step, x, y = build_step(args.recipe, args.override, size, fr, cl, amp, args.batch_size, 66)
            ips, ipc = time_steps(step, x, y, args.warmup, args.steps)
            best[c] = max(best.get(c, 0.0), ips)
            best_cpu[c] = max(best_cpu.get(c, 0.0), ipc)
            loads.setdefault(c, []).append(load_avg())
            print(json.dumps({"size": size, "freeze_stages": fr, "channels_last": cl, "amp": amp, "threads": th,
                              "batch": args.batch_size, "img_per_s": round(ips, 2), "img_per_cpu_s": round(ipc, 2), "load": load_avg()}), flush=True)
    print("best of repeats:")
    for c, v in best.items():
        print(json.dumps({"size": c[0], "freeze_stages": c[1], "channels_last": c[2], "amp": c[3], "threads": c[4],
                          "best_img_per_s": round(v, 2), "best_img_per_cpu_s": round(best_cpu[c], 2),
                          "loads": loads[c]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
