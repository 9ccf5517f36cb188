"""Finding, downloading and converting weight files: mirror -> cache -> sources.

Resolution order for each file of a manifest entry:

1. an explicit file given by the caller;
2. mirror folders (``ZOO_WEIGHTS_MIRROR``, separated by ``os.pathsep``): ``DIR/NAME`` or ``DIR/SHA256/NAME``;
3. the cache (``ZOO_CACHE_DIR``, default ``<user cache dir>/zoo/weights``): ``CACHE/SHA256/NAME``;
4. the entry's sources, in order (network sources are skipped with ``ZOO_OFFLINE=1``; an ``hf-hub:``
   source is fetched by huggingface_hub into its own cache, which alone is read offline:
   :mod:`zoo.weights.hub`).

Every candidate is checked (size first, then the full sha256, :mod:`zoo.weights.integrity`) before it
is returned; a file that fails is never returned. Downloads stream to ``CACHE/SHA256/NAME.partial``
under an exclusive inter-process lock (``filelock``) held for the whole fetch of that file, so two
processes fetching the same file take turns and the second finds the first one's verified result.
A file declared with ``convert:`` is made from its upstream pickle: the pickle's size and sha256 are
checked first, then it is read with ``torch.load(weights_only=True)`` (:mod:`zoo.weights.upstream`),
mapped by the registered converter, written as reproducible safetensors and re-hashed against the
manifest. The converter gets the resolved recipe the caller passes (``cfg=``); only without one is
the entry's recipe resolved, once per fetch.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.registry import Registry
from zoo.weights.env import cache_path, mirror_dirs, offline
from zoo.weights.errors import (
    DownloadError,
    IntegrityError,
    UnverifiedWeightsError,
    WeightsNotFoundError,
)
from zoo.weights.integrity import check_file, file_lock, matches, sha256_of
from zoo.weights.schema import UpstreamFile, WeightFile, WeightsEntry
from zoo.weights.hub import download_hub_file, is_hub_source, parse_hub_source
from zoo.weights.sources import is_network, local_path

log = logging.getLogger(__name__)


@dataclass
class Searched:
    """One place looked at and what was found there (for error messages and ``zoo weights verify``)."""

    place: str
    outcome: str
    error: Exception | None = None

    def __str__(self) -> str:
        return f"{self.place} ({self.outcome})"


def _miss(what: str, name: str, sha256: str | None, size: int | None, searched: list[Searched]) -> Exception:
    places = "\n  - ".join(str(s) for s in searched) or "nowhere (no sources)"
    integrity = [s.error for s in searched if isinstance(s.error, IntegrityError)]
    head = f"ZOO_OFFLINE=1 and {what}" if offline() else what
    msg = (
        f"{head}: no usable copy of {name} (sha256 {sha256 or 'unknown'}, {size if size is not None else '?'} bytes). "
        f"Searched:\n  - {places}\n"
        "Copy the file into a mirror folder (zoo weights export-mirror DIR on a machine that has it) and set "
        "ZOO_WEIGHTS_MIRROR=DIR" + (", or unset ZOO_OFFLINE." if offline() else ".")
    )
    return IntegrityError(msg) if integrity else WeightsNotFoundError(msg)


def _from_local_places(
    name: str, size: int | None, sha256: str, what: str, explicit: Path | None, searched: list[Searched]
) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise WeightsNotFoundError(f"{what}: the file given, {explicit}, does not exist")
        check_file(explicit, size, sha256, what)  # an explicit file that does not match is an error
        return explicit
    for mirror in mirror_dirs():
        for cand in (mirror / name, mirror / sha256 / name):
            if not cand.is_file():
                searched.append(Searched(f"mirror {cand}", "absent"))
                continue
            try:
                check_file(cand, size, sha256, what)
            except IntegrityError as exc:
                log.warning("skipping a bad mirror copy: %s", exc)
                searched.append(Searched(f"mirror {cand}", f"refused: {exc}", exc))
                continue
            return cand
    return None


def _from_cache(name: str, size: int | None, sha256: str, what: str, searched: list[Searched]) -> Path | None:
    path = cache_path(name, sha256)
    if not path.is_file():
        searched.append(Searched(f"cache {path}", "absent"))
        return None
    try:
        check_file(path, size, sha256, what)
    except IntegrityError as exc:
        log.warning("removing a bad cached copy: %s", exc)
        searched.append(Searched(f"cache {path}", f"refused and removed: {exc}", exc))
        path.unlink(missing_ok=True)
        return None
    return path


def _from_sources(
    name: str, size: int | None, sha256: str, sources: tuple[str, ...], what: str, searched: list[Searched]
) -> Path | None:
    """Local sources are checked in place; network sources are downloaded into the cache."""
    target = cache_path(name, sha256)
    for src in sources:
        if is_hub_source(src):
            found = _from_hub(src, size, sha256, what, searched)
            if found is not None:
                return found
            continue
        if is_network(src):
            if offline():
                searched.append(Searched(f"source {src}", "skipped: ZOO_OFFLINE=1"))
                continue
            partial = target.with_name(target.name + ".partial")
            try:
                from zoo.weights.http_download import download

                download(src, partial, size, desc=name)
                check_file(partial, size, sha256, f"{what} from {src}")
            except IntegrityError as exc:
                partial.unlink(missing_ok=True)  # a wrong file must not be resumed
                searched.append(Searched(f"source {src}", f"refused: {exc}", exc))
                continue
            except DownloadError as exc:
                searched.append(Searched(f"source {src}", f"failed: {exc}", exc))
                continue
            os.replace(partial, target)
            log.info("fetched %s from %s into %s", name, src, target)
            return target
        try:
            path = local_path(src)
        except DownloadError as exc:
            searched.append(Searched(f"source {src}", f"failed: {exc}", exc))
            continue
        if not path.is_file():
            searched.append(Searched(f"source {src} ({path})", "absent"))
            continue
        try:
            check_file(path, size, sha256, f"{what} from {src}")
        except IntegrityError as exc:
            searched.append(Searched(f"source {src}", f"refused: {exc}", exc))
            continue
        return path
    return None


def _from_hub(src: str, size: int | None, sha256: str, what: str, searched: list[Searched]) -> Path | None:
    """An ``hf-hub:`` source through huggingface_hub (its cache only, offline); the file it returns is
    checked like any other. A cached copy that fails the check is downloaded again once (online)."""
    hub = parse_hub_source(src)
    is_offline = offline()
    for force in (False, True):
        try:
            path = download_hub_file(hub, offline=is_offline, force=force)
            check_file(path, size, sha256, f"{what} from {src}")
        except DownloadError as exc:
            searched.append(Searched(f"source {src}", f"failed: {exc}", exc))
            return None
        except IntegrityError as exc:
            searched.append(Searched(f"source {src} ({path})", f"refused: {exc}", exc))
            if is_offline or force:
                return None
            log.warning("downloading again over a bad copy in the Hugging Face cache: %s", exc)
            continue
        log.info("fetched %s through huggingface_hub: %s", src, path)
        return path
    return None


def fetch_upstream(up: UpstreamFile, what: str) -> Path:
    """A verified local copy of an upstream pickle (mirror, cache, then its sources)."""
    if up.sha256 is None:
        raise UnverifiedWeightsError(f"{what}: no sha256 in the manifest, so it is never read")
    searched: list[Searched] = []
    found = _from_local_places(up.name, up.size, up.sha256, what, None, searched)
    if found is not None:
        return found
    target = cache_path(up.name, up.sha256)
    with file_lock(target):
        found = _from_cache(up.name, up.size, up.sha256, what, searched)
        found = found or _from_sources(up.name, up.size, up.sha256, up.sources, what, searched)
    if found is None:
        raise _miss(what, up.name, up.sha256, up.size, searched)
    return found


class RecipeConfig:
    """The resolved recipe a converter needs: the caller's, or the entry's own, resolved on first use (once)."""

    def __init__(self, entry: WeightsEntry, registry: Registry | None, cfg: Any = None) -> None:
        self.entry = entry
        self._given_registry = registry
        self._given_cfg = cfg

    @functools.cached_property
    def registry(self) -> Registry:
        from zoo.plugins import get_registry

        return self._given_registry or get_registry()

    @functools.cached_property
    def cfg(self) -> Any:
        if self._given_cfg is not None:
            return self._given_cfg
        return _recipe_cfg(self.entry, self.registry)


def fetch_file(
    wf: WeightFile,
    entry: WeightsEntry,
    *,
    explicit: str | Path | None = None,
    registry: Registry | None = None,
    cfg: Any = None,
    recipe: RecipeConfig | None = None,
) -> Path:
    """A verified local path of one weights file (see the module docstring for the order).

    ``cfg`` is the resolved recipe the weights are for (handed to a converter); without it the
    entry's recipe and overrides are resolved if a conversion is needed. ``recipe`` shares that
    resolution between the files of one entry.
    """
    return _fetch_file(wf, entry, explicit, recipe or RecipeConfig(entry, registry, cfg))


def _fetch_file(wf: WeightFile, entry: WeightsEntry, explicit: str | Path | None, recipe: RecipeConfig) -> Path:
    what = f"weights '{entry.name}' file {wf.name}"
    if not entry.verified or wf.sha256 is None:
        raise UnverifiedWeightsError(
            f"weights '{entry.name}' are listed from their public source only ({entry.source_page}) with no "
            "sha256 in the manifest, so zoo never loads them. Download and check them yourself, convert them "
            "with: zoo weights convert SRC --from LAYOUT --recipe RECIPE --out DST.safetensors, and pass "
            "checkpoint=DST.safetensors"
        )
    searched: list[Searched] = []
    found = _from_local_places(wf.name, wf.size, wf.sha256, what, Path(explicit) if explicit else None, searched)
    if found is not None:
        return found
    target = cache_path(wf.name, wf.sha256)
    with file_lock(target):
        found = _from_cache(wf.name, wf.size, wf.sha256, what, searched)
        if found is None and wf.sources:
            found = _from_sources(wf.name, wf.size, wf.sha256, wf.sources, what, searched)
        if found is None and wf.upstream is not None:
            try:
                found = _convert_upstream(wf, entry, target, recipe)
            except (WeightsNotFoundError, IntegrityError) as exc:
                searched.append(Searched(f"conversion from {wf.upstream.name}", f"failed: {exc}", exc))
    if found is None:
        raise _miss(what, wf.name, wf.sha256, wf.size, searched)
    return found


def _convert_upstream(wf: WeightFile, entry: WeightsEntry, target: Path, recipe: RecipeConfig) -> Path:
    from zoo.atomic import write_bytes
    from zoo.weights.safetensors_io import serialize
    from zoo.weights.upstream import read_upstream_checkpoint

    assert wf.upstream is not None and wf.converter is not None
    converter = recipe.registry.get("converter", wf.converter)
    src = fetch_upstream(wf.upstream, f"weights '{entry.name}' upstream file {wf.upstream.name}")
    state = read_upstream_checkpoint(src)  # size and sha256 were checked before this unpickling
    mapped = converter.factory(state, recipe.cfg)
    meta = {
        "format": "zoo",
        "manifest_entry": entry.name,
        "recipe": entry.recipe,
        "load_into": entry.load_into,
        "converter": wf.converter,
        "source_file": wf.upstream.name,
        "source_sha256": wf.upstream.sha256,
    }
    data = serialize(mapped, meta)
    digest = sha256_of(data)
    if (wf.size is not None and len(data) != wf.size) or digest != wf.sha256:
        raise IntegrityError(
            f"weights '{entry.name}': converting {src} with '{wf.converter}' gave {len(data)} bytes with sha256 "
            f"{digest}, but the manifest expects {wf.size} bytes with sha256 {wf.sha256}; the converter or "
            "the upstream file changed, refused"
        )
    write_bytes(target, data)
    log.info("converted %s with %s into %s (sha256 %s)", src.name, wf.converter, target, digest)
    return target


def _recipe_cfg(entry: WeightsEntry, registry: Registry) -> Any:
    from zoo.recipes import get_recipe
    from zoo.registry import UnknownComponentError

    try:
        return get_recipe(entry.recipe, entry.overrides, registry=registry)
    except UnknownComponentError:
        return None  # converters of backbone weights do not need the recipe


def fetch_entry(
    entry: WeightsEntry,
    *,
    to: str | Path | None = None,
    explicit: dict[str, str | Path] | None = None,
    registry: Registry | None = None,
    cfg: Any = None,
) -> list[Path]:
    """Verified local paths of every file of ``entry``; with ``to`` they are also copied there.

    ``cfg``: the resolved recipe the weights are for (see :func:`fetch_file`); resolved at most once.
    """
    recipe = RecipeConfig(entry, registry, cfg)
    paths = [_fetch_file(wf, entry, (explicit or {}).get(wf.name), recipe) for wf in entry.files]
    if to is None:
        return paths
    out_dir = Path(to)
    out_dir.mkdir(parents=True, exist_ok=True)
    copies = []
    for wf, path in zip(entry.files, paths):
        dst = out_dir / wf.name
        if not (dst.is_file() and matches(dst, wf.size, wf.sha256)):
            _copy_atomic(path, dst)
        copies.append(dst)
    return copies


def _copy_atomic(src: Path, dst: Path) -> None:
    from zoo.atomic import atomic_path

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
