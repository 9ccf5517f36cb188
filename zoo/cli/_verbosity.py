"""``-v`` / ``-q``: logging levels and progress bars of the ``zoo`` command.

=========  ==================================  ===============  =============
verbosity  zoo's own loggers (``zoo.*``)        other libraries  progress bars
=========  ==================================  ===============  =============
``-qq``    errors                              errors           hidden
``-q``     warnings                            warnings         hidden
(none)     info (what a command does)          warnings         shown
``-v``     debug, tracebacks of errors         warnings         shown
``-vv``    debug                               debug            shown
=========  ==================================  ===============  =============
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


def verbosity_of(args: argparse.Namespace) -> int:
    """``-v`` count minus ``-q`` count, given before or after the command name."""
    up = (getattr(args, "verbose", 0) or 0) + (getattr(args, "sub_verbose", 0) or 0)
    down = (getattr(args, "quiet", 0) or 0) + (getattr(args, "sub_quiet", 0) or 0)
    return up - down


class LevelByOrigin(logging.Filter):
    """Passes zoo's records (``zoo``, ``zoo.*``, plugin packages ``zoo_*``) from ``own`` up, others from ``other``."""

    def __init__(self, own: int, other: int) -> None:
        super().__init__()
        self.own, self.other = own, other

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        mine = name == "zoo" or name.startswith(("zoo.", "zoo_"))
        return record.levelno >= (self.own if mine else self.other)


def levels(verbosity: int) -> tuple[int, int]:
    """``(zoo's level, other libraries' level)`` for a verbosity (see the table above)."""
    own = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(max(-2, min(verbosity, 1)), logging.DEBUG)
    other = logging.DEBUG if verbosity >= 2 else logging.ERROR if verbosity <= -2 else logging.WARNING
    return own, other


class StderrHandler(logging.StreamHandler):
    """A stream handler writing to the *current* ``sys.stderr`` (tests and tools swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: D102 - always the current sys.stderr
        pass


def configure_logging(verbosity: int) -> None:
    """Install (or replace) the ``zoo`` command's stderr handler on the root logger; other handlers stay."""
    own, other = levels(verbosity)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(old)
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(LevelByOrigin(own, other))
    root.addHandler(handler)
    root.setLevel(min(own, other))


def hide_progress(args: argparse.Namespace) -> None:
    """``-q``: no progress bars (the commands' ``--no-progress`` and the downloads' ``ZOO_NO_PROGRESS``)."""
    if hasattr(args, "no_progress"):
        args.no_progress = True
    os.environ["ZOO_NO_PROGRESS"] = "1"
