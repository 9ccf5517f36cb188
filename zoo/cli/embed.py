"""Embed images with a recipe into a resumable folder of shards.

Examples:
  zoo embed default --images ../shared/data/instance-eval --out emb/
  zoo embed default --images train/ --out train_emb/ --batch-size 64
  torchrun --nproc-per-node 8 -m zoo embed default --images test/ --out test_emb/

Images are decoded once in worker processes and bucketed by shape (no padding); embeddings are
written in shards of --shard-size (safetensors, ids alongside). Run the same command again after an
interruption: finished shards are kept. Under torchrun each rank writes its own shards. Unreadable
images are skipped and listed (in each shard's .json and at the end of the run).
"""

from __future__ import annotations

import argparse
import logging

from zoo.cli._options import add_embed_args, add_json_arg, add_model_args

COMMAND = "embed"
HELP = "embed images (folder or CSV) into resumable embedding shards"

log = logging.getLogger(__name__)


def configure(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--images", required=True, help="image folder, or CSV with an id/path column")
    p.add_argument("--image-root", default=None, help="folder the CSV ids are found under (default: the CSV's folder)")
    p.add_argument("--out", required=True, help="output folder of embedding shards")
    p.add_argument("--shard-size", type=int, default=4096, help="images per shard (default: 4096)")
    p.add_argument("--fp16", action="store_true", help="store embeddings as float16")
    p.add_argument("--overwrite", action="store_true", help="delete existing shards in --out and start again")
    p.add_argument("--limit", type=int, default=None, help="embed only the first N images")
    add_embed_args(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoo.data.images import list_images
    from zoo.distributed import DistContext
    from zoo.inference.embed import embed_to_folder
    from zoo.cli._options import embed_options_from_args, model_from_args, preprocesses_from_args
    from zoo.cli._sources import source_meta

    records = list_images(args.images, args.image_root)
    if args.limit is not None:
        records = records[: args.limit]
    model, meta = model_from_args(args)
    meta.update(source_meta(args.images, args.image_root))  # labels of the images stay findable
    options = embed_options_from_args(args, shard_size=args.shard_size, fp16=args.fp16)
    dist = DistContext.from_env()
    report = embed_to_folder(
        model, records, args.out, options=options, preprocesses=preprocesses_from_args(model, args),
        meta=meta, dist=dist, overwrite=args.overwrite,
    )
    if args.json:
        from zoo.cli._output import print_json

        print_json({"rank": dist.rank, "world_size": dist.world_size, "out": report.out,
                    "records": report.num_records, "shards": report.num_shards, "embedded": report.embedded,
                    "shards_done": report.shards_done, "shards_reused": report.shards_reused,
                    "images_per_second": report.images_per_second, "skipped": [s.to_dict() for s in report.skipped]})
        return 0
    print(
        f"rank {dist.rank}/{dist.world_size}: embedded {report.embedded} images into {len(report.shards_done)} "
        f"shards of {report.out} ({report.images_per_second:.1f} img/s); reused {len(report.shards_reused)} "
        f"finished shards; skipped {len(report.skipped)} unreadable images"
    )
    for s in report.skipped:
        print(f"  skipped {s.id}: {s.error}")
    return 0
