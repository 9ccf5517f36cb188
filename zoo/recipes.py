"""Recipes: named OmegaConf configs contributed by plugins, with ``extends`` and checked overrides.

A recipe is a YAML file. ``extends: <base recipe>`` merges it over its base (chains allowed).
``requires_plugins: ["dist>=1.0"]`` is checked against the loaded plugins. Overrides are OmegaConf
dotlists (``train.lr=1e-4``); an unknown key is an error naming close matches; ``+key=value`` adds a
new key on purpose. Component references are registry names (``type: gem``), never import paths.

A **component** is a mapping with a ``type`` key (``model.pooling: {type: gem, p: 3}``). Its other
keys are that type's arguments, so a layer (``extends``) or an override that changes the ``type``
*replaces* the component instead of merging into it: ``model.pooling.type=avg`` gives
``{type: avg}``, not ``{type: avg, p: 3}``; arguments for the new type follow as further overrides
(``model.pooling.type=gem model.pooling.p=4``). Only the slot's own contract keys survive the swap
(:data:`SLOT_KEYS`: a head keeps ``num_classes``). Layers that keep the type are merged key by key.
"""

from __future__ import annotations

import copy
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

#: keys of a component slot that every type in it takes; they survive a change of ``type``
SLOT_KEYS: dict[str, tuple[str, ...]] = {
    "model.head": ("num_classes",),  # the class count belongs to the data, not to one head type
}
RECIPE_SUFFIXES = (".yaml", ".yml")


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


def is_recipe_file(name: str | Path) -> bool:
    """A recipe given as a YAML file (``my-recipe.yaml``) rather than a registered name."""
    return Path(name).suffix in RECIPE_SUFFIXES and Path(name).is_file()


def _load_raw(name: str, registry: Registry, chain: tuple[str, ...] = ()) -> DictConfig:
    if name in chain:
        raise RecipeError(f"recipe '{name}' extends itself: {' -> '.join((*chain, name))}")
    path = Path(name) if is_recipe_file(name) else recipe_path(name, registry)
    try:
        cfg = OmegaConf.load(path)
    except Exception as exc:
        raise RecipeError(f"recipe '{name}' ({path}) is not valid YAML: {exc}") from exc
    if not isinstance(cfg, DictConfig):
        raise RecipeError(f"recipe '{name}' ({path}) must be a mapping at the top level")
    return _extend(cfg, registry, (*chain, name))


def _extend(cfg: DictConfig, registry: Registry, chain: tuple[str, ...]) -> DictConfig:
    """``cfg`` merged over the recipes its ``extends`` names (popped), in order."""
    base = cfg.pop("extends", None)
    if not base:
        return cfg
    bases = [base] if isinstance(base, str) else list(base)
    return merge_layers(*[_load_raw(str(b), registry, chain) for b in bases], cfg)


def component_type(node: Any) -> Any:
    """The raw ``type`` of a component mapping (interpolations unresolved); ``...`` when it has none."""
    if isinstance(node, DictConfig) and "type" in node:
        return node._get_node("type")._value()  # type: ignore[union-attr]
    return ...


def _raw(node: Any) -> Any:
    """A config node's value as written (interpolations kept as ``${...}`` strings)."""
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=False)
    return node._value()


def merge_layers(*layers: DictConfig) -> DictConfig:
    """``OmegaConf.merge`` of recipe layers, except that a component whose ``type`` a later layer
    changes is replaced by that layer's component (plus its :data:`SLOT_KEYS`), not merged."""
    result = layers[0]
    for layer in layers[1:]:
        base = copy.deepcopy(result)
        OmegaConf.set_struct(base, False)
        _drop_replaced(base, layer, "")
        result = OmegaConf.merge(base, layer)
    return result


def _drop_replaced(base: DictConfig, layer: DictConfig, prefix: str) -> None:
    for key in layer.keys():
        if key not in base:
            continue
        old, new = base._get_node(key), layer._get_node(key)
        if not isinstance(old, DictConfig) or not isinstance(new, DictConfig):
            continue
        path = f"{prefix}.{key}" if prefix else str(key)
        if component_type(new) is not ... and component_type(old) not in (..., component_type(new)):
            kept = {k: _raw(old._get_node(k)) for k in SLOT_KEYS.get(path, ()) if k in old}
            base[key] = {"type": _raw(new._get_node("type")), **kept}
        else:
            _drop_replaced(old, new, path)


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
    replaced: list[str] = []  # components whose type an override changed: their new arguments may be added
    OmegaConf.set_struct(cfg, False)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override '{item}' for {what} is not of the form key=value")
        key, text = (part.strip() for part in item.split("=", 1))
        add = key.startswith("+")
        key = key.lstrip("+")
        add = add or any(key.startswith(f"{p}.") for p in replaced)
        if not add and key not in known:
            hints = close_matches(key, known)
            raise RecipeError(
                f"unknown override key '{key}' for {what}."
                + (f" Close matches: {', '.join(hints)}." if hints else "")
                + f" Use '+{key}=...' to add a new key; see the keys with: zoo info {what} --keys"
            )
        value = parse_override_value(item, text, what)
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent, default=None) if leaf == "type" and parent else None
        try:
            if component_type(node) not in (..., value):  # a new type: a new component, not a merge
                kept = {k: _raw(node._get_node(k)) for k in SLOT_KEYS.get(parent, ()) if k in node}
                OmegaConf.update(cfg, parent, {"type": value, **kept}, merge=False)
                replaced.append(parent)
                known = set(flat_keys(cfg))
                continue
            OmegaConf.update(cfg, key, value, merge=False, force_add=add)
        except Exception as exc:
            raise RecipeError(f"override '{item}' for {what} cannot be applied: {_first_line(exc)}") from exc
        known.update(flat_keys(cfg))
    return cfg


def parse_override_value(item: str, text: str, what: str = "recipe") -> Any:
    """The value of ``key=text`` as OmegaConf reads it (YAML: numbers, lists, mappings, null)."""
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist([f"v={text}"]), resolve=False)["v"]
    except Exception as exc:
        raise RecipeError(
            f"override '{item}' for {what}: cannot read the value '{text}' ({_first_line(exc)}). Values are "
            "YAML: 3, 1e-4, true, null, [1, 2], {type: gem, p: 3}; quote the whole override for the shell, "
            "e.g. 'model.pooling={type: gem, p: 3}'"
        ) from None


def _first_line(exc: BaseException) -> str:
    """The first line of an (OmegaConf) error message, without its full_key/object_type trailer."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


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
    """The resolved recipe ``name`` with dotlist ``overrides`` applied.

    ``name`` is a registered recipe or a YAML file (``my-recipe.yaml``; its ``extends`` names
    registered recipes, its name is the file's stem).
    """
    reg = _registry(registry)
    cfg = _load_raw(str(name), reg)
    OmegaConf.set_struct(cfg, False)
    name = Path(name).stem if is_recipe_file(name) else str(name)
    cfg.name = name
    cfg = apply_overrides(cfg, overrides, what=name)
    cfg.name = name
    check_required_plugins(cfg, reg)
    check_components(cfg, reg)
    return cfg
