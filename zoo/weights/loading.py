"""``pretrained=True``: the recipe's manifest entry -> verified safetensors -> the model.

Entries load ``into: model`` (a whole ZooModel state dict, loaded strictly) or ``into: backbone``
(the state dict of the backbone network, e.g. a complete timm model; it is placed on the module
inside ``model.backbone`` whose keys it fits, and keys matching ``load.drop`` may be absent from
the model, e.g. an ImageNet classifier the backbone does not keep). Everything else in the model
(GeM's ``p``) keeps the recipe's initial values. Only safetensors are read here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from zoo.registry import Registry
from zoo.weights.catalog import entry_for_recipe
from zoo.weights.errors import NoPretrainedWeightsError, UnverifiedWeightsError, WeightsLoadError
from zoo.weights.fit import backbone_target, fit_state
from zoo.weights.resolve import fetch_entry
from zoo.weights.schema import WeightsEntry

log = logging.getLogger(__name__)


#: advice shown when manifest weights do not fit the recipe's model
FIT_HINT = "Were the recipe's model settings overridden? Use the overrides the weights list (zoo weights list -l)."


def read_safetensors(paths: list[Path]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of one or more safetensors files (keys must not repeat)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}
    for path in paths:
        if path.suffix != ".safetensors":
            raise WeightsLoadError(f"{path}: zoo loads .safetensors files only")
        with safe_open(str(path), framework="pt") as f:
            meta.update(f.metadata() or {})
        part = load_file(str(path))
        twice = sorted(set(part) & set(state))
        if twice:
            raise WeightsLoadError(f"{path}: tensors {twice[:5]} are also in another file of the same entry")
        state.update(part)
    return state, meta


def apply_entry(model: nn.Module, entry: WeightsEntry, state: Mapping[str, torch.Tensor]) -> None:
    """Load ``state`` (the entry's tensors) into ``model`` as the entry's ``load`` section says."""
    if entry.load_into == "backbone":
        backbone = getattr(model, "backbone", None)
        if backbone is None:
            raise WeightsLoadError(f"weights '{entry.name}' load into a backbone, but the model has no .backbone")
        target, prefix = backbone_target(backbone, state, what=f"weights '{entry.name}'", error=WeightsLoadError)
        where = f"backbone.{prefix}" if prefix else "backbone"
        fitted = fit_state(
            state, target.state_dict(), f"weights '{entry.name}' into {where}", drop=entry.drop, hint=FIT_HINT,
            error=WeightsLoadError,
        )
        target.load_state_dict(fitted, strict=True)
        skipped = sorted(set(state) - set(fitted))
        log.info(
            "loaded %d tensors of '%s' into model.%s%s", len(fitted), entry.name, where,
            f" (not used by this model: {', '.join(skipped)})" if skipped else "",
        )
        return
    fitted = fit_state(
        state, model.state_dict(), f"weights '{entry.name}' into recipe '{getattr(model, 'recipe', '?')}'",
        drop=entry.drop, hint=FIT_HINT, error=WeightsLoadError,
    )
    model.load_state_dict(fitted, strict=True)
    log.info("loaded %d tensors of '%s'", len(fitted), entry.name)


def check_preprocess(model: nn.Module, entry: WeightsEntry) -> None:
    """Warn when the recipe normalises images differently from how the weights were trained."""
    data = getattr(model, "data_config", None)
    pre = entry.preprocess
    if pre is None or data is None:
        return
    for key in ("mean", "std"):
        have = tuple(float(v) for v in getattr(data, key))
        want = pre.mean if key == "mean" else pre.std
        if len(have) == 3 and any(abs(a - b) > 1e-3 for a, b in zip(have, want)):
            log.warning(
                "recipe '%s' normalises with %s=%s but weights '%s' were trained with %s=%s; "
                "embeddings will be off (set data.%s)", getattr(model, "recipe", "?"), key, have, entry.name,
                key, want, key,
            )


def load_entry(
    model: nn.Module, entry: WeightsEntry, registry: Registry | None = None, cfg: Any = None
) -> dict[str, str]:
    """Fetch (verified) and load one entry into ``model``; returns the files' safetensors metadata.

    ``cfg``: the resolved recipe ``model`` was built from (reused if the file must be converted).
    """
    if not entry.verified:
        raise UnverifiedWeightsError(
            f"weights '{entry.name}' are listed from their public source only ({entry.source_page}); zoo never "
            "loads weights without a sha256 in the manifest. Convert a checked copy with zoo weights convert "
            "and pass it as checkpoint="
        )
    paths = fetch_entry(entry, registry=registry, cfg=cfg)
    state, meta = read_safetensors(paths)
    apply_entry(model, entry, state)
    check_preprocess(model, entry)
    model.weights_entry = entry.name  # type: ignore[assignment]
    return meta


def load_pretrained(model: nn.Module, cfg: Any, registry: Registry | None = None) -> WeightsEntry | None:
    """Load the default weights of the resolved recipe ``cfg`` into ``model``.

    An ensemble recipe without its own entry loads each member's default weights, using the
    members' resolved recipes the ensemble keeps (``model.member_recipes``, resolved when it was built).
    """
    try:
        entry = entry_for_recipe(cfg, registry)
    except NoPretrainedWeightsError:
        if cfg.get("ensemble") is not None and hasattr(model, "members"):
            for member, sub in zip(model.members, member_recipes(model, cfg, registry)):
                load_pretrained(member, sub, registry)
            return None
        raise
    load_entry(model, entry, registry, cfg)
    return entry


def member_recipes(model: nn.Module, cfg: Any, registry: Registry | None = None) -> list[Any]:
    """The resolved recipes of an ensemble's members: the ones the model keeps, else resolved here once."""
    kept = list(getattr(model, "member_recipes", None) or [getattr(m, "recipe_cfg", None) for m in model.members])
    if len(kept) == len(model.members) and all(c is not None for c in kept):
        return kept
    from zoo.recipes import get_recipe

    return [
        get_recipe(str(item.recipe), list(item.get("overrides") or []), registry=registry)
        for item in cfg.ensemble.members
    ]
