"""The catalogue of weights in use: every manifest's entries, cached, and lookups by name or recipe.

Manifests ship inside the packages that declare them: a plugin registers its own through
``zoo_register_weight_manifests`` (the built-in ``recipes`` plugin registers the
``weights_manifest.yaml`` of the ``zoo_configs`` package), and ``ZOO_WEIGHTS_MANIFEST`` adds files
(paths separated by ``os.pathsep``). A name listed twice with different content is an error naming
both files.

Each manifest file is parsed once and kept while its path, size and modification time stay the
same; the list of files is read from the registry and the environment on every call, so another
registry, a changed ``ZOO_WEIGHTS_MANIFEST`` or an edited file is seen at once.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.resources
from pathlib import Path
from typing import Any, Iterable

from zoo.registry import Registry, close_matches, natural_key
from zoo.weights.env import manifest_env_paths
from zoo.weights.errors import ManifestError, NoPretrainedWeightsError, UnknownWeightsError
from zoo.weights.schema import WeightsEntry, read_manifest

#: parsed manifest files kept at once (a few per installed plugin)
CACHED_MANIFESTS = 64
#: the file name a package's manifest has by convention
MANIFEST_NAME = "weights_manifest.yaml"


def package_manifest(package: str, name: str = MANIFEST_NAME) -> Path:
    """The manifest ``name`` shipped as package data of ``package`` (found with importlib.resources).

    For a plugin's ``zoo_register_weight_manifests``: ``registrar.add_file(package_manifest(__package__))``
    with the file listed in the distribution's package data. Packages installed as plain folders
    (every wheel installed by pip) give a real path; a manifest inside a zip import is refused.
    """
    resource = importlib.resources.files(package).joinpath(name)
    if not resource.is_file():
        raise ManifestError(
            f"package '{package}' ships no {name} (looked at {resource}); add it to the package data of "
            "the distribution that installs the package, or reinstall it"
        )
    if not isinstance(resource, Path):
        raise ManifestError(
            f"package '{package}': {name} is inside an archive ({resource}); install the distribution as "
            "a folder (pip install, not a zip import)"
        )
    return resource


def manifest_paths(registry: Registry | None = None) -> list[Path]:
    """Every manifest in use: those registered by plugins, then ``ZOO_WEIGHTS_MANIFEST``."""
    from zoo.plugins import get_registry

    reg = registry or get_registry()
    paths = [p for p, _ in reg.manifest_files] + manifest_env_paths()
    seen: set[Path] = set()
    out = []
    for p in paths:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


@functools.lru_cache(maxsize=CACHED_MANIFESTS)
def _read_cached(path: Path, mtime_ns: int, size: int) -> dict[str, WeightsEntry]:
    return read_manifest(path)


def read_manifest_cached(path: str | Path) -> dict[str, WeightsEntry]:
    """:func:`zoo.weights.schema.read_manifest`, parsed again only when the file changed."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise ManifestError(f"weights manifest {path} does not exist") from exc
    return dict(_read_cached(path, st.st_mtime_ns, st.st_size))


def load_entries(registry: Registry | None = None, paths: Iterable[str | Path] | None = None) -> dict[str, WeightsEntry]:
    """All entries of all manifests in use (or of ``paths``), checked; duplicates must agree."""
    out: dict[str, WeightsEntry] = {}
    for path in (manifest_paths(registry) if paths is None else [Path(p) for p in paths]):
        for name, entry in read_manifest_cached(path).items():
            held = out.get(name)
            if held is not None and _comparable(held) != _comparable(entry):
                raise ManifestError(
                    f"weights '{name}' is listed differently in {held.manifest} and {entry.manifest}; "
                    "rename one of them or disable the plugin that ships one (ZOO_DISABLE_PLUGINS)"
                )
            out.setdefault(name, entry)
    return out


def _comparable(entry: WeightsEntry) -> dict[str, Any]:
    data = entry.to_dict()
    data.pop("manifest")
    return data


def list_weights(pattern: str = "*", registry: Registry | None = None, *, verified_only: bool = False) -> list[str]:
    """Weight names matching the fnmatch ``pattern``, naturally sorted."""
    entries = load_entries(registry)
    return sorted(
        (n for n, e in entries.items() if fnmatch.fnmatchcase(n, pattern) and (e.verified or not verified_only)),
        key=natural_key,
    )


def get_weights(name: str, registry: Registry | None = None) -> WeightsEntry:
    """The manifest entry ``name``; an unknown name raises with close matches."""
    entries = load_entries(registry)
    if name in entries:
        return entries[name]
    hints = close_matches(name, entries)
    raise UnknownWeightsError(
        f"unknown weights '{name}'."
        + (f" Close matches: {', '.join(hints)}." if hints else "")
        + " List them with: zoo weights list"
    )


def entry_for_recipe(cfg: Any, registry: Registry | None = None) -> WeightsEntry:
    """The weights a resolved recipe loads with ``pretrained=True``.

    A top-level ``weights: NAME`` key in the recipe wins. Otherwise the entries that name the
    recipe and whose ``arch`` is the recipe's ``model.backbone.name`` (tag ignored) or the recipe
    name itself are candidates; one marked ``default: true`` (or the only one) is chosen.
    """
    entries = load_entries(registry)
    recipe = str(cfg.get("name") or "")
    explicit = cfg.get("weights")
    if explicit:
        if str(explicit) not in entries:
            hints = close_matches(str(explicit), entries)
            raise NoPretrainedWeightsError(
                f"recipe '{recipe}' names weights '{explicit}', which no manifest lists."
                + (f" Close matches: {', '.join(hints)}." if hints else "")
                + " List them with: zoo weights list"
            )
        return entries[str(explicit)]
    backbone = ""
    model = cfg.get("model") or {}
    if model and model.get("backbone") is not None:
        backbone = str(model.backbone.get("name") or "").split(".", 1)[0]
    named = [e for e in entries.values() if e.recipe == recipe]
    fitting = [e for e in named if not backbone or e.arch in (backbone, recipe)]
    chosen = [e for e in fitting if e.default] or fitting
    if len(chosen) == 1:
        return chosen[0]
    if len(chosen) > 1:
        raise NoPretrainedWeightsError(
            f"recipe '{recipe}' has several weights ({', '.join(e.name for e in chosen)}) and none is marked "
            "default; pick one with the override +weights=NAME"
        )
    hints = [e.name for e in named] or close_matches(recipe, sorted({e.recipe for e in entries.values()}))
    what = f"recipe '{recipe}'" + (f" with backbone '{backbone}'" if backbone else "")
    raise NoPretrainedWeightsError(
        f"No pretrained weights exist for {what}. Use pretrained=False, pass a checkpoint, or pick weights "
        "with the override +weights=NAME."
        + (f" Weights for this recipe: {', '.join(hints)}." if named else (f" Recipes that have weights: {', '.join(hints)}." if hints else ""))
        + " List them with: zoo weights list"
    )
