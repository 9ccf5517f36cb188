"""Train a recipe: ``zoo train RECIPE --data TRAIN.csv --images DIR [--val VAL.csv] [KEY=VALUE ...]``.

Runs every stage of the recipe's ``train:`` section (see ``zoo info RECIPE``). Data: a CSV with
``id,landmark_id`` (GLDv2 style; ``path``/``label``/``instance`` columns work too) whose ids are found
under ``--images``, or an image-folder tree (one sub-folder per class). Stages that train on another
subset name it (``data: full``) and get it with ``--data full=PATH``. Recipe overrides (``KEY=VALUE``,
or ``-o KEY=VALUE``) may stand anywhere on the line.

Validation: without ``--val``, a recipe with a ``train.split`` (e.g. GLR2020 3rd place's fold rule)
holds its validation rows out of ``--data`` itself and validates on them every epoch; ``--val``
replaces the rule, ``--no-split`` trains on every row without validation. A ``--val`` set of classes
the run trains on gives classification GAP and accuracy; a set of other instances (a class-disjoint
set: every photo queries the others; or ``--val GALLERY --val-query QUERIES``) gives retrieval mAP@100,
R@1 and mP@5 of descriptors made exactly as ``zoo embed`` makes them, scored as ``zoo evaluate`` does
(``train.validate=auto|classification|retrieval|both``).

Weights: ``OUT/model.safetensors`` holds the selected epoch's weights (``train.select``: ``auto`` = the
best mAP@100 when retrieval is validated, else the last epoch; or a metric such as ``recall@1``, or
``last``); ``OUT/last.safetensors`` the last epoch's when they differ by rule; ``OUT/selection.json``
says which. ``zoo.create_model("OUT")``, ``zoo embed OUT`` and ``zoo weights publish OUT`` load
``model.safetensors``.

Multi-GPU: ``torchrun --nproc-per-node 8 -m zoo train RECIPE ...`` (NCCL; gloo on CPU); batch sizes
are per process and the recipe's ``world_size`` says how many processes it was trained with.
ImageNet initialisation is on unless ``--no-pretrained``. ``--resume`` continues a run from
OUT/resume.safetensors (written every epoch and every ``train.checkpoint_every_steps``) and refuses a
changed configuration; a folder that holds a run is never overwritten unless ``--overwrite``.

Examples:
  zoo train default-finetune --data train.csv --images train/ --out runs/ft train.epochs=3 --device cpu
  zoo train glr2021-top100-effnet-b0 --data train.csv --images train/ --val val.csv --out runs/b0
  zoo train default-finetune --data train.csv --images DIR --val heldout.csv --out runs/ft --select recall@1
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

COMMAND = "train"
HELP = "train a recipe (all its stages) on a CSV or image folder; torchrun for several GPUs"

log = logging.getLogger("zoo.train")


def configure(p: argparse.ArgumentParser) -> None:
    from zoo.cli._options import add_override_args

    p.add_argument("recipe", help="recipe name (zoo recipes) or a recipe YAML file")
    add_override_args(p)
    p.add_argument("--data", action="append", required=True, metavar="[KEY=]PATH",
                   help="training CSV or image folder; repeat as KEY=PATH for stages with data: KEY (default key: train)")
    p.add_argument("--images", default=None, help="folder the CSV ids are found under (default: the CSV's folder)")
    p.add_argument("--val", default=None,
                   help="validation CSV or folder: GAP/accuracy on trained classes, retrieval mAP@100/R@1 on other "
                        "instances (the gallery with --val-query); replaces the recipe's train.split")
    p.add_argument("--val-query", default=None,
                   help="retrieval validation queries (CSV or folder) searched in the --val gallery")
    p.add_argument("--no-split", action="store_true",
                   help="train on every row of --data: no validation rows held out by the recipe's train.split")
    p.add_argument("--val-images", default=None, help="images folder of --val and --val-query (default: --images)")
    p.add_argument("--select", default=None, metavar="METRIC",
                   help="which epoch's weights OUT/model.safetensors holds (train.select): auto (best map@100 with "
                        "retrieval validation, else last), last, or a metric such as recall@1, gap, min:train_loss")
    p.add_argument("--out", default=None, help="run folder (default: runs/RECIPE)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUT from OUT/resume.safetensors (same recipe and settings)")
    p.add_argument("--overwrite", action="store_true", help="delete the run already in OUT and start again")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--no-pretrained", action="store_true", help="random init instead of ImageNet weights")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps (smoke runs)")
    p.add_argument("--workers", type=int, default=None, help="data-loader workers per process (train.workers)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the result (steps, last metrics, weights) as JSON")
    p.set_defaults(func=run)


def _parse_data(items: list[str], images: str | None) -> dict[str, tuple[str, str | None]]:
    from zoo.registry import ZooError

    out: dict[str, tuple[str, str | None]] = {}
    for item in items:
        key, _, path = item.rpartition("=") if "=" in item and not Path(item).exists() else ("train", "", item)
        key = key or "train"
        if key in out:
            raise ZooError(f"--data {key}=... given twice")
        if not Path(path).exists():
            raise ZooError(f"--data {item}: {path} does not exist")
        out[key] = (path, images)
    return out


def _describe_selection(info: dict) -> str:
    sel = info.get("selected") or {}
    if info.get("select") == "last" or sel.get("value") is None:
        return "the last epoch" if sel.get("epoch") is not None else "the run's final state"
    return f"epoch {sel.get('epoch')} of stage {sel.get('stage')}, best {info['select']} {sel['value']:.4f}"


def run(args: argparse.Namespace) -> int:
    import torch

    from zoo.data.config import DataConfig
    from zoo.plugins import get_registry
    from zoo.distributed import init_distributed, shutdown_distributed
    from zoo.train.engine import Trainer
    from zoo.train.files import FileSource

    overrides = list(args.overrides)
    if args.workers is not None:
        overrides.append(f"+train.workers={args.workers}")  # '+': also for recipes that leave it unset
    if args.select is not None:
        overrides.append(f"+train.select='{args.select}'")
    from zoo.recipes import get_recipe

    cfg = get_recipe(args.recipe, overrides)
    if (args.val or args.no_split) and cfg.get("train") is not None and cfg.train.get("split") is not None:
        cfg.train.split = None  # --val / --no-split replace the recipe's hold-out rule (recorded in config.json)
    out = Path(args.out or Path("runs") / str(cfg.name))
    ctx = init_distributed(args.device)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    dc = DataConfig.from_recipe(cfg)
    source = FileSource(
        _parse_data(args.data, args.images),
        (args.val, args.val_images or args.images) if args.val else None,
        registry=get_registry(), mean=dc.mean, std=dc.std,
        val_query=(args.val_query, args.val_images or args.images) if args.val_query else None,
    )
    try:
        result = Trainer(
            cfg, source, out, device=args.device, pretrained=not args.no_pretrained, resume=args.resume,
            progress=not args.no_progress and sys.stderr.isatty(), max_steps=args.max_steps, ctx=ctx,
            argv=sys.argv, overwrite=args.overwrite,
        ).fit()
    finally:
        shutdown_distributed()
    if ctx.is_main and args.json:
        from zoo.cli._output import print_json

        print_json({"recipe": cfg.name, "out": out, "steps": result.global_step,
                    "last": result.history[-1] if result.history else {}, "weights": result.weights,
                    "last_weights": result.last_weights, "selection": result.selection,
                    "skipped": len(result.skipped)})
    elif ctx.is_main:
        last = result.history[-1] if result.history else {}
        summary = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if isinstance(v, float))
        print(f"trained {cfg.name}: {result.global_step} optimizer steps; {summary}")
        print(f"weights: {result.weights} ({_describe_selection(result.selection)}); "
              f"load with zoo.create_model('{out}')")
        if result.last_weights:
            print(f"last epoch's weights: {result.last_weights}")
        if result.skipped:
            print(f"skipped {len(result.skipped)} unreadable images: see {out / 'skipped.json'}")
    return 0
