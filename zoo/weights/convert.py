"""Converting upstream ``.pth`` checkpoints to zoo safetensors.

Upstream pickles are read by :mod:`zoo.weights.upstream` (``torch.load(weights_only=True)``). The
layout-specific key mapping is a registered ``converter`` (``factory(state_dict, cfg) ->
state_dict``); this module checks that the mapped keys fit the recipe's model exactly
(:mod:`zoo.weights.fit`) and writes safetensors with provenance metadata.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Mapping

import torch

from zoo.registry import Registry
from zoo.weights import fit
from zoo.weights.errors import ConversionError
from zoo.weights.integrity import sha256_of
from zoo.weights.upstream import read_upstream_checkpoint, unwrap_state_dict

__all__ = ["ConversionError", "convert_checkpoint", "read_upstream_checkpoint", "unwrap_state_dict"]

log = logging.getLogger(__name__)

#: advice shown when a converted checkpoint's keys do not fit the recipe's model
FIT_HINT = "Check --from and the recipe overrides (--set) against the checkpoint."


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
        placed = fit.place_backbone_state(
            model, mapped, f"{src} as {layout} for {recipe}", drop=("classifier.*",), hint=FIT_HINT,
            error=ConversionError,
        )
        from_recipe = sorted(set(own) - set(placed))
        mapped = {**{k: v for k, v in own.items() if k not in placed}, **placed}
    fit.check_fit(mapped, own, f"{src} as {layout} for {recipe}", hint=FIT_HINT, error=ConversionError)
    tensors = {k: mapped[k].detach().to(own[k].dtype).clone().contiguous() for k in own}
    meta = {
        "format": "zoo",
        "recipe": recipe,
        "overrides": json.dumps(overrides),
        "source_layout": layout,
        "source_file": Path(src).name,
        "source_sha256": sha256_of(src),
    }
    if from_recipe:
        meta["initialised_by_recipe"] = json.dumps(from_recipe)
    save_safetensors(out, tensors, meta)
    log.info("wrote %s (%d tensors)", out, len(tensors))
    return Path(out)
