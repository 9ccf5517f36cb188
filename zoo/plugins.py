"""Plugin loading: entry points -> a fresh pluggy manager -> a filled :class:`Registry`.

Loading is per plugin and isolated. A plugin that fails to import, fails pluggy's validation or
raises inside a hook is rolled back (its entries removed, the plugin unregistered) and reported;
everything else still loads. Switches:

* ``ZOO_STRICT_PLUGINS=1``: the first failure raises :class:`PluginLoadError`.
* ``ZOO_DISABLE_PLUGINS=a,b``: skip these plugins (entry-point or distribution names).
* ``ZOO_LOAD_PLUGINS=a,b``: load only these plugins.

Nothing happens at import time: :func:`get_registry` loads lazily and caches the result for the
process; :func:`load_registry` always builds a fresh manager (what tests use).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import pluggy

from zoo import hookspecs
from zoo.registry import (
    ComponentRegistrar,
    ManifestRegistrar,
    PluginInfo,
    RecipeRegistrar,
    Registry,
    ZooError,
)

ENTRY_POINT_GROUP = "zoo.plugins"


class PluginLoadError(ZooError):
    """Raised in strict mode for the first plugin that failed to load."""


@dataclass
class LoadedPlugin:
    info: PluginInfo
    registered: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.info.name,
            "dist": self.info.dist,
            "version": self.info.version,
            "module": self.info.module,
            "registered": self.registered,
        }


@dataclass
class FailedPlugin:
    name: str
    dist: str | None
    version: str | None
    stage: str
    error: str
    traceback: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dist": self.dist,
            "version": self.version,
            "stage": self.stage,
            "error": self.error,
            "traceback": self.traceback,
        }


@dataclass
class SkippedPlugin:
    name: str
    dist: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dist": self.dist, "reason": self.reason}


@dataclass
class LoadReport:
    """What loading did: plugins loaded (with what they registered), failed and skipped."""

    loaded: list[LoadedPlugin] = field(default_factory=list)
    failed: list[FailedPlugin] = field(default_factory=list)
    skipped: list[SkippedPlugin] = field(default_factory=list)

    def plugin(self, name: str) -> LoadedPlugin | None:
        return next((p for p in self.loaded if p.info.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "loaded": [p.to_dict() for p in self.loaded],
            "failed": [p.to_dict() for p in self.failed],
            "skipped": [p.to_dict() for p in self.skipped],
        }


@dataclass
class Candidate:
    info: PluginInfo
    load: Any  # callable returning the plugin object


def _split_env(name: str) -> set[str]:
    return {v.strip() for v in os.environ.get(name, "").split(",") if v.strip()}


def _norm(name: str | None) -> str:
    return re.sub(r"[-_.]+", "-", name or "").lower()


def discover_entry_points(group: str = ENTRY_POINT_GROUP) -> list[Candidate]:
    """Entry points of ``group``, one per (distribution, name); a distribution seen twice loads once.

    :func:`importlib.metadata.entry_points` already keeps the first of a distribution installed twice
    and reads only ``entry_points.txt`` files; the metadata (name, version) is parsed only for the
    distributions that declare a zoo plugin, which keeps startup fast in large environments.
    """
    out: list[Candidate] = []
    seen: set[tuple[str, str]] = set()
    provenance: dict[Any, tuple[str | None, str | None]] = {}  # one metadata parse per distribution
    for ep in md.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        key = str(getattr(dist, "_path", id(dist)))
        if key not in provenance:
            provenance[key] = (dist.metadata["Name"], dist.version) if dist is not None else (None, None)
        dist_name, version = provenance[key]
        if (_norm(dist_name), ep.name) in seen:
            continue
        seen.add((_norm(dist_name), ep.name))
        out.append(Candidate(PluginInfo(ep.name, dist_name, version, ep.value), ep.load))
    out.sort(key=lambda c: (c.info.dist or "", c.info.name))
    return out


def inline_candidates(plugins: Iterable[Any]) -> list[Candidate]:
    """Plugins given as objects (tests) or ``(name, object)`` pairs, no installation needed."""
    out = []
    for item in plugins:
        name, obj = item if isinstance(item, tuple) else (getattr(item, "__name__", repr(item)), item)
        out.append(Candidate(PluginInfo(name, None, None, getattr(obj, "__name__", None)), lambda o=obj: o))
    return out


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


class PluginHost:
    """Typed wrapper around a pluggy manager that calls each plugin's hooks in isolation."""

    def __init__(self, registry: Registry, pm: pluggy.PluginManager | None = None) -> None:
        self.registry = registry
        self.pm = pm or new_plugin_manager()

    def _call(self, hook_name: str, plugin: Any, **kwargs: Any) -> None:
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        caller = self.pm.subset_hook_caller(hook_name, remove_plugins=others)
        caller(**kwargs)

    def register_components(self, plugin: Any, owner: PluginInfo) -> None:
        for hook_name, kind in hookspecs.COMPONENT_HOOKS.items():
            self._call(hook_name, plugin, registrar=ComponentRegistrar(self.registry, kind, owner))

    def register_recipes(self, plugin: Any, owner: PluginInfo) -> None:
        self._call("zoo_register_recipes", plugin, registrar=RecipeRegistrar(self.registry, owner))

    def register_weight_manifests(self, plugin: Any, owner: PluginInfo) -> None:
        self._call(
            "zoo_register_weight_manifests", plugin, registrar=ManifestRegistrar(self.registry, owner)
        )


