"""Real-data check of the training engine: fine-tune the embedded default on one part of instance-eval
and measure retrieval mAP on a disjoint part before and after.

Train subsets (default): ukbench56, opensfm, sacre_coeur, phototourism (``zoo train default-finetune``
through the CLI entry point, CPU by default); held-out evaluation: wxbs, evd, scannet (no instance in
common). Protocol as instance-eval's README, restricted to the held-out images: every held-out image
queries the other held-out images, positives share the instance; mAP and R@1; preprocessing = the
recipe's inference transform (long side 384, bicubic, mean = std = 0.5).

    python benchmarks/finetune_default.py --device cpu
    python benchmarks/finetune_default.py --device cuda --epochs 10
Prints one JSON line with mAP/R@1 before and after, the train time and the command used.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_retrieval import average_precision_and_r1 as map_and_r1  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "instance-eval"
TRAIN_SUBSETS = ("ukbench56", "opensfm", "sacre_coeur", "phototourism")
EVAL_SUBSETS = ("wxbs", "evd", "scannet")


def split_rows(root: Path) -> tuple[list[dict], list[dict]]:
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if r["subset"] in TRAIN_SUBSETS], [r for r in rows if r["subset"] in EVAL_SUBSETS]


@torch.no_grad()
def embed(model: torch.nn.Module, paths: list[Path], device: torch.device) -> np.ndarray:
    from zoo.data.images import read_image

    model = model.eval().to(device)
    pre = model.data_config
    out = []
    for p in paths:
        x = pre.normalize(pre.resize_uint8(read_image(p))[None].to(device))
        out.append(model.embed(x).float().cpu())
    return torch.cat(out).numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="instance-eval folder")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs (recipe: 6)")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: a temp folder)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--reuse", action="store_true", help="evaluate a finished run in --out instead of training again")
    ap.add_argument("overrides", nargs="*", help="extra recipe overrides (train.lr=...)")
    args = ap.parse_args(argv)
    if not (args.data / "labels.csv").is_file():
        print(f"no labels.csv under {args.data}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    import zoo
    from zoo.cli import main as zoo_main

    train_rows, eval_rows = split_rows(args.data)
    eval_paths = [args.data / r["path"] for r in eval_rows]
    eval_labels = [r["instance"] for r in eval_rows]
    # the default recipe with the fine-tune recipe's backbone: the same verified ImageNet weights it starts from
    backbone = str(zoo.get_recipe("default-finetune").model.backbone.name)
    base = zoo.create_model("default", pretrained=True, overrides=[f"model.backbone.name={backbone}"])
    before = map_and_r1(embed(base, eval_paths, device), eval_labels)

    tmp = Path(tempfile.mkdtemp(prefix="zoo-finetune-"))
    out = args.out or tmp / "run"
    train_csv = tmp / "train.csv"
    with open(train_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "instance"])
        w.writerows([[r["path"], r["instance"]] for r in train_rows])
    overrides = list(args.overrides) + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    cmd = ["train", "default-finetune", *overrides, "--data", str(train_csv), "--images", str(args.data),
           "--out", str(out), "--device", args.device, "--no-progress"]
    t0 = time.perf_counter()
    if args.reuse and (out / "model.safetensors").is_file() and (out / "labels.json").is_file():
        rc = 0  # a finished run of the same command: only evaluate it
    else:
        rc = zoo_main(cmd)
    train_s = time.perf_counter() - t0
    if rc != 0:
        print(f"zoo {' '.join(cmd)} failed with {rc}", file=sys.stderr)
        return rc
    n_classes = len(json.loads((out / "labels.json").read_text())["labels"])
    tuned = zoo.create_model("default-finetune", checkpoint=out / "model.safetensors",
                             overrides=[f"model.head.num_classes={n_classes}", *[o for o in overrides if o.startswith("model.")]])
    after = map_and_r1(embed(tuned, eval_paths, device), eval_labels)
    result = {
        "benchmark": "finetune_default", "device": str(device), "train_subsets": list(TRAIN_SUBSETS),
        "eval_subsets": list(EVAL_SUBSETS), "train_images": len(train_rows), "train_classes": n_classes,
        "backbone": backbone, "eval_images": len(eval_rows), "map_before": round(before[0], 4), "r1_before": round(before[1], 4),
        "map_after": round(after[0], 4), "r1_after": round(after[1], 4), "train_seconds": None if args.reuse else round(train_s, 1),
        "command": "zoo " + " ".join(cmd),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
