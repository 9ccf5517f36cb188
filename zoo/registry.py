"""Component registry: typed registrars handed to plugin hooks, and the registry they fill.

Every entry records the plugin that owns it (plugin name, distribution, version). Registering a
name twice raises :class:`DuplicateComponentError` naming both owners; looking up an unknown name
raises :class:`UnknownComponentError` with close matches and the plugins that failed to load.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

KINDS: tuple[str, ...] = (
    "backbone",
    "pooling",
    "neck",
    "head",
    "loss",
    "sampler",
    "augmentation",
    "optimizer",
    "param_groups",
    "scheduler",
    "postprocessor",
    "ensemble",
    "metric",
    "converter",
    "detector",
    "command",
)


class ZooError(Exception):
    """Base class of zoo's user-facing errors."""


class DuplicateComponentError(ZooError):
    """A plugin registered a name that another plugin (or itself) already owns."""


class UnknownComponentError(ZooError, KeyError):
    """A registry name that no loaded plugin registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class PluginInfo:
    """Provenance of a plugin: its entry-point name, distribution and version."""

    name: str
    dist: str | None = None
    version: str | None = None
    module: str | None = None

    def describe(self) -> str:
        where = f"{self.dist} {self.version}" if self.dist else "inline"
        return f"plugin '{self.name}' ({where})"


@dataclass(frozen=True)
class Entry:
    """One registered component: a factory plus its provenance."""

    kind: str
    name: str
    factory: Callable[..., Any]
    owner: PluginInfo
    description: str = ""
    aliases: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        return self.factory(*args, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.owner.name,
            "dist": self.owner.dist,
            "version": self.owner.version,
            "description": self.description,
            "aliases": list(self.aliases),
        }


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``b10`` after ``b9``."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", text.lower())]


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    candidates = list(candidates)
    hits = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    hits += [c for c in candidates if name and name.lower() in c.lower() and c not in hits]
    return hits[:n]


class Registry:
    """All components, recipe sources and weight manifests contributed by the loaded plugins."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._aliases: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        self.recipe_files: dict[str, tuple[Path, PluginInfo]] = {}
        self.manifest_files: list[tuple[Path, PluginInfo]] = []
        self.report: Any = None  # a zoo.plugins.LoadReport once loading finished

    # -- writing (through registrars) -------------------------------------------------
    def _add(self, entry: Entry) -> None:
        table = self._entries.setdefault(entry.kind, {})
        aliases = self._aliases.setdefault(entry.kind, {})
        for name in (entry.name, *entry.aliases):
            holder = table.get(name) or table.get(aliases.get(name, ""))
            if holder is not None:
                raise DuplicateComponentError(
                    f"{entry.kind} '{name}' registered twice: by {holder.owner.describe()} and by "
                    f"{entry.owner.describe()}. Rename one of them or disable a plugin with "
                    f"ZOO_DISABLE_PLUGINS={entry.owner.name}."
                )
        table[entry.name] = entry
        for alias in entry.aliases:
            aliases[alias] = entry.name

    def _add_recipe(self, name: str, path: Path, owner: PluginInfo) -> None:
        if name in self.recipe_files:
            holder = self.recipe_files[name][1]
            raise DuplicateComponentError(
                f"recipe '{name}' registered twice: by {holder.describe()} ({self.recipe_files[name][0]}) "
                f"and by {owner.describe()} ({path})."
            )
        self.recipe_files[name] = (path, owner)

    def remove_owner(self, owner_name: str) -> None:
        """Roll back everything one plugin registered (used when its hook fails)."""
        for kind, table in self._entries.items():
            for name in [n for n, e in table.items() if e.owner.name == owner_name]:
                del table[name]
            self._aliases[kind] = {a: n for a, n in self._aliases[kind].items() if n in table}
        self.recipe_files = {n: v for n, v in self.recipe_files.items() if v[1].name != owner_name}
        self.manifest_files = [v for v in self.manifest_files if v[1].name != owner_name]

    # -- reading ----------------------------------------------------------------------
    def kinds(self) -> list[str]:
        return list(self._entries)

    def entries(self, kind: str | None = None) -> list[Entry]:
        kinds = [kind] if kind else list(self._entries)
        out = []
        for k in kinds:
            self._check_kind(k)
            out.extend(self._entries[k].values())
        return out

    def names(self, kind: str | None = None, pattern: str = "*") -> list[str]:
        names = {e.name for e in self.entries(kind) if fnmatch.fnmatchcase(e.name, pattern)}
        return sorted(names, key=natural_key)

    def has(self, kind: str, name: str) -> bool:
        self._check_kind(kind)
        return name in self._entries[kind] or name in self._aliases[kind]

    def get(self, kind: str, name: str) -> Entry:
        self._check_kind(kind)
        table = self._entries[kind]
        name = self._aliases[kind].get(name, name)
        if name in table:
            return table[name]
        hints = close_matches(name, table)
        msg = f"unknown {kind} '{name}'."
        if hints:
            msg += f" Close matches: {', '.join(hints)}."
        else:
            msg += f" Registered ({kind}): {', '.join(sorted(table, key=natural_key)) or 'none'}."
        msg += self.failed_plugins_hint()
        msg += f" List them with: zoo components {kind}"
        raise UnknownComponentError(msg)

    def create(self, kind: str, name: str, /, *args: Any, **kwargs: Any) -> Any:
        return self.get(kind, name).create(*args, **kwargs)

    def failed_plugins_hint(self) -> str:
        failed = getattr(self.report, "failed", None) or []
        if not failed:
            return ""
        items = "; ".join(f"{f.name}: {f.error}" for f in failed)
        return f" Plugins that failed to load (see `zoo plugins`): {items}."

    def _check_kind(self, kind: str) -> None:
        if kind not in self._entries:
            hints = close_matches(kind, self._entries)
            raise UnknownComponentError(
                f"unknown component kind '{kind}'. Kinds: {', '.join(self._entries)}."
                + (f" Did you mean: {', '.join(hints)}?" if hints else "")
            )


