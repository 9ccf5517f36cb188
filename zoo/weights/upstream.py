"""Reading upstream pickles (``.pth``/``.pt``): the only place zoo unpickles, with ``weights_only=True``.

A leaf module (it imports nothing from zoo but :mod:`zoo.weights.errors`). ``torch.load(...,
weights_only=True)`` refuses arbitrary objects; callers check a file's size and sha256 against the
manifest before handing it here. Upstream containers (``model`` / ``state_dict`` /
``model_state_dict`` / ``net``) are unwrapped and DataParallel's ``module.`` prefix is stripped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from zoo.weights.errors import ConversionError

WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "net")


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap ``model`` / ``state_dict`` / ``model_state_dict`` containers and strip ``module.``."""
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            key = next((k for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if key is None:
                break
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{source}: expected a state dict, found {type(obj).__name__}")
    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue
        out[k[len("module."):] if k.startswith("module.") else k] = v
    if not out:
        raise ConversionError(
            f"{source}: no tensors found (top-level keys: {', '.join(map(str, list(obj)[:10]))})"
        )
    return out


def read_upstream_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an upstream ``.pth``/``.pt`` safely (``weights_only=True``) and unwrap it."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConversionError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({type(exc).__name__}: {exc}). "
            "zoo never unpickles arbitrary objects; re-save the file as a plain state dict."
        ) from exc
    return unwrap_state_dict(obj, str(path))
