"""The ``zoo`` command line.

Each core sub-command lives in its own module of this package and exposes ``COMMAND`` (its name),
``HELP`` (one line) and ``configure(parser)`` (which sets ``func``). Plugins add sub-commands
through the ``zoo_register_commands`` hook. Every sub-command has ``--help``; recipe overrides
(``KEY=VALUE``) may stand anywhere on a command's line (:mod:`zoo.cli._parser`); errors are one
line with a documented exit status (:mod:`zoo.cli._errors`); ``-v``/``-q`` set the logging levels
(:mod:`zoo.cli._verbosity`).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

from zoo.cli._errors import EXIT_OK, EXIT_USAGE, report_error
from zoo.cli._options import add_verbosity_args
from zoo.cli._parser import ZooArgumentParser
from zoo.cli._verbosity import configure_logging, hide_progress, verbosity_of

EPILOG = """\
Recipe overrides (KEY=VALUE, or -o KEY=VALUE) may stand anywhere on a command's line.
Exit status: 0 success, 1 a user error (one line naming the thing and the fix), 2 a usage error,
70 an internal error (please report it; -v prints the traceback). -v/-vv: more logging, -q/-qq: less
(and no progress bars), before or after the command name.

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
    add_verbosity_args(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    core = set()
    for mod in _core_commands():
        p = sub.add_parser(mod.COMMAND, help=mod.HELP, description=getattr(mod, "__doc__", None) or mod.HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.configure(p)
        _add_sub_verbosity(p)
        core.add(mod.COMMAND)
    registry = get_registry()
    for entry in registry.entries("command"):
        if entry.name in core:
            continue
        p = sub.add_parser(entry.name, help=f"{entry.description} [{entry.owner.name}]")
        entry.factory(p)
        _add_sub_verbosity(p)
    return parser


def _add_sub_verbosity(p: argparse.ArgumentParser) -> None:
    """``-v``/``-q`` after the command name too (``zoo train ... -v``), unless the command uses them."""
    if not any(o in p._option_string_actions for o in ("-v", "-q", "--verbose", "--quiet")):
        add_verbosity_args(p, dest_prefix="sub_")
    for action in p._actions:  # nested sub-commands (zoo weights list ... -v)
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_sub_verbosity(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zoo`` command; returns the exit status (see :mod:`zoo.cli._errors`)."""
    verbosity = _early_verbosity(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
    except Exception as exc:  # strict plugin loading, for example
        return report_error(exc, None, verbosity)
    args = parser.parse_args(argv)  # usage errors exit 2 (argparse)
    verbosity = verbosity_of(args)
    configure_logging(verbosity)
    if verbosity < 0:
        hide_progress(args)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_OK if args.command is None else EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # zoo recipes | head
        sys.stderr.close()
        return EXIT_OK
    except (Exception, KeyboardInterrupt) as exc:
        return report_error(exc, args.command, verbosity)


def _early_verbosity(argv: Sequence[str]) -> int:
    """``-v``/``-q`` counted before parsing (for errors while the parser is built)."""
    count = 0
    for token in argv:
        if token in ("--verbose", "--quiet"):
            count += 1 if token == "--verbose" else -1
        elif token.startswith("-") and not token.startswith("--") and set(token[1:]) <= {"v", "q"}:
            count += token.count("v") - token.count("q")
    return count


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
