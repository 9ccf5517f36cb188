"""``zoo weights verify``: the state of an entry's local copies (mirror, cache, package files, the
Hugging Face cache of ``hf-hub:`` sources).

Nothing is downloaded unless ``fetch=True``; every copy found is checked (size, then sha256).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.registry import Registry
from zoo.weights.env import cache_path, mirror_dirs
from zoo.weights.errors import DownloadError, IntegrityError, WeightsNotFoundError
from zoo.weights.hub import cached_hub_file, is_hub_source, parse_hub_source
from zoo.weights.integrity import check_file
from zoo.weights.resolve import RecipeConfig, fetch_file
from zoo.weights.schema import WeightsEntry
from zoo.weights.sources import is_network, local_path


@dataclass
class FileStatus:
    """What ``zoo weights verify`` found for one file."""

    entry: str
    file: str
    status: str  # ok | missing | corrupt | unverified
    path: str | None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def verify_entry(entry: WeightsEntry, *, fetch: bool = False, registry: Registry | None = None) -> list[FileStatus]:
    """Check the local copies of an entry's files (and of the pickles they are converted from).

    Nothing is downloaded unless ``fetch``; a file with no local copy is reported ``missing``.
    """
    out: list[FileStatus] = []
    if not entry.verified:
        return [FileStatus(entry.name, f.name, "unverified", None, f"public source only: {entry.source_page}") for f in entry.files]
    recipe = RecipeConfig(entry, registry)
    for wf in entry.files:
        assert wf.sha256 is not None
        if fetch:
            try:
                path = fetch_file(wf, entry, recipe=recipe)
                out.append(FileStatus(entry.name, wf.name, "ok", str(path), f"sha256 {wf.sha256}"))
            except (IntegrityError, WeightsNotFoundError, DownloadError) as exc:
                bad = "corrupt" if isinstance(exc, IntegrityError) else "missing"
                out.append(FileStatus(entry.name, wf.name, bad, None, str(exc)))
            continue
        out.extend(_verify_local(entry.name, wf.name, wf.size, wf.sha256, wf.sources))
        if wf.upstream is not None and wf.upstream.sha256 is not None:
            up = wf.upstream
            out.extend(_verify_local(entry.name, up.name, up.size, up.sha256, up.sources))
    return out


def _verify_local(entry: str, name: str, size: int | None, sha256: str, sources: tuple[str, ...]) -> list[FileStatus]:
    cands: list[Path] = []
    for mirror in mirror_dirs():
        cands += [mirror / name, mirror / sha256 / name]
    cands.append(cache_path(name, sha256))
    for src in sources:
        if is_hub_source(src):
            cached = cached_hub_file(parse_hub_source(src))
            if cached is not None:
                cands.append(cached)
        elif not is_network(src):
            try:
                cands.append(local_path(src))
            except DownloadError:
                pass
    out = []
    for cand in cands:
        if not cand.is_file():
            continue
        try:
            check_file(cand, size, sha256, name)
            out.append(FileStatus(entry, name, "ok", str(cand), f"{size} bytes, sha256 {sha256}"))
        except IntegrityError as exc:
            out.append(FileStatus(entry, name, "corrupt", str(cand), str(exc)))
    if not out:
        out.append(FileStatus(entry, name, "missing", None, "no local copy (fetch it with: zoo weights fetch)"))
    return out

