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

    from zoo.data.config import DataConfig
    from zoo.inference.embed import EmbedOptions



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
    p.add_argument("recipe", nargs="?", default=None,
                   help="recipe or ensemble recipe name (see: zoo recipes), or a run folder of zoo train "
                        "(optional with a self-describing --checkpoint)")
    p.add_argument("--checkpoint", default=None,
                   help="zoo .safetensors checkpoint or run folder to load (else the recipe's default weights)")
    p.add_argument(
        "--pretrained", dest="pretrained", action=argparse.BooleanOptionalAction, default=None,
        help="load the recipe's default weights from the manifest (default: yes unless --checkpoint is given)",
    )
    add_random_weights_args(p)
    add_override_args(p)


def add_random_weights_args(p: argparse.ArgumentParser) -> None:
    """``--allow-random-weights`` (embed with layers no weights file fills) and ``--seed`` (their initialisation)."""
    p.add_argument("--allow-random-weights", action="store_true",
                   help="embed even when layers that shape the descriptor have no weights (e.g. --no-pretrained, "
                        "a neck without weights); their initialisation is seeded with --seed and recorded")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initialisation of layers no weights file fills (default: 0)")


def add_mixed_models_arg(p: argparse.ArgumentParser) -> None:
    """``--allow-mixed-models``: compare vectors whose recorded model identities differ (a warning, not an error)."""
    p.add_argument("--allow-mixed-models", action="store_true",
                   help="compare vectors embedded by different models (recipe, weights, config, preprocessing or "
                        "flip-TTA differ); refused by default, since their scores mean nothing")


def add_embed_args(p: argparse.ArgumentParser, *, image_size: bool = True) -> None:
    g = p.add_argument_group("embedding")
    if image_size:
        g.add_argument("--image-size", type=int, default=None, help="override the recipe's data.image_size")
    g.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=None,
                   help="add the horizontally flipped image's descriptor (default: the recipe's inference.flip_tta, "
                        "on for GUIE 2022, else off)")
    g.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: 32)")
    g.add_argument("--workers", type=int, default=None, help="decoding workers (default: CUDA cores - 1, at most 8; CPU cores // 8)")
    g.add_argument("--amp", type=choice_of("zoo.inference.embed:AMP_MODES"), default="auto",
                   help="autocast: auto (bf16/fp16 on CUDA, off on CPU), off, bf16 or fp16 (default: auto)")
    g.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK when available), cpu, cuda, cuda:1, ...")
    g.add_argument("--decode", type=choice_of("zoo.inference.gpu_decode:DECODE_MODES"), default="auto",
                   help="where images are decoded: auto (JPEG batches on a CUDA device with nvJPEG, else the CPU), "
                        "cpu (PIL on the CPU), device (JPEG batches on --device) (default: auto)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def recipe_config_from_args(args: argparse.Namespace, registry: Any = None) -> Any:
    """The resolved config of ``args.recipe`` (a recipe name, a run folder of zoo train, or none with a
    self-describing ``--checkpoint``) with the command line's overrides; nothing is built."""
    from zoo.factory import resolve_model_config

    cfg, _ = resolve_model_config(args.recipe, checkpoint=args.checkpoint, overrides=list(args.overrides),
                                  registry=registry)
    return cfg


def model_from_args(args: argparse.Namespace) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model of ``args.recipe``; returns it with the metadata recorded next to its outputs."""
    from zoo.factory import create_model

    pretrained = args.pretrained if args.pretrained is not None else args.checkpoint is None
    model = create_model(
        args.recipe, pretrained=bool(pretrained), checkpoint=args.checkpoint, overrides=list(args.overrides),
        seed=getattr(args, "seed", 0),
    )
    check_weights_not_random(model, args, head=False)
    checkpoint = getattr(model, "checkpoint", None) or args.checkpoint
    meta = {
        "recipe": getattr(model, "recipe", None) or args.recipe,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "pretrained": bool(pretrained),
        "overrides": list(args.overrides),
    }
    return model, meta


def check_weights_not_random(model: nn.Module, args: argparse.Namespace, *, head: bool) -> None:
    """Refuse a model whose descriptor (with ``head``: also its head) has randomly initialised tensors,
    unless ``--allow-random-weights`` (:class:`~zoo.weights.origin.RandomWeightsError`)."""
    from zoo.weights.origin import RandomWeightsError

    origin = getattr(model, "weights_origin", None)
    if origin is None or getattr(args, "allow_random_weights", False):
        return
    names = list(origin.random) + (list(origin.random_head) if head else [])
    if not names:
        return
    what = origin.describe_random() if origin.random else origin.describe_random(head=True)
    source = ("--no-pretrained" if getattr(args, "pretrained", None) is False
              else "these weights" if (getattr(args, "checkpoint", None) or getattr(args, "pretrained", None))
              else "its default weights")
    role = "its descriptors" if origin.random else "its head's class scores"
    raise RandomWeightsError(
        f"recipe '{getattr(model, 'recipe', None) or args.recipe}' with {source} has {what}, so {role} would be "
        "noise that no later run could match; load weights that fill them (--checkpoint RUN, or the recipe's "
        "manifest weights: zoo weights list), or pass --allow-random-weights to use the seeded random "
        f"initialisation (--seed {getattr(args, 'seed', 0)}, recorded in the output)"
    )


def preprocesses_from_args(model: nn.Module, args: argparse.Namespace) -> list[DataConfig]:
    from zoo.data.config import model_data_configs, with_input_size

    return with_input_size(model_data_configs(model), getattr(args, "image_size", None))


def flip_tta_from_args(args: argparse.Namespace) -> bool:
    """``--flip-tta`` / ``--no-flip-tta`` when given, else the recipe's ``inference.flip_tta`` (off when unset)."""
    if getattr(args, "flip_tta", None) is not None:
        return bool(args.flip_tta)
    recipe, checkpoint = getattr(args, "recipe", None), getattr(args, "checkpoint", None)
    if not recipe and not checkpoint:
        return False
    from omegaconf import OmegaConf

    from zoo.factory import resolve_model_config

    # a recipe name, a run folder or a self-describing checkpoint: the config the model is built from
    cfg, _ = resolve_model_config(recipe, checkpoint=checkpoint, overrides=list(getattr(args, "overrides", None) or []))
    return bool(OmegaConf.select(cfg, "inference.flip_tta", default=False))


def embed_options_from_args(args: argparse.Namespace, **extra: Any) -> EmbedOptions:
    from zoo.inference.embed import EmbedOptions

    return EmbedOptions(
        batch_size=args.batch_size,
        num_workers=args.workers,
        flip_tta=flip_tta_from_args(args),
        amp=args.amp,
        device=args.device,
        progress=not args.no_progress,
        decode=args.decode,
        **extra,
    )
