"""Recipes: named OmegaConf configs contributed by plugins, with ``extends`` and checked overrides.

A recipe is a YAML file. ``extends: <base recipe>`` merges it over its base (chains allowed).
``requires_plugins: ["dist>=1.0"]`` is checked against the loaded plugins. Overrides are OmegaConf
dotlists (``train.lr=1e-4``); an unknown key is an error naming close matches; ``+key=value`` adds a
new key on purpose. Component references are registry names (``type: gem``), never import paths.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

from zoo.registry import Registry, UnknownComponentError, ZooError, close_matches, natural_key

#: config paths holding a component reference, and the kind it must be registered as
MODEL_COMPONENT_PATHS: dict[str, str] = {
    "model.backbone": "backbone",
    "model.pooling": "pooling",
    "model.neck": "neck",
    "model.head": "head",
    "loss": "loss",
}


class RecipeError(ZooError):
    """A recipe that cannot be resolved: bad overrides, missing plugins, cycles."""


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from zoo.plugins import get_registry

    return get_registry()


def list_recipes(pattern: str = "*", registry: Registry | None = None) -> list[str]:
    """Recipe names matching an fnmatch ``pattern``, naturally sorted.

    Names starting with ``_`` are base recipes (shared sections that others ``extends``); they are
    listed only when the pattern itself starts with ``_``.
    """
    names = _registry(registry).recipe_files
    hidden = not pattern.startswith("_")
    return sorted(
        (n for n in names if fnmatch.fnmatchcase(n, pattern) and not (hidden and n.startswith("_"))),
        key=natural_key,
    )


def recipe_path(name: str, registry: Registry | None = None) -> Path:
    reg = _registry(registry)
    if name not in reg.recipe_files:
        hints = close_matches(name, reg.recipe_files)
        msg = f"unknown recipe '{name}'."
        msg += f" Close matches: {', '.join(hints)}." if hints else " List them with: zoo recipes"
        msg += reg.failed_plugins_hint()
        raise UnknownComponentError(msg)
    return reg.recipe_files[name][0]


def _load_raw(name: str, registry: Registry, chain: tuple[str, ...] = ()) -> DictConfig:
    if name in chain:
        raise RecipeError(f"recipe '{name}' extends itself: {' -> '.join((*chain, name))}")
    path = recipe_path(name, registry)
    try:
        cfg = OmegaConf.load(path)
    except Exception as exc:
        raise RecipeError(f"recipe '{name}' ({path}) is not valid YAML: {exc}") from exc
    if not isinstance(cfg, DictConfig):
        raise RecipeError(f"recipe '{name}' ({path}) must be a mapping at the top level")
    base = cfg.pop("extends", None)
    if base:
        bases = [base] if isinstance(base, str) else list(base)
        merged = OmegaConf.merge(*[_load_raw(b, registry, (*chain, name)) for b in bases], cfg)
        cfg = merged  # type: ignore[assignment]
    return cfg


def flat_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config (lists indexed), for override checks and ``zoo info``."""
    out: list[str] = []
    if isinstance(cfg, DictConfig):
        items: Iterable[tuple[Any, Any]] = ((k, cfg._get_node(k)) for k in cfg.keys())
    elif isinstance(cfg, ListConfig):
        items = ((i, cfg._get_node(i)) for i in range(len(cfg)))
    else:
        return out
    for key, node in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        out.append(path)
        if isinstance(node, (DictConfig, ListConfig)):
            out.extend(flat_keys(node, path))
    return out


def apply_overrides(cfg: DictConfig, overrides: Iterable[str], what: str = "recipe") -> DictConfig:
    """Apply ``key=value`` dotlist overrides (list items by index: ``a.0.b=1``).

    Unknown keys raise with close matches; ``+key=value`` adds a new key on purpose.
    """
    overrides = list(overrides)
    if not overrides:
        return cfg
    known = set(flat_keys(cfg))
    OmegaConf.set_struct(cfg, False)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override '{item}' for {what} is not of the form key=value")
        key, text = (part.strip() for part in item.split("=", 1))
        add = key.startswith("+")
        key = key.lstrip("+")
        if not add and key not in known:
            hints = close_matches(key, known)
            raise RecipeError(
                f"unknown override key '{key}' for {what}."
                + (f" Close matches: {', '.join(hints)}." if hints else "")
                + f" Use '+{key}=...' to add a new key; see the keys with: zoo info {what}"
            )
        try:
            value = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={text}"]), resolve=False)["v"]
            OmegaConf.update(cfg, key, value, merge=False, force_add=add)
        except Exception as exc:
            raise RecipeError(f"override '{item}' for {what} cannot be applied: {exc}") from exc
        known.update(flat_keys(cfg))
    return cfg


def check_required_plugins(cfg: DictConfig, registry: Registry) -> None:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    reqs = cfg.get("requires_plugins") or []
    if not reqs:
        return
    report = registry.report
    have: dict[str, str | None] = {}
    for plugin in report.loaded if report else []:
        have[canonicalize_name(plugin.info.name)] = plugin.info.version
        if plugin.info.dist:
            have[canonicalize_name(plugin.info.dist)] = plugin.info.version
    missing = []
    for text in reqs:
        try:
            req = Requirement(str(text))
        except InvalidRequirement as exc:
            raise RecipeError(f"recipe '{cfg.get('name')}': bad requires_plugins entry '{text}': {exc}")
        key = canonicalize_name(req.name)
        if key not in have:
            missing.append(f"{text} (not installed)")
        elif req.specifier and (have[key] is None or not req.specifier.contains(have[key], prereleases=True)):
            missing.append(f"{text} (found {have[key]})")
    if missing:
        raise RecipeError(
            f"recipe '{cfg.get('name')}' requires plugins: {', '.join(missing)}. "
            f"Install them (pip install ...) and check with: zoo plugins.{registry.failed_plugins_hint()}"
        )


def check_components(cfg: DictConfig, registry: Registry) -> None:
    """Every ``type:`` under a known component path must be a registered name."""
    for path, kind in MODEL_COMPONENT_PATHS.items():
        node = OmegaConf.select(cfg, path, default=None)
        if isinstance(node, DictConfig) and node.get("type") is not None:
            registry.get(kind, str(node.type))


def get_recipe(
    name: str, overrides: Iterable[str] = (), registry: Registry | None = None
) -> DictConfig:
    """The resolved recipe ``name`` with dotlist ``overrides`` applied."""
    reg = _registry(registry)
    cfg = _load_raw(name, reg)
    OmegaConf.set_struct(cfg, False)
    cfg.name = name
    cfg = apply_overrides(cfg, overrides, what=name)
    cfg.name = name
    check_required_plugins(cfg, reg)
    check_components(cfg, reg)
    return cfg
