"""Exit status and the one-line error report of the ``zoo`` command.

* ``0`` success; ``1`` a user error (:class:`~zoo.registry.ZooError`, or an input/output file the
  user can fix); ``2`` a usage error (argparse: unknown option, missing argument);
  ``70`` an internal error (an unexpected exception: a bug in zoo or a plugin, to be reported);
  ``130`` interrupted (Ctrl-C).
* Every error is one line on stderr; ``-v`` adds the full traceback.
"""

from __future__ import annotations

import errno
import sys
import traceback

from zoo.atomic import WRITE_ERRNOS
from zoo.registry import ZooError

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE (sysexits.h)
EXIT_INTERRUPTED = 130

#: OSErrors about a named file that the user can fix (a missing input, a read-only or full output)
USER_OS_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, *WRITE_ERRNOS}
ISSUES_URL = "the zoo issue tracker (or the plugin's, when the traceback ends in a plugin)"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def report_error(exc: BaseException, command: str | None, verbosity: int) -> int:
    """Print ``exc`` as one line (and its traceback with ``-v``); returns the exit status."""
    where = f"zoo {command}" if command else "zoo"
    if isinstance(exc, KeyboardInterrupt):
        print(f"{where}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if verbosity >= 1:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, ZooError):
        print(f"{where}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    if isinstance(exc, OSError) and exc.errno in USER_OS_ERRNOS and exc.filename:
        print(f"{where}: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(
        f"{where}: internal error: {type(exc).__name__}: {_first_line(exc)}\n"
        f"This is a bug; please report it to {ISSUES_URL} with the command line"
        + (" and the traceback above." if verbosity >= 1 else " and the traceback that -v prints."),
        file=sys.stderr,
    )
    return EXIT_INTERNAL
