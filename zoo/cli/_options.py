"""Command-line options shared by the commands (recipe overrides, model, embedding, verbosity).

``add_override_args`` / ``add_model_args`` / ``add_embed_args`` / ``add_verbosity_args`` configure a
parser; ``model_from_args`` / ``embed_options_from_args`` / ``preprocesses_from_args`` turn the parsed
namespace into objects. Configuring a parser imports nothing heavy (torch and the model code are
imported by the ``*_from_args`` functions, when a command runs).
"""

from __future__ import annotations

import argparse
import importlib
from typing import TYPE_CHECKING, Any, Callable

from zoo.cli._parser import OVERRIDES_DEST

if TYPE_CHECKING:
    from torch import nn

    from zoo.inference.embed import EmbedOptions
    from zoo.inference.preprocess import Preprocess



def choice_of(ref: str) -> Callable[[str], str]:
    """An argparse ``type`` accepting the values of the tuple ``"module:NAME"``, imported when a value
    is parsed (``choices=`` would import the module - and torch - for ``--help``)."""
    module, _, name = ref.partition(":")

    def check(text: str) -> str:
        values = getattr(importlib.import_module(module), name)
        if text not in values:
            raise argparse.ArgumentTypeError(f"invalid choice: '{text}' (choose from {', '.join(values)})")
        return text

    check.__name__ = name.lower()
    return check


def add_override_args(p: argparse.ArgumentParser) -> None:
    """Recipe overrides: ``-o KEY=VALUE`` (aliases ``--override``, ``--set``) or a bare ``KEY=VALUE``
    anywhere on the line (see :mod:`zoo.cli._parser`)."""
    p.add_argument(
        "-o", "--override", "--set", dest=OVERRIDES_DEST, action="append", default=[], metavar="KEY=VALUE",
        help="recipe override, repeatable; a bare KEY=VALUE anywhere on the line is the same "
             "(e.g. train.epochs=3 or -o model.backbone.name=mobilenetv2_035; keys: zoo info RECIPE --keys)",
    )


def add_json_arg(p: argparse.ArgumentParser, what: str = "the summary") -> None:
    """``--json``: print one JSON object (``what``) on stdout instead of text; logs stay on stderr."""
    p.add_argument("--json", action="store_true", help=f"print {what} as one JSON object instead of text")


def add_verbosity_args(p: argparse.ArgumentParser, *, dest_prefix: str = "") -> None:
    """``-v`` (info; ``-vv`` debug) and ``-q`` (errors only, no progress bars)."""
    extra = {"default": argparse.SUPPRESS} if dest_prefix else {"default": 0}
    p.add_argument("-v", "--verbose", dest=f"{dest_prefix}verbose", action="count",
                   help="more output: -v progress details, -vv debug logging and full tracebacks", **extra)
    p.add_argument("-q", "--quiet", dest=f"{dest_prefix}quiet", action="count",
                   help="less output: errors only, no progress bars", **extra)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe or ensemble recipe name (see: zoo recipes)")
    p.add_argument("--checkpoint", default=None, help="zoo .safetensors checkpoint to load (else the recipe's default weights)")
    p.add_argument(
        "--pretrained", dest="pretrained", action=argparse.BooleanOptionalAction, default=None,
        help="load the recipe's default weights from the manifest (default: yes unless --checkpoint is given)",
    )
    add_override_args(p)


def add_embed_args(p: argparse.ArgumentParser, *, image_size: bool = True) -> None:
    g = p.add_argument_group("embedding")
    if image_size:
        g.add_argument("--image-size", type=int, default=None, help="override the recipe's data.image_size")
    g.add_argument("--flip-tta", action="store_true", help="add the horizontally flipped image's descriptor")
    g.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: 32)")
    g.add_argument("--workers", type=int, default=None, help="decoding workers (default: CUDA cores - 1, at most 8; CPU cores // 8)")
    g.add_argument("--amp", type=choice_of("zoo.inference.embed:AMP_MODES"), default="auto",
                   help="autocast: auto (bf16/fp16 on CUDA, off on CPU), off, bf16 or fp16 (default: auto)")
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
    from zoo.inference.preprocess import model_preprocesses, with_image_size

    return with_image_size(model_preprocesses(model), getattr(args, "image_size", None))


def embed_options_from_args(args: argparse.Namespace, **extra: Any) -> EmbedOptions:
    from zoo.inference.embed import EmbedOptions

    return EmbedOptions(
        batch_size=args.batch_size,
        num_workers=args.workers,
        flip_tta=args.flip_tta,
        amp=args.amp,
        device=args.device,
        progress=not args.no_progress,
        **extra,
    )
