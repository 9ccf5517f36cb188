"""Show loaded, failed and skipped plugins with their provenance and what each registered.

Examples:
  zoo plugins
  zoo plugins --json
"""

from __future__ import annotations

import argparse

COMMAND = "plugins"
HELP = "show plugins: name, distribution, version, what each registered, or its error"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--errors", action="store_true", help="show full tracebacks of failed plugins")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoo.cli._output import print_json
    from zoo.plugins import report

    rep = report()
    if args.json:
        print_json(rep.to_dict())
        return 0
    for p in rep.loaded:
        print(f"{p.info.name}  ({p.info.dist or 'inline'} {p.info.version or ''})  {p.info.module or ''}")
        for kind, names in sorted(p.registered.items()):
            shown = ", ".join(names[:12]) + (f", ... ({len(names)})" if len(names) > 12 else "")
            print(f"    {kind}: {shown}")
    for f in rep.failed:
        print(f"FAILED {f.name}  ({f.dist or 'inline'} {f.version or ''}) at {f.stage}: {f.error}")
        if args.errors:
            print("    " + f.traceback.replace("\n", "\n    "))
    for s in rep.skipped:
        print(f"skipped {s.name}  ({s.dist or 'inline'}): {s.reason}")
    return 0
