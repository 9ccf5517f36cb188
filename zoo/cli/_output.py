"""Small printing helpers shared by the sub-commands (tables, JSON)."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from typing import Any, Sequence

#: terminal size when stdout is not a terminal (pipes, files): wide enough for most descriptions
FALLBACK_SIZE = (120, 24)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[str], *, wrap_last: bool = False) -> None:
    """Aligned columns under a dashed header; ``wrap_last`` wraps the last column (never cuts it) to the
    terminal width, continuation lines indented under it."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lead = sum(widths[:-1]) + 2 * (len(widths) - 1)
    room = widths[-1]
    if wrap_last:
        room = min(widths[-1], max(30, shutil.get_terminal_size(FALLBACK_SIZE).columns - lead - 1))
        widths[-1] = room
    for n, row in enumerate(cells):
        lines = textwrap.wrap(row[-1], room, break_on_hyphens=False) if wrap_last and n else [row[-1]]
        first = row[:-1] + [lines[0] if lines else ""]
        print("  ".join(c.ljust(w) for c, w in zip(first, widths)).rstrip())
        for more in lines[1:]:
            print(" " * lead + more)
        if n == 0:
            print("  ".join("-" * w for w in widths))