def _summarise(registry: Registry, owner: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for entry in registry.entries():
        if entry.owner.name == owner:
            out.setdefault(entry.kind, []).append(entry.name)
    recipes = [n for n, (_, o) in registry.recipe_files.items() if o.name == owner]
    if recipes:
        out["recipe"] = sorted(recipes)
    manifests = [str(p) for p, o in registry.manifest_files if o.name == owner]
    if manifests:
        out["weights_manifest"] = manifests
    return out


def load_registry(
    plugins: Sequence[Any] = (),
    *,
    entry_points: bool = True,
    strict: bool | None = None,
    disable: Iterable[str] | None = None,
    only: Iterable[str] | None = None,
) -> Registry:
    """Build a fresh plugin manager and registry.

    ``plugins`` are inline plugin objects (or ``(name, obj)`` pairs) loaded after the entry points;
    ``strict``/``disable``/``only`` default to ``ZOO_STRICT_PLUGINS``/``ZOO_DISABLE_PLUGINS``/``ZOO_LOAD_PLUGINS``.
    """
    strict = os.environ.get("ZOO_STRICT_PLUGINS", "") not in ("", "0") if strict is None else strict
    disabled = set(disable) if disable is not None else _split_env("ZOO_DISABLE_PLUGINS")
    allowed = set(only) if only is not None else _split_env("ZOO_LOAD_PLUGINS")
    registry = Registry()
    report = LoadReport()
    registry.report = report
    host = PluginHost(registry)
    candidates = (discover_entry_points() if entry_points else []) + inline_candidates(plugins)
    names_seen: set[str] = set()
    for cand in candidates:
        info = cand.info
        keys = {info.name, _norm(info.dist)} | ({info.dist} if info.dist else set())
        if info.name in names_seen:
            report.skipped.append(SkippedPlugin(info.name, info.dist, "a plugin of this name already loaded"))
            continue
        if disabled & keys or {_norm(d) for d in disabled} & keys:
            report.skipped.append(SkippedPlugin(info.name, info.dist, "disabled by ZOO_DISABLE_PLUGINS"))
            continue
        if allowed and not (allowed & keys or {_norm(a) for a in allowed} & keys):
            report.skipped.append(SkippedPlugin(info.name, info.dist, "not listed in ZOO_LOAD_PLUGINS"))
            continue
        stage = "import"
        obj = None
        try:
            obj = cand.load()
            stage = "validate"
            host.pm.register(obj, name=info.name)
            host.pm.check_pending()
            stage = "register"
            host.register_components(obj, info)
            host.register_recipes(obj, info)
            host.register_weight_manifests(obj, info)
        except Exception as exc:  # one broken plugin must never take the others down
            registry.remove_owner(info.name)
            if obj is not None and host.pm.is_registered(obj):
                host.pm.unregister(obj)
            failure = FailedPlugin(
                info.name,
                info.dist,
                info.version,
                stage,
                f"{type(exc).__name__}: {exc}",
                traceback.format_exc(),
            )
            report.failed.append(failure)
            if strict:
                raise PluginLoadError(
                    f"plugin '{info.name}' ({info.dist or 'inline'}) failed at {stage}: {failure.error}. "
                    "Unset ZOO_STRICT_PLUGINS to load the other plugins anyway, or disable it with "
                    f"ZOO_DISABLE_PLUGINS={info.name}."
                ) from exc
            continue
        names_seen.add(info.name)
        report.loaded.append(LoadedPlugin(info, _summarise(registry, info.name)))
    return registry


_DEFAULT: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_registry()
    return _DEFAULT


def reset_registry() -> None:
    """Forget the cached process-wide registry (the next call reloads entry points)."""
    global _DEFAULT
    _DEFAULT = None


def report(registry: Registry | None = None) -> LoadReport:
    """Loaded, failed and skipped plugins with their provenance."""
    return (registry or get_registry()).report