class ComponentRegistrar:
    """Handed to a ``zoo_register_<kind>s`` hook; records every entry under its owner plugin."""

    def __init__(self, registry: Registry, kind: str, owner: PluginInfo) -> None:
        self._registry = registry
        self.kind = kind
        self.owner = owner

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        description: str | None = None,
        aliases: Iterable[str] = (),
        **meta: Any,
    ) -> Callable[..., Any]:
        """Register ``factory`` under ``name``; returns the factory so it can be used as a decorator."""
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.owner.describe()}: a {self.kind} name must be a non-empty string")
        if not callable(factory):
            raise TypeError(f"{self.owner.describe()}: {self.kind} '{name}' factory is not callable")
        doc = description if description is not None else (factory.__doc__ or "").strip().split("\n")[0]
        entry = Entry(self.kind, name, factory, self.owner, doc, tuple(aliases), dict(meta))
        self._registry._add(entry)
        return factory

    def __call__(self, name: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
            return self.add(name, factory, **kw)

        return deco


class RecipeRegistrar:
    """Handed to ``zoo_register_recipes``: YAML recipe files or folders of them."""

    def __init__(self, registry: Registry, owner: PluginInfo) -> None:
        self._registry = registry
        self.owner = owner

    def add_file(self, path: str | Path, name: str | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{self.owner.describe()}: recipe file {path} does not exist")
        self._registry._add_recipe(name or path.stem, path, self.owner)

    def add_directory(self, path: str | Path, pattern: str = "*.yaml") -> None:
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{self.owner.describe()}: recipe folder {path} does not exist")
        for file in sorted(path.rglob(pattern)):
            self.add_file(file)


class ManifestRegistrar:
    """Handed to ``zoo_register_weight_manifests``: weight manifest YAML files."""

    def __init__(self, registry: Registry, owner: PluginInfo) -> None:
        self._registry = registry
        self.owner = owner

    def add_file(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{self.owner.describe()}: weights manifest {path} does not exist")
        self._registry.manifest_files.append((path, self.owner))
