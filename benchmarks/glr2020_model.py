"""GLR2020 3rd-place model and loss: zoo's assembled recipe vs the same network written plainly.

Side by side in one run, on the same device, same weights, same inputs:

* model forward (inference, optional AMP): ``zoo.create_model(RECIPE)`` (timm backbone -> avg
  pool -> Linear+Swish -> sub-center head) vs a hand-written ``nn.Module`` with the upstream
  attribute names (``enet`` = the timm model with its classifier removed, ``feat``, Swish,
  ``metric_classify``) and the released forward. Reports ms/batch, the ratio zoo/plain and the
  max abs difference of embeddings and cosines (fp32 parity check).
* training step (forward + ArcFace loss + backward): zoo's ``arcface_dynamic`` loss vs the
  released ``ArcFaceLossAdaptiveMargin`` formula (margins gathered per sample, unclamped sqrt)
  written plainly with device-side margins.
* loss alone on ``B x 81313`` cosines (the real class count), zoo vs plain.

    python benchmarks/glr2020_model.py                       # CPU-sized defaults
    python benchmarks/glr2020_model.py --device cuda --amp --image-size 768 --batch 8
    python benchmarks/glr2020_model.py --recipe glr2020-3rd-effnet-b7 --device cuda --image-size 672

Weights are random (nothing is downloaded). The last printed line is a one-line JSON result.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_plain(zmodel, backbone_name: str, num_classes: int, subcenters: int):
    import timm
    import torch
    import torch.nn.functional as F
    from torch import nn

    class PlainGLR2020(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enet = timm.create_model(backbone_name, pretrained=False)
            self.enet.reset_classifier(0)
            emb = zmodel.neck[0].out_features
            self.feat = nn.Linear(self.enet.num_features, emb)
            self.metric_classify = nn.Parameter(torch.empty(num_classes * subcenters, emb))

        def forward(self, x):
            f = self.feat(self.enet(x))
            f = f * torch.sigmoid(f)
            cos = F.linear(F.normalize(f), F.normalize(self.metric_classify))
            return f, cos.view(-1, num_classes, subcenters).max(dim=2)[0]

    plain = PlainGLR2020()
    state = {f"enet.{k[len('backbone.net.'):]}": v for k, v in zmodel.state_dict().items() if k.startswith("backbone.net.")}
    state.update({"feat.weight": zmodel.neck[0].weight, "feat.bias": zmodel.neck[0].bias,
                  "metric_classify": zmodel.head.weight})
    plain.load_state_dict(state, strict=True)
    return plain


def plain_arcface(cos, labels, margins, s: float):
    """ArcFaceLossAdaptiveMargin as released (SEED_SYSTEMS 0.3), margins already on the device."""
    import torch
    import torch.nn.functional as F

    ms = margins[labels]
    cos_m, sin_m = torch.cos(ms)[:, None], torch.sin(ms)[:, None]
    th = torch.cos(math.pi - ms)[:, None]
    mm = (torch.sin(math.pi - ms) * ms)[:, None]
    onehot = F.one_hot(labels, cos.shape[1]).float()
    cos = cos.float()
    sine = torch.sqrt(1.0 - cos * cos)
    phi = cos * cos_m - sine * sin_m
    phi = torch.where(cos > th, phi, cos - mm)
    out = (onehot * phi + (1.0 - onehot) * cos) * s
    return -(onehot * F.log_softmax(out, dim=-1)).sum(-1).mean()


def time_pair(fn_a, fn_b, device, iters: int, warmup: int) -> tuple[float, float]:
    """Median ms per call of ``fn_a`` and ``fn_b``, run alternately (a, b, a, b, ...) so that
    load on a shared machine hits both alike."""
    import statistics

    import torch

    def once(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) * 1000.0

    for _ in range(warmup):
        fn_a()
        fn_b()
    a, b = [], []
    for _ in range(iters):
        a.append(once(fn_a))
        b.append(once(fn_b))
    return statistics.median(a), statistics.median(b)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--recipe", default="glr2020-3rd-effnet-b3", help="a glr2020-3rd member recipe")
    ap.add_argument("--backbone", default=None, help="override model.backbone.name (default: the recipe's)")
    ap.add_argument("--num-classes", type=int, default=81313, help="head classes (default: the released 81313)")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=5, help="timed calls of each side (alternating; medians reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--amp", action="store_true", help="autocast (fp16 on cuda, bf16 on cpu) for the forward")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = ap.parse_args(argv)

    import torch

    import zoo

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    overrides = [f"model.head.num_classes={args.num_classes}"]
    if args.backbone:
        overrides.append(f"model.backbone.name={args.backbone}")
    torch.manual_seed(0)
    zmodel = zoo.create_model(args.recipe, overrides=overrides)
    cfg = zoo.get_recipe(args.recipe, overrides)
    plain = build_plain(zmodel, str(cfg.model.backbone.name), args.num_classes, int(cfg.model.head.subcenters))
    zmodel.to(device).eval()
    plain.to(device).eval()
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(0, args.num_classes, (args.batch,), device=device)
    counts = torch.randint(1, 500, (args.num_classes,))
    loss_cfg = {k: v for k, v in cfg.loss.items() if k != "type"}
    zloss = zoo.plugins.get_registry().create("loss", str(cfg.loss.type), **loss_cfg).to(device)
    margins = zloss.set_class_counts(counts).to(device)
    s = float(cfg.loss.s)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16

    with torch.no_grad():
        z = zmodel(x)
        p_emb, p_cos = plain(x)
        diff_emb = (z["embedding"] - p_emb).abs().max().item()
        diff_cos = (z["logits"] - p_cos).abs().max().item()

    def fwd(m):
        def run():
            with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
                m(x)
        return run

    fwd_zoo, fwd_plain = time_pair(fwd(zmodel), fwd(plain), device, args.iters, args.warmup)

    zmodel.train()
    plain.train()

    def step_zoo():
        with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
            logits = zmodel(x)["logits"]
        zloss(logits, labels).backward()

    def step_plain():
        with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
            _, logits = plain(x)
        plain_arcface(logits, labels, margins, s).backward()

    train_zoo, train_plain = time_pair(step_zoo, step_plain, device, args.iters, 1)

    cos = (torch.rand(max(args.batch, 32), args.num_classes, device=device) * 1.8 - 0.9).requires_grad_(True)
    lab = torch.randint(0, args.num_classes, (cos.shape[0],), device=device)
    loss_diff = abs(zloss(cos, lab).item() - plain_arcface(cos, lab, margins, s).item())

    def loss_fn(fn):
        def run():
            fn().backward()
        return run

    loss_zoo, loss_plain = time_pair(loss_fn(lambda: zloss(cos, lab)), loss_fn(lambda: plain_arcface(cos, lab, margins, s)),
                                     device, args.iters * 4, args.warmup)

    result = {
        "benchmark": "glr2020_model",
        "recipe": args.recipe,
        "backbone": str(cfg.model.backbone.name),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "host": platform.node(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "image_size": args.image_size,
        "batch": args.batch,
        "num_classes": args.num_classes,
        "amp": bool(args.amp),
        "forward_ms_zoo": round(fwd_zoo, 2),
        "forward_ms_plain": round(fwd_plain, 2),
        "forward_ratio": round(fwd_zoo / fwd_plain, 3),
        "train_step_ms_zoo": round(train_zoo, 2),
        "train_step_ms_plain": round(train_plain, 2),
        "train_step_ratio": round(train_zoo / train_plain, 3),
        "loss_ms_zoo": round(loss_zoo, 3),
        "loss_ms_plain": round(loss_plain, 3),
        "loss_ratio": round(loss_zoo / loss_plain, 3),
        "max_abs_diff_embedding": diff_emb,
        "max_abs_diff_cosine": diff_cos,
        "loss_abs_diff": loss_diff,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
