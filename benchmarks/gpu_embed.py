"""The GPU check of issue 13.1: ``zoo embed`` with JPEGs decoded on the GPU vs the model's pure forward.

One prepared run for a lent GPU machine (a few minutes on an H100/H200). For each model
(tf_efficientnet_b5 @ 456 square; ViT-H-14 as timm's ``vit_huge_patch14_clip_224`` @ 224; random
weights: speed does not depend on them and nothing is downloaded) it prints

* ``pure_forward_img_s``: normalise + forward of uint8 batches already on the GPU (same AMP dtype,
  channels_last, same batch size);
* ``gpu_decode_img_s``: ``embed_to_folder`` end to end with ``decode="auto"`` (workers read bytes, nvJPEG
  decodes batches, EXIF orientation and PIL-exact resize on the GPU), best of ``--repeat``;
  ``ratio`` = gpu_decode / pure_forward (goal >= 0.85);
* ``cpu_decode_img_s``: the same with ``decode="cpu"`` (PIL in ``--cpu-workers`` workers: the path before);
* ``decode_only_img_s``: the GPU decoding alone (bytes -> resized uint8 batches, no forward);
* ``min_cosine`` / ``mean_cosine``: descriptors of the two paths, same model and AMP;
  ``min_cosine_amp_off``: the same on ``--cosine-images`` images with ``--amp off`` (decoding alone).

Then ``pixels``: nvJPEG vs PIL pixels (whole decode, and after the B5 resize) on ``--pixel-images``
files; ``fallback``: a folder of special files (EXIF-rotated, grey, progressive, CMYK, PNG, corrupt,
truncated) embedded both ways: same ids and skip report, min cosine, files per decoder.

Images: ``--images`` (a folder of JPEGs) or ``--n-images`` synthetic 640x480 JPEGs (smooth colour fields
plus noise, quality 90, so decoding costs what a photo costs; 5 % carry an EXIF rotation).
Progress goes to stderr; the last stdout line is one JSON object (also written to ``--out``).

On the lent machine (its python3 has torch, torchvision, timm, pillow but not omegaconf; zoo is
installed from the checkout so that its plugins' entry points exist). Here, once, in the repo root::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl omegaconf==2.4.0

then the run (carry ``.whl``; timeout 600 s leaves room for a rerun in a 15-minute lease)::

    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site \\
        .whl/*.whl . && export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 && \\
        python3 benchmarks/gpu_embed.py --out $OUT/gpu_embed.json 2>&1 | tee $OUT/gpu_embed.log

``--smoke`` runs the same code on the CPU with a tiny model and a few images (torchvision's CPU decoder
standing in for nvJPEG), to check the script itself before a lease.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: --smoke: the script's code paths on the CPU in seconds
SMOKE_MODELS = {
    "mobilenetv2_035@64": ["model.backbone.name=mobilenetv2_035", "data.image_size=64", "data.resize=square"],
}
MODELS = {
    "tf_efficientnet_b5@456": ["model.backbone.name=tf_efficientnet_b5", "data.image_size=456",
                               "data.resize=square", "model.embedding_dim=null"],
    "vit_huge_patch14_clip_224@224": ["model.backbone.name=vit_huge_patch14_clip_224", "+model.backbone.output_fmt=NC",
                                      "data.image_size=224", "data.resize=square", "model.embedding_dim=null"],
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_mode(device) -> str:
    """The GPU path's decode mode: ``auto`` on CUDA (what users get); ``device`` on the CPU (--smoke)."""
    return "auto" if device.type == "cuda" else "device"


def _write_jpeg(args: tuple[Path, int, tuple[int, int]]) -> None:
    from PIL import Image

    path, i, size = args
    rng = np.random.default_rng(i)
    low = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    img = np.clip(img + rng.integers(-12, 13, size=img.shape), 0, 255).astype(np.uint8)
    save = {"quality": 90}
    if i % 20 == 7:  # a phone photo held upright: EXIF orientation 6
        exif = Image.Exif()
        exif[0x0112] = 6
        save["exif"] = exif.tobytes()
    Image.fromarray(img).save(path / f"{i:06d}.jpg", **save)


