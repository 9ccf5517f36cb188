"""``hf-hub:`` sources, read through huggingface_hub: its download, its cache layout, its offline switch.

``hf-hub:ORG/REPO/PATH/IN/REPO`` (``ORG/REPO@REVISION/PATH`` picks a revision; default ``main``) is
fetched with :func:`huggingface_hub.hf_hub_download` into the Hugging Face cache (``HF_HUB_CACHE``,
``models--ORG--REPO/blobs`` + ``snapshots``), the same cache timm and open_clip use; zoo builds no
URL itself. ``HF_ENDPOINT`` names the hub (read on every call, so a changed environment is seen).

Offline (``ZOO_OFFLINE=1``, which also sets huggingface_hub's ``HF_HUB_OFFLINE``; or
``HF_HUB_OFFLINE=1`` alone) only the cache is read (``local_files_only``). The file returned is
still checked by the caller against the manifest's size and sha256 (:mod:`zoo.weights.resolve`):
huggingface_hub's cache is trusted for where a file is, never for what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zoo.weights.env import apply_offline_switches, hf_endpoint
from zoo.weights.errors import DownloadError
from zoo.weights.library import unavailable_cause

HUB_PREFIX = "hf-hub:"


@dataclass(frozen=True)
class HubFile:
    """One file of a Hugging Face Hub model repository."""

    repo_id: str
    filename: str
    revision: str | None = None

    @property
    def source(self) -> str:
        at = f"@{self.revision}" if self.revision else ""
        return f"{HUB_PREFIX}{self.repo_id}{at}/{self.filename}"


def is_hub_source(source: str) -> bool:
    return source.startswith(HUB_PREFIX)


def parse_hub_source(source: str) -> HubFile:
    """``hf-hub:ORG/REPO[@REVISION]/PATH`` -> :class:`HubFile` (the manifest schema checked the shape)."""
    org, repo, path = source[len(HUB_PREFIX):].split("/", 2)
    repo, _, revision = repo.partition("@")
    return HubFile(f"{org}/{repo}", path, revision or None)


def _unavailable(hub: HubFile, exc: Exception, offline: bool) -> DownloadError:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if offline:
        what = "offline and not in the Hugging Face cache"
    elif isinstance(exc, RepositoryNotFoundError):
        what = f"no repository {hub.repo_id} on {hf_endpoint() or 'the hub'} (or it is private)"
    elif isinstance(exc, RevisionNotFoundError):
        what = f"no revision '{hub.revision}' in {hub.repo_id}"
    elif isinstance(exc, EntryNotFoundError):
        what = f"no file {hub.filename} in {hub.repo_id}"
    elif isinstance(exc, HfHubHTTPError):
        what = "the hub answered with an error"
    else:
        what = "the hub could not be reached"
    return DownloadError(f"{hub.source}: {what} ({type(exc).__name__}: {reason})")


def download_hub_file(hub: HubFile, *, offline: bool, force: bool = False) -> Path:
    """The local path of ``hub`` in the Hugging Face cache, downloaded there first unless ``offline``.

    ``force`` downloads it again (a cached copy that failed zoo's hash check). Every failure is a
    :class:`~zoo.weights.errors.DownloadError` naming the source and the reason.
    """
    from huggingface_hub import hf_hub_download

    if offline:
        apply_offline_switches()
    try:
        path = hf_hub_download(
            hub.repo_id, hub.filename, revision=hub.revision, endpoint=hf_endpoint(),
            local_files_only=offline, force_download=force and not offline,
        )
    except Exception as exc:
        if unavailable_cause(exc) is None:
            raise  # not "the file cannot be had": a bug to see whole
        raise _unavailable(hub, exc, offline or _hub_offline()) from exc
    return Path(path)


def cached_hub_file(hub: HubFile) -> Path | None:
    """The copy of ``hub`` in the Hugging Face cache, if any (nothing is downloaded)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub.repo_id, hub.filename, revision=hub.revision)
    return Path(found) if isinstance(found, str) else None


def _hub_offline() -> bool:
    """huggingface_hub's own offline switch (``HF_HUB_OFFLINE``, read when it was imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)
