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
    p.add_argument("--json", action="store_true", help="name, plugin, description and file of each recipe as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoo.plugins import get_registry
    from zoo.recipes import list_recipes

    reg = get_registry()
    names = list_recipes(args.pattern, registry=reg)
    if args.json:
        from zoo.cli._output import print_json

        print_json([{"name": name, "plugin": reg.recipe_files[name][1].name, "description": _description(reg, name),
                     "path": reg.recipe_files[name][0]} for name in names])
        return 0 if names else 1
    for name in names:
        if args.long:
            print(f"{name}\t{reg.recipe_files[name][1].name}\t{_description(reg, name)}")
        else:
            print(name)
    return 0 if names else 1


def _description(reg: object, name: str) -> str:
    """The first line of a recipe file's ``description`` (its own, not inherited)."""
    from omegaconf import OmegaConf

    desc = OmegaConf.load(reg.recipe_files[name][0]).get("description", "") or ""  # type: ignore[attr-defined]
    return str(desc).strip().splitlines()[0] if desc else ""
