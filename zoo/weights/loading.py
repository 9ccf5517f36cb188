"""``pretrained=True``: the recipe's manifest entry -> verified safetensors -> the model.

Entries load ``into: model`` (a whole ZooModel state dict, loaded strictly) or ``into: backbone``
(the state dict of the backbone network, e.g. a complete timm model; it is placed on the module
inside ``model.backbone`` whose keys it fits, and keys matching ``load.drop`` may be absent from
the model, e.g. an ImageNet classifier the backbone does not keep). Everything else in the model
(GeM's ``p``) keeps the recipe's initial values. Only safetensors are read here. Weights made with
other preprocessing than the recipe's are refused (:func:`check_preprocess`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from zoo.data.config import DataConfig
from zoo.registry import Registry
from zoo.weights.catalog import entry_for_recipe
from zoo.weights.errors import (
    NoPretrainedWeightsError,
    PreprocessMismatchError,
    UnverifiedWeightsError,
    WeightsLoadError,
)
from zoo.weights.fit import backbone_target, fit_state
from zoo.weights.resolve import fetch_entry
from zoo.weights.schema import WeightsEntry

log = logging.getLogger(__name__)


#: the preprocessing fields backbone weights fix (size rule, input size and crop are the recipe's)
BACKBONE_FIELDS = ("mean", "std", "interpolation")
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


def check_preprocess(model: nn.Module, entry: WeightsEntry, cfg: Any = None) -> None:
    """Refuse weights made with other preprocessing than the recipe's (an error naming both).

    The recipe's preprocessing is the model's ``data_config`` (else ``DataConfig.from_recipe(cfg)``);
    the weights' is the manifest entry's ``preprocess`` section.

    * whole-model entries (``load.into: model``): the full config must match (input size, size rule,
      interpolation, mean, std, crop), since the model was trained and evaluated exactly so;
    * backbone entries (``load.into: backbone``, e.g. ImageNet weights used at another input size):
      mean, std and interpolation must match (:data:`BACKBONE_FIELDS`); the input size, size rule
      and crop are the recipe's to choose.
    """
    want = entry.preprocess
    if want is None:
        return
    have = getattr(model, "data_config", None)
    if not isinstance(have, DataConfig):
        if cfg is None:
            return
        have = DataConfig.from_recipe(cfg)
    fields = BACKBONE_FIELDS if entry.load_into == "backbone" else tuple(have.to_dict())
    diffs = [d for d in have.diff(want) if d.split(":", 1)[0] in fields]
    if not diffs:
        return
    fix = " ".join(_override(name, getattr(want, name)) for name in (d.split(":", 1)[0] for d in diffs))
    raise PreprocessMismatchError(
        f"weights '{entry.name}' ({entry.load_into} weights) were made with other preprocessing than recipe "
        f"'{getattr(model, 'recipe', None) or (cfg.get('name') if cfg is not None else '?')}' uses "
        f"(recipe != weights): {'; '.join(diffs)}. Make the recipe match with the overrides: {fix}; or pick "
        "weights made for this preprocessing (zoo weights list -l)"
    )


def _override(name: str, value: Any) -> str:
    key = "data.image_size" if name == "input_size" else f"data.{name}"
    if isinstance(value, tuple):
        value = "[" + ",".join(f"{v:g}" for v in value) + "]"
    elif value is None:
        value = "null"
    return f"{key}={value}"


def load_entry(
    model: nn.Module, entry: WeightsEntry, registry: Registry | None = None, cfg: Any = None
) -> dict[str, str]:
    """Fetch (verified) and load one entry into ``model``; returns the files' safetensors metadata.

    ``cfg``: the resolved recipe ``model`` was built from (reused if the file must be converted).
    Preprocessing that differs from the entry's is refused before anything is fetched
    (:func:`check_preprocess`).
    """
    if not entry.verified:
        raise UnverifiedWeightsError(
            f"weights '{entry.name}' are listed from their public source only ({entry.source_page}); zoo never "
            "loads weights without a sha256 in the manifest. Convert a checked copy with zoo weights convert "
            "and pass it as checkpoint="
        )
    check_preprocess(model, entry, cfg)
    paths = fetch_entry(entry, registry=registry, cfg=cfg)
    state, meta = read_safetensors(paths)
    apply_entry(model, entry, state)
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
