"""Component registry: typed registrars handed to plugin hooks, and the registry they fill.

Every entry records the plugin that owns it (plugin name, distribution, version). Registering a
name twice raises :class:`DuplicateComponentError` naming both owners; looking up an unknown name
raises :class:`UnknownComponentError` with close matches and the plugins that failed to load.

Registration is cheap: a factory may be given as a ``"module:attribute"`` reference, imported the
first time the component is built (:attr:`Entry.factory`), so listing components, recipes and
plugins never imports torch, timm or open_clip. Registration metadata is limited to
:data:`META_KEYS`; a misspelt key is an error naming the close matches.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Union

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


class RegistrationError(ZooError, ValueError):
    """A plugin registered something malformed: a bad name, factory reference or metadata key."""


class ComponentImportError(ZooError, ImportError):
    """A lazily referenced factory (``"module:attribute"``) that cannot be imported when it is built."""


#: a factory, or a ``"package.module:attribute"`` reference to one (imported on first use)
FactoryRef = Union[Callable[..., Any], str]
_REFERENCE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


@dataclass(frozen=True)
class MetaKey:
    """A registration metadata key: what it means, the kinds it applies to, its allowed values."""

    doc: str
    kinds: tuple[str, ...] = ()  # empty: every kind
    values: tuple[Any, ...] = ()  # empty: any value


#: every metadata key ``registrar.add(name, factory, KEY=value)`` accepts (``entry.meta[KEY]``)
META_KEYS: dict[str, MetaKey] = {
    "role": MetaKey("which contract of its kind the entry follows: an index sampler or a record re-balancer; "
                    "a per-image pipeline or a batch mixer", ("sampler", "augmentation"),
                    ("sampler", "resample", "pipeline", "batch")),
    "produces": MetaKey("what a post-processor returns", ("postprocessor",), ("recognition", "ranking")),
    "input": MetaKey("what a metric scores", ("metric",), ("recognition", "ranking")),
    "output": MetaKey("what a head returns (default: cosine)", ("head",), ("cosine", "logits")),
    "target": MetaKey("what a converter's state dict is for (default: the whole model)", ("converter",),
                      ("model", "backbone")),
    "system": MetaKey("the seed system the component reproduces, e.g. glr2021-1st"),
    "test_kwargs": MetaKey("keyword arguments for a tiny CPU build in the contract tests"),
    "test_num_classes": MetaKey("class count the contract tests use with test_kwargs", ("loss", "head")),
    "test_input_size": MetaKey("input size the contract tests feed the backbone (default: 64)", ("backbone",)),
}


def check_meta(kind: str, name: str, meta: dict[str, Any], owner: "PluginInfo") -> None:
    """Raise :class:`RegistrationError` for a metadata key that is unknown, of another kind or has a bad value."""
    for key, value in meta.items():
        spec = META_KEYS.get(key)
        where = f"{owner.describe()}: {kind} '{name}'"
        if spec is None:
            hints = close_matches(key, META_KEYS)
            raise RegistrationError(
                f"{where}: unknown metadata key '{key}'."
                + (f" Did you mean: {', '.join(hints)}?" if hints else "")
                + f" Accepted keys: {', '.join(META_KEYS)} (see zoo.registry.META_KEYS)."
            )
        if spec.kinds and kind not in spec.kinds:
            raise RegistrationError(f"{where}: metadata key '{key}' applies to {', '.join(spec.kinds)} only")
        if spec.values and value not in spec.values:
            raise RegistrationError(
                f"{where}: {key}={value!r} is not one of {', '.join(map(repr, spec.values))}"
            )


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
    """One registered component: a factory (or its ``"module:attribute"`` reference) plus its provenance."""

    kind: str
    name: str
    ref: FactoryRef
    owner: PluginInfo
    description: str = ""
    aliases: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    _factory: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def factory(self) -> Callable[..., Any]:
        """The factory; a reference is imported on first use and cached."""
        if callable(self.ref):
            return self.ref
        if self._factory is None:
            object.__setattr__(self, "_factory", self._import())
        return self._factory

    @property
    def reference(self) -> str:
        """``module:qualname`` of the factory (without importing a lazy one)."""
        if isinstance(self.ref, str):
            return self.ref
        module = getattr(self.ref, "__module__", None) or "?"
        return f"{module}:{getattr(self.ref, '__qualname__', type(self.ref).__name__)}"

    def _import(self) -> Callable[..., Any]:
        module, _, attr = str(self.ref).partition(":")
        where = f"{self.kind} '{self.name}' of {self.owner.describe()}"
        try:
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except ImportError as exc:
            raise ComponentImportError(
                f"{where}: cannot import {module} ({type(exc).__name__}: {exc}). Install the missing "
                f"dependency or reinstall {self.owner.dist or 'the plugin'}."
            ) from exc
        except AttributeError:
            raise ComponentImportError(f"{where}: {module} has no '{attr}' (factory reference '{self.ref}')") from None
        if not callable(obj):
            raise ComponentImportError(f"{where}: '{self.ref}' is not callable")
        return obj

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
            "factory": self.reference,
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
        factory: FactoryRef,
        *,
        description: str | None = None,
        aliases: Iterable[str] = (),
        **meta: Any,
    ) -> FactoryRef:
        """Register ``factory`` under ``name``; returns it so ``add`` can be used as a decorator.

        ``factory`` is a callable or a ``"package.module:attribute"`` reference, imported the first
        time the component is built; a reference needs ``description`` (its docstring is not read,
        so registering imports nothing). ``meta`` keys are those of :data:`META_KEYS`.
        """
        where = f"{self.owner.describe()}: {self.kind} '{name}'"
        if not name or not isinstance(name, str):
            raise RegistrationError(f"{self.owner.describe()}: a {self.kind} name must be a non-empty string")
        if isinstance(factory, str):
            _check_reference(factory, where)
            if not description:
                raise RegistrationError(
                    f"{where}: give description=... with a factory reference ('{factory}' is not imported "
                    "at registration, so its docstring is not read)"
                )
        elif not callable(factory):
            raise RegistrationError(f"{where}: the factory is neither callable nor a 'module:attribute' reference")
        check_meta(self.kind, name, meta, self.owner)
        doc = description if description is not None else (factory.__doc__ or "").strip().split("\n")[0]  # type: ignore[union-attr]
        entry = Entry(self.kind, name, factory, self.owner, doc, tuple(aliases), dict(meta))
        self._registry._add(entry)
        return factory

    def __call__(self, name: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
            return self.add(name, factory, **kw)

        return deco


def _check_reference(ref: str, where: str) -> None:
    """A well-formed ``module:attribute`` whose module exists (found without importing it)."""
    if not _REFERENCE.match(ref):
        raise RegistrationError(f"{where}: factory reference '{ref}' is not of the form 'package.module:attribute'")
    module = ref.partition(":")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise RegistrationError(f"{where}: factory reference '{ref}': no module named '{module}'")


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
