"""Export a recipe as a self-contained model: uint8 RGB ``B x 3 x H x W`` in, L2-normalised descriptor out.

Weights: ``--checkpoint F`` (a zoo safetensors file), else the recipe's default weights from the
manifest (``--random-init`` for an untrained smoke export). The export preprocesses exactly as
``zoo embed`` does (the recipe's size rule, e.g. long side -> 384 px, PIL's resampling, mean/std;
``--image-size`` changes the size) and is written only after it reproduces ``zoo embed`` on real
photos of different aspect ratios (TorchScript is the GUIE submission format; GUIE recipes must give
<= 64-d descriptors).

Examples:
  zoo export default --format torchscript --out default.pt
  zoo export default --format onnx --out default.onnx
  zoo export guie2022-2nd-vith14-64d --checkpoint guie.safetensors --format torchscript --out submission.pt
  zoo export runs/ft --format torchscript --out ft.pt          # a run folder of zoo train
"""

from __future__ import annotations

import argparse

COMMAND = "export"
HELP = "export a recipe to TorchScript or ONNX (uint8 images -> L2-normalised descriptor), verified on real photos"


def configure(p: argparse.ArgumentParser) -> None:
    from zoo.cli._options import add_override_args, choice_of

    p.add_argument("recipe", nargs="?", default=None,
                   help="recipe name (see: zoo recipes) or a run folder of zoo train (optional with --checkpoint)")
    p.add_argument("--checkpoint", default=None,
                   help="zoo .safetensors checkpoint or run folder (default: the manifest's weights)")
    p.add_argument("--format", dest="fmt", type=choice_of("zoo.export:FORMATS"), default="torchscript",
                   help="torchscript or onnx (default: torchscript)")
    p.add_argument("--out", required=True, help="output file (written atomically after the parity check)")
    add_override_args(p)
    p.add_argument("--image-size", type=int, default=None, help="network input size (default: the recipe's)")
    p.add_argument("--max-dim", type=int, default=None, help="refuse descriptors wider than this (GUIE recipes: 64)")
    p.add_argument("--photos", nargs="+", default=None, help="photos for the parity check (default: skimage/sklearn samples)")
    p.add_argument("--random-init", action="store_true", help="no weights at all (smoke exports only)")
    p.add_argument("--json", action="store_true", help="print the result (path, format, dim, parity) as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoo.export import export_model

    if args.random_init and args.checkpoint:
        from zoo.export import ExportError

        raise ExportError("--random-init and --checkpoint exclude each other")
    result = export_model(
        args.recipe,
        args.out,
        fmt=args.fmt,
        checkpoint=args.checkpoint,
        pretrained=not args.random_init,
        overrides=args.overrides,
        image_size=args.image_size,
        max_dim=args.max_dim,
        photos=args.photos,
    )
    if args.json:
        from dataclasses import asdict

        from zoo.cli._output import print_json

        print_json({**asdict(result), "parity_ok": result.parity.ok})
        return 0
    inputs = "; ".join(dc.describe() for dc in result.data_configs)
    print(f"wrote {result.path} ({result.format}, uint8 Bx3xHxW -> {result.embedding_dim}-d; input: {inputs})")
    if result.embed_parity is not None:
        print(f"  against zoo embed: {result.embed_parity.summary()}")
    print(f"  against the eager model: {result.parity.summary()}")
    return 0
