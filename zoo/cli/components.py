"""List registered components, optionally of one KIND and matching PATTERN.

Examples:
  zoo components
  zoo components backbone 'tf_*'
  zoo components postprocessor --json
"""

from __future__ import annotations

import argparse

COMMAND = "components"
HELP = "list registered components: zoo components [KIND] [PATTERN]"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", nargs="?", default=None, help="component kind (backbone, head, loss, ...)")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern (default: *)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import fnmatch

    from zoo.cli._output import print_json, print_table
    from zoo.plugins import get_registry
    from zoo.registry import natural_key

    reg = get_registry()
    entries = [e for e in reg.entries(args.kind) if fnmatch.fnmatchcase(e.name, args.pattern)]
    entries.sort(key=lambda e: (e.kind, natural_key(e.name)))
    if args.json:
        print_json([e.to_dict() for e in entries])
    else:
        print_table([(e.kind, e.name, e.owner.name, e.description) for e in entries],
                    ("kind", "name", "plugin", "description"), wrap_last=True)
    return 0 if entries else 1
