"""The ``zoo`` command line.

Each core sub-command lives in its own module of this package and exposes ``COMMAND`` (its name),
``HELP`` (one line) and ``configure(parser)`` (which sets ``func``). Plugins add sub-commands
through the ``zoo_register_commands`` hook. Every sub-command has ``--help``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import Sequence

from zoo.cli._parser import ZooArgumentParser
from zoo.registry import ZooError

EPILOG = """\
Recipe overrides (KEY=VALUE, or -o KEY=VALUE) may stand anywhere on a command's line.
Exit status: 0 success, 1 a user error (one line naming the thing and the fix), 2 a usage error,
70 an internal error (please report it; -vv prints the traceback).

Examples:
  zoo demo
  zoo recipes
  zoo info default
  zoo embed default --images ../shared/data/instance-eval --out emb/
"""


def _core_commands() -> list[object]:
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "COMMAND"):
            mods.append(mod)
    return sorted(mods, key=lambda m: m.COMMAND)


def build_parser() -> argparse.ArgumentParser:
    from zoo import __version__
    from zoo.plugins import get_registry

    parser = ZooArgumentParser(
        prog="zoo",
        description="Instance-level recognition and retrieval recipes on one plugin-based core.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    core = set()
    for mod in _core_commands():
        p = sub.add_parser(mod.COMMAND, help=mod.HELP, description=getattr(mod, "__doc__", None) or mod.HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.configure(p)
        core.add(mod.COMMAND)
    registry = get_registry()
    for entry in registry.entries("command"):
        if entry.name in core:
            continue
        p = sub.add_parser(entry.name, help=f"{entry.description} [{entry.owner.name}]")
        entry.factory(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except ZooError as exc:  # strict plugin loading, for example
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except ZooError as exc:
        print(f"zoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"zoo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
