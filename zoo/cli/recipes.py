"""List recipes by fnmatch pattern.

Examples:
  zoo recipes
  zoo recipes 'glr2021*' --long
"""

from __future__ import annotations

import argparse

COMMAND = "recipes"
HELP = "list recipes (fnmatch PATTERN, natural order)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern (default: *)")
    p.add_argument("--long", action="store_true", help="also show the owning plugin and the description")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from zoo.plugins import get_registry
    from zoo.recipes import list_recipes

    reg = get_registry()
    names = list_recipes(args.pattern, registry=reg)
    for name in names:
        if args.long:
            path, owner = reg.recipe_files[name]
            desc = OmegaConf.load(path).get("description", "") or ""
            print(f"{name}\t{owner.name}\t{str(desc).strip().splitlines()[0] if desc else ''}")
        else:
            print(name)
    return 0 if names else 1
