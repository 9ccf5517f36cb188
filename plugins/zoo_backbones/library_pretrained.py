"""timm and open_clip models with their own pretrained weights, under zoo's offline rules.

Every backbone here that asks a library for pretrained weights goes through these two functions:
the call runs inside :func:`zoo.weights.library.library_download` (``ZOO_OFFLINE=1`` switches the
Hugging Face Hub offline; a missing file is one ``PretrainedUnavailableError`` naming the weights,
the places searched and the fixes). Weights a library would fetch from a plain URL (timm through
``torch.hub``, open_clip into ``~/.cache/clip``) have no offline switch, so with ``ZOO_OFFLINE=1``
their cache file is checked here first and nothing is requested.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from zoo.weights.env import offline
from zoo.weights.library import library_download

if TYPE_CHECKING:
    from torch import nn


def _url_file(url: str) -> str:
    return Path(urlparse(url).path).name


def timm_url_cache(name: str) -> Path | None:
    """The ``torch.hub`` cache file timm reads for ``name`` when its weights come from a plain URL
    (no Hugging Face Hub id); None when they come from the hub or timm does not know ``name``."""
    import torch.hub
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - an unknown name is timm.create_model's error to raise
        return None
    if cfg is None or cfg.hf_hub_id or cfg.file or not cfg.url:
        return None
    return Path(torch.hub.get_dir()) / "checkpoints" / _url_file(cfg.url)


def create_timm_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=..., **kwargs)``; pretrained downloads follow ZOO_OFFLINE."""
    import timm

    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    url_cache = timm_url_cache(name)
    places = [f"torch hub cache {url_cache}"] if url_cache is not None else []
    with library_download(name, "timm", places=places):
        if offline() and url_cache is not None and not url_cache.is_file():
            raise FileNotFoundError(f"{url_cache} (timm reads it from a plain URL, which has no offline mode)")
        return timm.create_model(name, pretrained=True, **kwargs)


def create_open_clip_model(arch: str, tag: str) -> nn.Module:
    """``open_clip.create_model(arch, pretrained=tag)``; the download follows ZOO_OFFLINE."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch, tag) or {}
    url_cache = None
    if cfg.get("url") and not cfg.get("hf_hub") and not cfg.get("file"):
        url_cache = Path(os.path.expanduser("~/.cache/clip")) / _url_file(cfg["url"])
    places = [f"open_clip cache {url_cache}"] if url_cache is not None else []
    with library_download(f"{arch}/{tag}", "open_clip", places=places):
        if offline() and url_cache is not None and not url_cache.is_file():
            raise FileNotFoundError(f"{url_cache} (open_clip reads it from a plain URL, which has no offline mode)")
        return open_clip.create_model(arch, pretrained=tag)
