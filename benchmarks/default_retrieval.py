"""Retrieval mAP / R@1 of the embedded ``default`` recipe vs a plain timm script, side by side.

Both sides use the same verified weights file (``tf_efficientnet_lite0.in1k`` from the manifest,
or the entry matching ``--backbone``), GeM p=3 and the long side resized to 384 px (bicubic,
mean = std = 0.5). The zoo side goes through ``zoo.create_model(RECIPE, pretrained=True)`` and
zoo's inference preprocessing; the baseline is plain timm + PIL + a hand-written GeM.
Protocol (instance-eval README): every image queries all others, positives = same instance;
mean average precision over all queries and recall@1.

    python benchmarks/default_retrieval.py --device cpu
    python benchmarks/default_retrieval.py --backbone tf_efficientnet_lite2
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "instance-eval"


def average_precision_and_r1(emb: np.ndarray, labels: list[str]) -> tuple[float, float]:
    """mAP and R@1 with every image as a query against all the others (exact inner product)."""
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    lab = np.asarray(labels)
    aps, hits = [], []
    for q in range(len(lab)):
        order = np.argsort(-sims[q], kind="stable")[:-1]  # the query itself sorts last
        rel = (lab[order] == lab[q]).astype(np.float64)
        if rel.sum() == 0:
            continue
        prec = np.cumsum(rel) / np.arange(1, len(rel) + 1)
        aps.append(float((prec * rel).sum() / rel.sum()))
        hits.append(float(rel[0]))
    return float(np.mean(aps)), float(np.mean(hits))


def read_labels(root: Path) -> tuple[list[Path], list[str]]:
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [root / r["path"] for r in rows], [r["instance"] for r in rows]


@torch.no_grad()
def embed_zoo(
    recipe: str, overrides: list[str], paths: list[Path], device: torch.device
) -> tuple[np.ndarray, str, float]:
    import zoo
    from zoo.data.images import read_image

    model = zoo.create_model(recipe, pretrained=True, overrides=overrides).eval().to(device)
    pre = model.data_config
    out = []
    t0 = time.perf_counter()  # the embedding loop only (model building and plugin loading excluded)
    for p in paths:
        x = pre.normalize(pre.resize_uint8(read_image(p))[None].to(device))
        out.append(model.embed(x).cpu())
    seconds = time.perf_counter() - t0
    return torch.cat(out).numpy(), str(getattr(model, "weights_entry", "?")), seconds


@torch.no_grad()
def embed_plain_timm(
    arch: str, weights: Path, paths: list[Path], size: int, device: torch.device
) -> tuple[np.ndarray, float]:
    """The reference script: plain timm, PIL long-side resize, GeM p=3, L2 normalisation."""
    import timm
    from PIL import Image
    from safetensors.torch import load_file

    net = timm.create_model(arch, pretrained=False)
    net.load_state_dict(load_file(str(weights)))
    net.eval().to(device)
    out = []
    t0 = time.perf_counter()
    for p in paths:
        img = Image.open(p).convert("RGB")
        w, h = img.size
        s = size / max(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        x = ((x - 0.5) / 0.5).to(device)
        fmap = net.forward_features(x)
        g = fmap.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1.0 / 3)
        out.append(torch.nn.functional.normalize(g, dim=1).cpu())
    return torch.cat(out).numpy(), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="instance-eval folder (labels.csv + images/)")
    ap.add_argument("--recipe", default="default", help="zoo recipe (default: default)")
    ap.add_argument("--backbone", default=None, help="override model.backbone.name (e.g. tf_efficientnet_lite2)")
    ap.add_argument("--image-size", type=int, default=384, help="long side in pixels (default 384)")
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = ap.parse_args(argv)
    if not (args.data / "labels.csv").is_file():
        print(f"no labels.csv under {args.data}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    paths, labels = read_labels(args.data)
    overrides = [f"data.image_size={args.image_size}"]
    if args.backbone:
        overrides.append(f"model.backbone.name={args.backbone}")

    emb_zoo, entry_name, t_zoo = embed_zoo(args.recipe, overrides, paths, device)

    from zoo.weights.catalog import get_weights
    from zoo.weights.resolve import fetch_entry

    entry = get_weights(entry_name)
    weights = fetch_entry(entry)[0]
    emb_ref, t_ref = embed_plain_timm(entry.arch, weights, paths, args.image_size, device)

    m_zoo, r_zoo = average_precision_and_r1(emb_zoo, labels)
    m_ref, r_ref = average_precision_and_r1(emb_ref, labels)
    cos = float(np.mean(np.sum(emb_zoo * emb_ref, axis=1)))
    print(f"instance-eval: {len(paths)} images, {len(set(labels))} instances; weights {entry_name}; long side {args.image_size}")
    print(f"{'system':<34} {'mAP':>6} {'R@1':>6} {'s/img':>7}  (s/img: decode + resize + forward, batch 1)")
    print(f"{'zoo ' + args.recipe + ' (create_model)':<34} {m_zoo:6.3f} {r_zoo:6.3f} {t_zoo / len(paths):7.3f}")
    print(f"{'plain timm script':<34} {m_ref:6.3f} {r_ref:6.3f} {t_ref / len(paths):7.3f}")
    print(f"mean cosine between the two systems' descriptors: {cos:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
