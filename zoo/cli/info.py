"""Show a recipe's resolved config (after ``extends`` and overrides) and its override keys.

Examples:
  zoo info default
  zoo info default-finetune train.epochs=3 model.pooling.type=avg
  zoo info glr2020-3rd-effnet-b5 --keys
"""

from __future__ import annotations

import argparse

COMMAND = "info"
HELP = "show a recipe's resolved config and override keys"


def configure(p: argparse.ArgumentParser) -> None:
    from zoo.cli._options import add_json_arg, add_override_args

    p.add_argument("recipe", help="recipe name (see: zoo recipes) or a recipe YAML file")
    add_override_args(p)
    p.add_argument("--keys", action="store_true", help="print only the override keys")
    add_json_arg(p, '{"name", "config" (resolved), "keys"}')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from zoo.recipes import flat_keys, get_recipe

    cfg = get_recipe(args.recipe, args.overrides)
    keys = flat_keys(cfg)
    if args.json:
        from zoo.cli._output import print_json

        print_json({"name": cfg.name, "config": OmegaConf.to_container(cfg, resolve=True), "keys": keys})
        return 0
    if not args.keys:
        print(OmegaConf.to_yaml(cfg, resolve=True).rstrip())
        print("\n# override keys (key=value; +key=value adds a key):")
    for key in keys:
        print(key if args.keys else f"#   {key}")
    return 0
