"""Command-line options shared by the inference commands (embed, recognize, retrieve, demo).

``add_model_args`` / ``add_embed_args`` configure a parser; ``model_from_args`` /
``embed_options_from_args`` / ``preprocesses_from_args`` turn the parsed namespace into objects.
"""

from __future__ import annotations

import argparse
from typing import Any

from torch import nn

from zoo.inference.embed import AMP_MODES, EmbedOptions
from zoo.inference.preprocess import Preprocess, model_preprocesses, with_image_size


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe or ensemble recipe name (see: zoo recipes)")
    p.add_argument("--checkpoint", default=None, help="zoo .safetensors checkpoint to load (else the recipe's default weights)")
    p.add_argument(
        "--pretrained", dest="pretrained", action=argparse.BooleanOptionalAction, default=None,
        help="load the recipe's default weights from the manifest (default: yes unless --checkpoint is given)",
    )
    p.add_argument("-o", "--override", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe override (repeatable), e.g. -o model.backbone.name=mobilenetv2_035")


def add_embed_args(p: argparse.ArgumentParser, *, image_size: bool = True) -> None:
    g = p.add_argument_group("embedding")
    if image_size:
        g.add_argument("--image-size", type=int, default=None, help="override the recipe's data.image_size")
    g.add_argument("--flip-tta", action="store_true", help="add the horizontally flipped image's descriptor")
    g.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: 32)")
    g.add_argument("--workers", type=int, default=None, help="decoding workers (default: CUDA cores - 1, at most 8; CPU cores // 8)")
    g.add_argument("--amp", choices=AMP_MODES, default="auto", help="autocast: auto = bf16/fp16 on CUDA, off on CPU")
    g.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK when available), cpu, cuda, cuda:1, ...")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def model_from_args(args: argparse.Namespace) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model of ``args.recipe``; returns it with the metadata recorded next to its outputs."""
    from zoo.assembly import create_model

    pretrained = args.pretrained if args.pretrained is not None else args.checkpoint is None
    model = create_model(
        args.recipe, pretrained=bool(pretrained), checkpoint=args.checkpoint, overrides=list(args.overrides)
    )
    meta = {
        "recipe": args.recipe,
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "pretrained": bool(pretrained),
        "overrides": list(args.overrides),
    }
    return model, meta


def preprocesses_from_args(model: nn.Module, args: argparse.Namespace) -> list[Preprocess]:
    return with_image_size(model_preprocesses(model), getattr(args, "image_size", None))


def embed_options_from_args(args: argparse.Namespace, **extra: Any) -> EmbedOptions:
    return EmbedOptions(
        batch_size=args.batch_size,
        num_workers=args.workers,
        flip_tta=args.flip_tta,
        amp=args.amp,
        device=args.device,
        progress=not args.no_progress,
        **extra,
    )
