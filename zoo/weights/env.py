"""Environment settings of the weights store: offline mode, cache, mirrors, manifests, downloads.

=========================  ==========================================================================
``ZOO_OFFLINE=1``          never touch the network: zoo's own downloads are skipped and
                           :func:`apply_offline_switches` sets the libraries' own switches
                           (``HF_HUB_OFFLINE=1``, honoured by huggingface_hub and so by timm and
                           open_clip; ``NO_ALBUMENTATIONS_UPDATE=1``, albumentations' PyPI check)
``ZOO_CACHE_DIR``          the cache (default ``<user cache dir>/zoo/weights``)
``ZOO_WEIGHTS_MIRROR``     mirror folders, separated by ``os.pathsep``
``ZOO_WEIGHTS_MANIFEST``   extra manifest files, separated by ``os.pathsep``
``ZOO_DOWNLOAD_RETRIES``   attempts after the first one (default 3)
``ZOO_DOWNLOAD_TIMEOUT``   seconds a connection may stay silent (default 60)
``ZOO_DOWNLOAD_BACKOFF``   seconds before the first retry, doubled for each next one (default 1)
``ZOO_DOWNLOAD_BACKOFF_MAX``  the longest wait between two attempts (default 30)
``ZOO_NO_PROGRESS=1``      no progress bars
``HF_ENDPOINT``            the Hugging Face Hub address of ``hf-hub:`` sources (read by huggingface_hub,
                           which downloads them into its own cache, ``HF_HUB_CACHE``)
=========================  ==========================================================================

Every value is read when it is needed, so a changed environment is seen by the next call.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from zoo.weights.errors import SettingError

TRUE = ("1", "true", "yes", "on")
#: the libraries' own offline switches, set by :func:`apply_offline_switches`: huggingface_hub (and
#: through it timm and open_clip) reads only its cache; albumentations skips the PyPI version check
#: it otherwise makes when it is imported
OFFLINE_SWITCHES = {"HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}


def offline() -> bool:
    """``ZOO_OFFLINE=1``: never touch the network."""
    return os.environ.get("ZOO_OFFLINE", "").strip().lower() in TRUE


def apply_offline_switches() -> bool:
    """With ``ZOO_OFFLINE=1``, switch the libraries offline too; returns whether zoo is offline.

    Sets :data:`OFFLINE_SWITCHES` in the environment (``HF_HUB_OFFLINE`` is read by huggingface_hub
    when it is imported, ``NO_ALBUMENTATIONS_UPDATE`` by albumentations) and, when huggingface_hub is
    already imported, its ``constants.HF_HUB_OFFLINE`` (read on every request). timm and open_clip
    download through huggingface_hub, so they then read only the local Hugging Face cache and fail at
    once instead of retrying the network. Call it before the plugins are imported (albumentations
    checks at import); :func:`zoo.weights.library.library_download` calls it again before every
    library download. Nothing is changed online.
    """
    if not offline():
        return False
    os.environ.update(OFFLINE_SWITCHES)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
    return True


def cache_dir() -> Path:
    """``ZOO_CACHE_DIR`` or ``<user cache dir>/zoo/weights``."""
    env = os.environ.get("ZOO_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("zoo")) / "weights"


def cache_path(name: str, sha256: str) -> Path:
    """Where the cache keeps the file ``name`` with digest ``sha256``: ``CACHE/SHA256/NAME``."""
    return cache_dir() / sha256 / name


def _path_list(var: str) -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(var, "").split(os.pathsep) if p.strip()]


def mirror_dirs() -> list[Path]:
    """The folders named by ``ZOO_WEIGHTS_MIRROR`` (``os.pathsep``-separated)."""
    return _path_list("ZOO_WEIGHTS_MIRROR")


def manifest_env_paths() -> list[Path]:
    """The manifest files named by ``ZOO_WEIGHTS_MANIFEST`` (``os.pathsep``-separated)."""
    return _path_list("ZOO_WEIGHTS_MANIFEST")


def hf_endpoint() -> str | None:
    """``HF_ENDPOINT`` without a trailing slash, or None (unset: huggingface_hub's own default hub).

    Read here on every call and handed to huggingface_hub, which reads it only once, when imported.
    """
    value = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return value or None


def _number(var: str, default: float, kind: type, minimum: float) -> float:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        what = "integer" if kind is int else "number"
        raise SettingError(f"{var}={raw!r}: must be a {what} >= {minimum:g}; unset it for the default ({default:g})")
    return value


def download_retries() -> int:
    """``ZOO_DOWNLOAD_RETRIES``: attempts after the first one (default 3)."""
    return int(_number("ZOO_DOWNLOAD_RETRIES", 3, int, 0))


def download_timeout() -> float:
    """``ZOO_DOWNLOAD_TIMEOUT``: seconds a connection may stay silent (default 60)."""
    return float(_number("ZOO_DOWNLOAD_TIMEOUT", 60.0, float, 0.001))


def download_backoff() -> tuple[float, float]:
    """``(ZOO_DOWNLOAD_BACKOFF, ZOO_DOWNLOAD_BACKOFF_MAX)``: the first wait and the longest (default 1 s, 30 s)."""
    return float(_number("ZOO_DOWNLOAD_BACKOFF", 1.0, float, 0)), float(_number("ZOO_DOWNLOAD_BACKOFF_MAX", 30.0, float, 0))


def progress_enabled() -> bool:
    """False with ``ZOO_NO_PROGRESS`` set to anything but ``0``."""
    return os.environ.get("ZOO_NO_PROGRESS", "") in ("", "0")
