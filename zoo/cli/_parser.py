"""The ``zoo`` argument parser: recipe overrides ``key=value`` are accepted anywhere on the line.

Every command that takes a recipe has an ``overrides`` option (added by
:func:`zoo.cli._options.add_override_args`: ``-o KEY=VALUE``, with ``--override`` and ``--set`` as
aliases). On such a parser a bare ``key=value`` token is an override too, wherever it stands:
before or after the recipe, between options, at the end::

    zoo train default-finetune --data train.csv --out runs/ft train.epochs=3 --device cpu

Overrides are kept in the order they were written (a later one wins). A token is a bare override
when it looks like a dotted config key followed by ``=`` (``train.lr=1e-4``, ``model.head.0.k=3``,
``+model.new_key=1``) and is not the value of an option (``--data full=train.csv`` stays the value
of ``--data``). Everything else is parsed by :mod:`argparse` as usual.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Sequence

#: ``key=...`` where key is a dotted config path (``+`` adds a new key); never a path or an option
OVERRIDE_TOKEN = re.compile(r"^\+?[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*=")
OVERRIDES_DEST = "overrides"


def is_override_token(token: str) -> bool:
    """True for a bare recipe override such as ``train.epochs=3`` or ``+model.extra=1``."""
    return bool(OVERRIDE_TOKEN.match(token))


def _option_action(parser: argparse.ArgumentParser, token: str) -> tuple[argparse.Action | None, str | None]:
    """The option action ``token`` names (exact, ``--opt=value``, ``-kVALUE`` or a unique ``--prefix``)."""
    table = parser._option_string_actions  # argparse keeps no public view of its option table
    if not token.startswith("-") or token == "-":
        return None, None
    if token in table:
        return table[token], None
    if token.startswith("--"):
        name, eq, value = token.partition("=")
        if name in table:
            return table[name], value if eq else None
        if parser.allow_abbrev:
            hits = {table[o] for o in table if o.startswith("--") and o.startswith(name)}
            if len(hits) == 1:
                return hits.pop(), value if eq else None
        return None, None
    short = token[:2]
    if short in table and table[short].nargs != 0:
        return table[short], token[2:].lstrip("=")
    return (table[short], None) if short in table else (None, None)


def _values_taken(action: argparse.Action) -> int | None:
    """How many following tokens ``action`` consumes: 0, a fixed count, or None (a variable number)."""
    nargs = action.nargs
    if nargs is None:
        return 1
    if isinstance(nargs, int):
        return nargs
    if nargs == argparse.OPTIONAL:
        return 1
    return None


def split_overrides(parser: argparse.ArgumentParser, args: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(overrides, rest)``: the recipe overrides on the line, in order, and everything else.

    Collects the values of the ``overrides`` option (``-o X``, ``--set=X``) and the bare ``key=value``
    tokens that are not the value of another option; tokens after ``--`` are left alone.
    """
    overrides: list[str] = []
    rest: list[str] = []
    i, n = 0, len(args)
    while i < n:
        token = args[i]
        if token == "--":
            rest.extend(args[i:])
            break
        action, explicit = _option_action(parser, token)
        if action is not None and action.dest == OVERRIDES_DEST:
            if explicit:
                overrides.append(explicit)
                i += 1
            elif i + 1 < n:
                overrides.append(args[i + 1])
                i += 2
            else:  # argparse reports the missing value
                rest.append(token)
                i += 1
            continue
        rest.append(token)
        i += 1
        if action is None:
            if is_override_token(token):
                overrides.append(rest.pop())
            continue
        taken = _values_taken(action) if explicit is None else 0
        if action.nargs == argparse.OPTIONAL and i < n and (args[i].startswith("-") or is_override_token(args[i])):
            taken = 0
        for _ in range(taken or 0):
            if i < n:
                rest.append(args[i])
                i += 1
    return overrides, rest


class ZooArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose recipe overrides may stand anywhere on the line."""

    def accepts_overrides(self) -> bool:
        return any(a.dest == OVERRIDES_DEST and a.option_strings for a in self._actions)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if not self.accepts_overrides():
            return super().parse_known_args(args, namespace)
        overrides, rest = split_overrides(self, list(sys.argv[1:] if args is None else args))
        ns, extras = super().parse_known_args(rest, namespace)
        setattr(ns, OVERRIDES_DEST, overrides)
        return ns, extras
