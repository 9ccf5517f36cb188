"""GPU embedding throughput: the zoo embed pipeline (decode in workers, AMP) vs the same model's
pure forward on that GPU, for tf_efficientnet_b5 @ 456 and vit_huge_patch14_clip_224; then
faiss-gpu search (zoo's sharded clone vs a direct GpuIndexFlatIP vs torch.mm + topk).

    python benchmarks/gpu_embed.py --device cuda
    python benchmarks/gpu_embed.py --device cuda --images /data/jpegs --n-images 4096

Without --images, --n-images synthetic 640x480 JPEGs (smooth colour fields plus noise, quality 90,
so decoding costs what a photo costs) are written to a temp folder. Weights are random (speed
does not depend on them; nothing is downloaded). The pure forward runs on uint8 batches already
on the GPU (normalise + forward, same AMP dtype, channels_last). Prints a one-line JSON result last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODELS = {
    "tf_efficientnet_b5@456": ["model.backbone.name=tf_efficientnet_b5", "data.image_size=456",
                               "data.resize=square", "model.embedding_dim=null"],
    "vit_huge_patch14_clip_224@224": ["model.backbone.name=vit_huge_patch14_clip_224", "+model.backbone.output_fmt=NC",
                                      "data.image_size=224", "data.resize=square", "model.embedding_dim=null"],
}


def synthetic_jpegs(folder: Path, n: int, size: tuple[int, int] = (640, 480)) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        low = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(low).resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
        img = np.clip(img + rng.integers(-12, 13, size=img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:06d}.jpg", quality=90)


def bench_model(name: str, overrides: list[str], records, args, device) -> dict:
    import torch

    import zoo
    from zoo.inference.embed import EmbedOptions, Embedder, embed_to_folder

    model = zoo.create_model("default", overrides=overrides)
    embedder = Embedder(model, device=device, amp=args.amp)
    pre = embedder.preprocesses[0]
    x = torch.randint(0, 256, (args.batch_size, 3, pre.input_size, pre.input_size), dtype=torch.uint8, device=device)
    for _ in range(3):
        embedder([x])
    torch.cuda.synchronize()
    steps = max(1, len(records) // args.batch_size)
    t0 = time.perf_counter()
    for _ in range(steps):
        embedder([x])
    torch.cuda.synchronize()
    forward = steps * args.batch_size / (time.perf_counter() - t0)

    best = 0.0
    for _ in range(args.repeat):
        tmp = tempfile.mkdtemp()
        try:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            rep = embed_to_folder(model, records, tmp, options=EmbedOptions(
                batch_size=args.batch_size, num_workers=args.workers, device=str(device), amp=args.amp,
                progress=False, shard_size=args.shard_size))
            torch.cuda.synchronize()
            best = max(best, rep.embedded / (time.perf_counter() - t0))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    out = {"pure_forward_img_s": round(forward, 1), "pipeline_img_s": round(best, 1),
           "pipeline_vs_forward": round(best / forward, 3), "amp": str(embedder.amp_dtype),
           "dim": embedder.embedding_dim}
    print(f"{name}: {out}", file=sys.stderr)
    del model, embedder
    torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda device (default: cuda)")
    p.add_argument("--images", default=None, help="folder of JPEGs (default: synthetic ones)")
    p.add_argument("--n-images", type=int, default=2048, help="synthetic images to write (default: 2048)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=max(1, min(15, (os.cpu_count() or 2) - 1)),
                   help="decoding workers (default: cores - 1, at most 15)")
    p.add_argument("--shard-size", type=int, default=8192)
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"))
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--models", nargs="*", default=list(MODELS), help=f"subset of: {', '.join(MODELS)}")
    p.add_argument("--search-n", type=int, default=1_000_000, help="gallery size of the search part (0: skip)")
    args = p.parse_args(argv)

    import torch

    from zoo.data.images import list_images

    device = torch.device(args.device)
    if device.type != "cuda" or not torch.cuda.is_available():
        print(json.dumps({"benchmark": "gpu_embed", "skipped": "no CUDA device"}))
        return 0
    torch.backends.cudnn.benchmark = True
    tmp = None
    if args.images:
        folder = Path(args.images)
    else:
        tmp = tempfile.mkdtemp()
        folder = Path(tmp)
        t0 = time.perf_counter()
        synthetic_jpegs(folder, args.n_images)
        print(f"wrote {args.n_images} synthetic JPEGs in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    try:
        records = list_images(folder)
        out = {"benchmark": "gpu_embed", "device": torch.cuda.get_device_name(device), "machine": platform.node(),
               "cpus": os.cpu_count(), "workers": args.workers, "images": len(records),
               "batch_size": args.batch_size, "models": {}}
        for name in args.models:
            out["models"][name] = bench_model(name, MODELS[name], records, args, device)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.search_n:
        import contextlib
        import io

        from benchmarks import search as search_bench

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            search_bench.main(["--device", "cuda", "--n", str(args.search_n), "--repeat", "2"])
        out["search"] = json.loads(buf.getvalue().strip().splitlines()[-1])
    out["date"] = time.strftime("%Y-%m-%d")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
