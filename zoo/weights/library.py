"""Pretrained weights that libraries download themselves (timm, open_clip): offline, and one clear error.

Backbone plugins build ImageNet/CLIP-initialised networks with ``timm.create_model(pretrained=True)``
or ``open_clip.create_model(pretrained=TAG)`` (``zoo train`` turns that on). Those calls go to the
Hugging Face Hub (or a plain URL) on their own, outside zoo's verified store. Wrapping them in
:func:`library_download` makes them follow zoo's rules:

* with ``ZOO_OFFLINE=1`` the hub libraries are switched offline first
  (:func:`zoo.weights.env.apply_offline_switches`), so they read only their local caches and fail at
  once instead of retrying the network for a minute;
* a file that cannot be had (offline and not cached, no connection, not on the hub) becomes one
  :class:`~zoo.weights.errors.PretrainedUnavailableError` naming the weights, the places searched and
  the fixes (``--no-pretrained``, a mirror of the Hugging Face cache, ``zoo weights fetch`` where the
  manifest lists a verified copy) instead of the library's raw traceback.

A plugin whose library downloads from a plain URL (no offline switch exists for that) checks the
library's URL cache itself before the call and raises ``FileNotFoundError`` naming the cached path;
:func:`library_download` turns that into the same error.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
from pathlib import Path
from typing import Iterator, Sequence

from zoo.weights.env import apply_offline_switches, offline
from zoo.weights.errors import PretrainedUnavailableError

#: exceptions (anywhere in the chain) that mean "the file could not be had", by library
_UNAVAILABLE: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, urllib.error.URLError, FileNotFoundError)
_UNAVAILABLE_NAMES = {
    "huggingface_hub.errors": ("EntryNotFoundError", "OfflineModeIsEnabled", "HfHubHTTPError", "FileMetadataError"),
    "httpx": ("TransportError",),
    "httpx2": ("TransportError",),
    "requests.exceptions": ("ConnectionError", "Timeout"),
}


def _unavailable_types() -> tuple[type[BaseException], ...]:
    import sys

    found: list[type[BaseException]] = list(_UNAVAILABLE)
    for module, names in _UNAVAILABLE_NAMES.items():
        mod = sys.modules.get(module)  # only libraries already in use can have raised
        found += [t for t in (getattr(mod, n, None) for n in names) if isinstance(t, type)]
    return tuple(found)


def unavailable_cause(exc: BaseException) -> BaseException | None:
    """The first exception in ``exc``'s chain that says the file could not be had, if any."""
    types = _unavailable_types()
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        if isinstance(node, types):
            return node
        seen.add(id(node))
        node = node.__cause__ or node.__context__
    return None


def hub_cache_dir() -> Path:
    """The Hugging Face Hub cache timm and open_clip read (``HF_HUB_CACHE``)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm and open_clip depend on huggingface_hub
        home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
        return Path(os.environ.get("HF_HUB_CACHE") or Path(home) / "hub")
    return Path(constants.HF_HUB_CACHE)


def _manifest_hint(weights: str) -> str:
    """``zoo weights fetch NAME`` for verified manifest entries of the same architecture, if any."""
    from zoo.weights.catalog import load_entries

    arch = weights.split(".", 1)[0].split("/", 1)[0]
    try:
        names = sorted(n for n, e in load_entries().items() if e.verified and e.arch == arch)
    except Exception:  # noqa: BLE001 - a hint must never hide the real error
        names = []
    if names:
        return (
            f"; the zoo manifest lists a verified copy ({', '.join(names)}): zoo weights fetch {names[0]}, "
            "loaded by pretrained=True / a stage with init: pretrained"
        )
    return "; zoo weights list shows the weights zoo fetches and verifies itself"


def unavailable_message(weights: str, library: str, cause: BaseException, places: Sequence[str] = ()) -> str:
    """The one-line error for ``library``'s pretrained ``weights`` that could not be had."""
    is_offline = offline()
    searched = [f"Hugging Face cache {hub_cache_dir()} (HF_HUB_CACHE)", *places]
    if not is_offline:
        searched.append("the network")
    reason = str(cause).strip().splitlines()[0][:300] if str(cause).strip() else type(cause).__name__
    head = (
        f"ZOO_OFFLINE=1 and {library}'s pretrained weights '{weights}' are not in its local caches"
        if is_offline
        else f"{library} could not download its pretrained weights '{weights}' ({type(cause).__name__}: {reason})"
    )
    return (
        f"{head}. Searched: {'; '.join(searched)}. Fix: build without them (zoo train --no-pretrained, or "
        "model.backbone.pretrained=false), or put a Hugging Face cache that has them at HF_HUB_CACHE (a mirror "
        "folder copied from a machine that downloaded them)"
        + (", or unset ZOO_OFFLINE to download them" if is_offline else ", or retry when the hub is reachable")
        + _manifest_hint(weights)
        + "."
    )


@contextlib.contextmanager
def library_download(weights: str, library: str, *, places: Sequence[str] = ()) -> Iterator[None]:
    """Around ``library``'s own pretrained download of ``weights``: offline switches, one clear error.

    ``places``: where the library looks besides the Hugging Face cache (named in the error).
    Errors that do not mean "unavailable" (a wrong model name, a bad argument) pass unchanged.
    """
    apply_offline_switches()
    try:
        yield
    except PretrainedUnavailableError:
        raise
    except Exception as exc:
        cause = unavailable_cause(exc)
        if cause is None:
            raise
        raise PretrainedUnavailableError(unavailable_message(weights, library, cause, places)) from exc
