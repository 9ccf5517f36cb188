"""Converting upstream ``.pth`` checkpoints to zoo safetensors.

The only place zoo reads a pickle: ``torch.load(weights_only=True)``, which refuses arbitrary
objects. The layout-specific key mapping is a registered ``converter`` (``factory(state_dict, cfg)
-> state_dict``); this module unwraps the upstream container, checks that the mapped keys fit the
recipe's model exactly, and writes safetensors with provenance metadata.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from zoo.registry import Registry, ZooError

log = logging.getLogger(__name__)

WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "net")


class ConversionError(ZooError):
    """An upstream checkpoint that does not map exactly onto the recipe's model."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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


def check_fit(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], what: str) -> None:
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ConversionError(
            f"{what}: {len(missing)} missing keys {missing[:20]}, {len(unexpected)} unexpected keys "
            f"{unexpected[:20]}. Check --from and the recipe overrides (--set) against the checkpoint."
        )
    bad = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in own if state[k].shape != own[k].shape]
    if bad:
        raise ConversionError(f"{what}: shape mismatches (key, file, model): {bad[:10]}")


def convert_checkpoint(
    src: str | Path,
    layout: str,
    recipe: str,
    out: str | Path,
    overrides: Iterable[str] = (),
    registry: Registry | None = None,
) -> Path:
    """Convert ``src`` (upstream ``layout``) for ``recipe`` and write ``out`` (safetensors)."""
    from zoo.assembly import build_model
    from zoo.atomic import save_safetensors
    from zoo.plugins import get_registry
    from zoo.recipes import get_recipe

    reg = registry or get_registry()
    overrides = list(overrides)
    converter = reg.get("converter", layout)
    cfg = get_recipe(recipe, overrides, registry=reg)
    state = read_upstream_checkpoint(src)
    log.info("read %d tensors from %s", len(state), src)
    mapped = converter.factory(state, cfg)
    model = build_model(cfg, reg)
    own = model.state_dict()
    from_recipe: list[str] = []
    if converter.meta.get("target") == "backbone":
        # backbone-only weights (e.g. ImageNet): placed on model.backbone, the rest keeps the recipe's init
        from zoo.weights.loading import place_backbone_state

        placed = place_backbone_state(model, mapped, f"{src} as {layout} for {recipe}", drop=("classifier.*",))
        from_recipe = sorted(set(own) - set(placed))
        mapped = {**{k: v for k, v in own.items() if k not in placed}, **placed}
    check_fit(mapped, own, f"{src} as {layout} for {recipe}")
    tensors = {k: mapped[k].detach().to(own[k].dtype).clone().contiguous() for k in own}
    meta = {
        "format": "zoo",
        "recipe": recipe,
        "overrides": json.dumps(overrides),
        "source_layout": layout,
        "source_file": Path(src).name,
        "source_sha256": sha256_file(src),
    }
    if from_recipe:
        meta["initialised_by_recipe"] = json.dumps(from_recipe)
    save_safetensors(out, tensors, meta)
    log.info("wrote %s (%d tensors)", out, len(tensors))
    return Path(out)