def synthetic_jpegs(folder: Path, n: int, size: tuple[int, int] = (640, 480)) -> None:
    with Pool(max(1, (os.cpu_count() or 2) - 1)) as pool:
        pool.map(_write_jpeg, [(folder, i, size) for i in range(n)], chunksize=32)


def special_files(folder: Path) -> None:
    """Every routing case of :mod:`zoo.inference.gpu_decode` (real nvJPEG behaviour is what is checked)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)

    def photo(h: int, w: int) -> Image.Image:
        low = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
        return Image.fromarray(low).resize((w, h), Image.Resampling.BICUBIC)

    for k in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = k
        photo(300, 500).save(folder / f"orient{k}.jpg", quality=90, exif=exif.tobytes())
    photo(400, 300).convert("L").save(folder / "grey.jpg", quality=90)
    photo(333, 517).save(folder / "odd_size.jpg", quality=90)
    photo(480, 640).save(folder / "subsampling444.jpg", quality=95, subsampling=0)
    photo(480, 640).save(folder / "progressive.jpg", quality=90, progressive=True)
    photo(200, 240).convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    photo(200, 240).save(folder / "image.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a jpeg at all \xff\xd9")
    buf = io.BytesIO()
    photo(480, 640).save(buf, format="JPEG", quality=90)
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def cosines(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    c = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(c.min()), float(c.mean())


def embed_folder(model, records, args, device, decode: str, workers: int | None, amp: str | None = None):
    from zoo.inference.embed import EmbedOptions, embed_to_folder
    from zoo.inference.shards import EmbeddingStore

    tmp = tempfile.mkdtemp()
    try:
        sync(device)
        t0 = time.perf_counter()
        report = embed_to_folder(model, records, tmp, options=EmbedOptions(
            batch_size=args.batch_size, num_workers=workers, device=str(device), amp=amp or args.amp,
            progress=False, shard_size=args.shard_size, decode=decode))
        sync(device)
        seconds = time.perf_counter() - t0
        ids, emb = EmbeddingStore(tmp).load()
        return report, seconds, ids, emb
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def decode_only(stream_records, preprocesses, args, device) -> float:
    """Bytes -> resized uint8 batches on the GPU, no forward (what the decode side can feed)."""
    from zoo.inference.dataset import ImageStream, default_num_workers, sample_loader
    from zoo.inference.gpu_decode import DeviceChunks

    stream = ImageStream(stream_records, preprocesses, jpeg_bytes=True)
    chunks = DeviceChunks(stream.distinct, device, stream.load_groups)
    loader = sample_loader(stream, range(len(stream_records)), chunk=args.batch_size,
                           num_workers=default_num_workers("cuda"), pin_memory=device.type == "cuda")
    sync(device)
    t0 = time.perf_counter()
    n = 0
    for chunk in loader:
        groups, _ = chunks(chunk)
        n += sum(int(idx.numel()) for idx, _ in groups)
    sync(device)
    stream.close()
    return n / (time.perf_counter() - t0)


def bench_model(name: str, overrides: list[str], records, args, device) -> dict:
    import torch

    import zoo
    from zoo.inference.embed import Embedder

    t0 = time.perf_counter()
    model = zoo.create_model("default", overrides=overrides)
    log(f"{name}: built in {time.perf_counter() - t0:.1f}s")
    embedder = Embedder(model, device=device, amp=args.amp)
    pre = embedder.preprocesses[0]
    x = torch.randint(0, 256, (args.batch_size, 3, pre.input_size, pre.input_size), dtype=torch.uint8, device=device)
    for _ in range(3):
        embedder([x])
    sync(device)
    steps = max(1, len(records) // args.batch_size)
    t0 = time.perf_counter()
    for _ in range(steps):
        embedder([x])
    sync(device)
    forward = steps * args.batch_size / (time.perf_counter() - t0)
    log(f"{name}: pure forward {forward:.1f} img/s")

    out: dict = {"pure_forward_img_s": round(forward, 1), "amp": str(embedder.amp_dtype), "dim": embedder.embedding_dim}
    best, gpu = 0.0, None
    for rep in range(args.repeat):
        report, seconds, ids, emb = embed_folder(model, records, args, device, device_mode(device), args.workers)
        rate = report.embedded / seconds
        log(f"{name}: rep {rep} zoo embed, GPU decoding: {rate:.1f} img/s ({report.embedded} images, {seconds:.2f}s)")
        best, gpu = max(best, rate), (ids, emb)
    report, seconds, cpu_ids, cpu_emb = embed_folder(model, records, args, device, "cpu", args.cpu_workers)
    cpu_rate = report.embedded / seconds
    log(f"{name}: zoo embed, CPU decoding ({args.cpu_workers} workers): {cpu_rate:.1f} img/s")
    assert gpu is not None and gpu[0] == cpu_ids, "the two paths embedded different images"
    out.update(gpu_decode_img_s=round(best, 1), ratio=round(best / forward, 3), cpu_decode_img_s=round(cpu_rate, 1),
               cpu_ratio=round(cpu_rate / forward, 3))
    out["min_cosine"], out["mean_cosine"] = (round(v, 6) for v in cosines(gpu[1], cpu_emb))
    sub = records[: args.cosine_images]
    _, _, ids_a, emb_a = embed_folder(model, sub, args, device, device_mode(device), args.workers, amp="off")
    _, _, ids_b, emb_b = embed_folder(model, sub, args, device, "cpu", args.cpu_workers, amp="off")
    assert ids_a == ids_b
    out["min_cosine_amp_off"], out["mean_cosine_amp_off"] = (round(v, 6) for v in cosines(emb_a, emb_b))
    out["decode_only_img_s"] = round(decode_only(records, embedder.preprocesses, args, device), 1)
    log(f"{name}: {out}")
    del model, embedder, cpu_emb, gpu
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def pixel_check(records, device, n: int) -> dict:
    """nvJPEG vs PIL pixels: whole decode and after the B5 @ 456 resize (both exact PIL resizes)."""
    import torch

    from zoo.data.config import DataConfig
    from zoo.data.images import read_image
    from zoo.inference.gpu_decode import DeviceResizer, decode_with_torchvision, orient, route_jpeg

    resizer = DeviceResizer(DataConfig(456, "square", "bicubic"), device)
    diffs, resized, differing, total = [], [], 0, 0
    for rec in records[:n]:
        data = Path(rec.path).read_bytes()
        route = route_jpeg(data)
        if not route.device:
            continue
        (img,) = decode_with_torchvision([torch.frombuffer(bytearray(data), dtype=torch.uint8)], device)
        img = orient(img, route.orientation)
        ref = torch.from_numpy(np.array(read_image(rec.path))).permute(2, 0, 1).to(device)
        d = (img.int() - ref.int()).abs()
        diffs.append(int(d.max()))
        differing += int((d > 0).sum())
        total += d.numel()
        r = (resizer(img[None]).int() - resizer(ref[None]).int()).abs()
        resized.append(int(r.max()))
    return {"images": len(diffs), "decode_max_abs": max(diffs, default=0), "decode_share_differing": round(differing / max(1, total), 5),
            "after_resize_max_abs": max(resized, default=0)}


def fallback_check(folder: Path, device, model_overrides: list[str]) -> dict:
    import logging

    import torch

    import zoo
    from zoo.data.images import list_images
    from zoo.inference.embed import Embedder, embed_records

    special_files(folder)
    records = list_images(folder)
    model = zoo.create_model("default", overrides=model_overrides)
    embedder = Embedder(model, device=device, amp="off")
    logging.getLogger("zoo.inference.gpu_decode").setLevel(logging.INFO)
    counts = {}

    class Catch(logging.Handler):
        def emit(self, record):  # the DeviceChunks summary line
            counts["log"] = record.getMessage()

    handler = Catch()
    logging.getLogger("zoo.inference.gpu_decode").addHandler(handler)
    ids_g, emb_g, skip_g = embed_records(embedder, records, batch_size=4, num_workers=2, decode=device_mode(device))
    logging.getLogger("zoo.inference.gpu_decode").removeHandler(handler)
    ids_c, emb_c, skip_c = embed_records(embedder, records, batch_size=4, num_workers=2, decode="cpu")
    same_skips = [(s.id, s.error) for s in skip_g] == [(s.id, s.error) for s in skip_c]
    out = {"files": len(records), "same_ids": ids_g == ids_c, "same_skip_report": same_skips,
           "skipped": sorted(s.id for s in skip_g), "decoders": counts.get("log")}
    if ids_g == ids_c:
        out["min_cosine"] = round(cosines(emb_g, emb_c)[0], 6)
        out["per_file_cosine"] = {i: round(float((a * b).sum()), 6) for i, a, b in zip(ids_g, emb_g, emb_c)}
    del model, embedder
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda device (default: cuda)")
    p.add_argument("--images", default=None, help="folder of JPEGs (default: synthetic ones)")
    p.add_argument("--n-images", type=int, default=4096, help="synthetic images to write (default: 4096)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="byte-reading workers of the GPU path (default: zoo's)")
    p.add_argument("--cpu-workers", type=int, default=max(1, min(15, (os.cpu_count() or 2) - 1)),
                   help="decoding workers of the CPU path (default: cores - 1, at most 15)")
    p.add_argument("--shard-size", type=int, default=8192)
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"))
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--cosine-images", type=int, default=256, help="images of the --amp off comparison")
    p.add_argument("--pixel-images", type=int, default=64, help="images of the nvJPEG vs PIL pixel comparison")
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS), help="models to run (default: both)")
    p.add_argument("--out", default=None, help="also write the JSON result here")
    p.add_argument("--smoke", action="store_true", help="tiny model, few images, CPU allowed: check the script")
    args = p.parse_args(argv)
    models = SMOKE_MODELS if args.smoke else MODELS
    if args.smoke:
        args.n_images, args.batch_size, args.repeat = min(args.n_images, 48), min(args.batch_size, 8), 1
        args.cosine_images, args.pixel_images, args.cpu_workers = 16, 8, 1
        args.models = list(SMOKE_MODELS)

    import torch

    from zoo.data.images import list_images
    from zoo.inference.gpu_decode import device_decoding_available

    device = torch.device(args.device)
    if args.smoke and not torch.cuda.is_available():
        device = torch.device("cpu")
    result: dict = {"benchmark": "gpu_embed", "date": time.strftime("%Y-%m-%d"), "machine": platform.node()}
    if not args.smoke and (device.type != "cuda" or not torch.cuda.is_available()):
        result["skipped"] = "no CUDA device"
    elif not device_decoding_available(device):
        result["skipped"] = "torchvision's decode_jpeg does not run on this GPU (see the log line above)"
    if "skipped" in result:
        print(json.dumps(result))
        return 1
    import torchvision

    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device} (smoke run)"
    result.update(device=name, cpus=os.cpu_count(), torch=torch.__version__,
                  torchvision=torchvision.__version__, batch_size=args.batch_size, models={})
    tmp = Path(tempfile.mkdtemp())
    try:
        if args.images:
            folder = Path(args.images)
        else:
            folder = tmp / "jpegs"
            folder.mkdir()
            t0 = time.perf_counter()
            synthetic_jpegs(folder, args.n_images)
            log(f"wrote {args.n_images} synthetic JPEGs in {time.perf_counter() - t0:.1f}s")
        records = list_images(folder)
        result["images"] = len(records)
        result["pixels"] = pixel_check(records, device, args.pixel_images)
        log(f"pixels: {result['pixels']}")
        result["fallback"] = fallback_check(tmp / "special", device, next(iter(models.values())))
        log(f"fallback: {result['fallback']}")
        for name in args.models:
            result["models"][name] = bench_model(name, models[name], records, args, device)
            if args.out:  # keep what is done if a later model runs out of time
                Path(args.out).write_text(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
