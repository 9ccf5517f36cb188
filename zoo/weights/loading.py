"""``pretrained=True``: the recipe's manifest entry -> verified safetensors -> the model.

Entries load ``into: model`` (a whole ZooModel state dict, loaded strictly) or ``into: backbone``
(the state dict of the backbone network, e.g. a complete timm model; it is placed on the module
inside ``model.backbone`` whose keys it fits, and keys matching ``load.drop`` may be absent from
the model, e.g. an ImageNet classifier the backbone does not keep). Everything else in the model
(GeM's ``p``) keeps the recipe's initial values. Only safetensors are read here.
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from zoo.registry import Registry, ZooError
from zoo.weights.errors import NoPretrainedWeightsError, UnverifiedWeightsError
from zoo.weights.manifest import WeightsEntry, entry_for_recipe

log = logging.getLogger(__name__)


class WeightsLoadError(ZooError):
    """Verified weights that do not fit the model built from the recipe."""


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


def _dropped(keys: set[str], patterns: tuple[str, ...]) -> set[str]:
    return {k for k in keys if any(fnmatch.fnmatchcase(k, p) for p in patterns)}


def _fit(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], what: str, drop: tuple[str, ...]) -> dict[str, torch.Tensor]:
    missing = sorted(set(own) - set(state))
    unexpected = set(state) - set(own)
    unexpected -= _dropped(unexpected, drop)
    if missing or unexpected:
        un = sorted(unexpected)
        raise WeightsLoadError(
            f"{what}: {len(missing)} missing keys {missing[:8]}, {len(un)} unexpected keys {un[:8]}. "
            "Were the recipe's model settings overridden? Use the overrides the weights list (zoo weights list -l)."
        )
    bad = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in own if state[k].shape != own[k].shape]
    if bad:
        raise WeightsLoadError(f"{what}: shape mismatches (key, file, model): {bad[:6]}")
    return {k: state[k] for k in own}


def _backbone_target(backbone: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[nn.Module, str]:
    """The sub-module of ``backbone`` whose state-dict keys the file's keys fit (by key suffix)."""
    own = backbone.state_dict()
    probe = next((k for k in state if k in own or any(o.endswith("." + k) for o in own)), None)
    if probe is None:
        raise WeightsLoadError(
            f"none of the file's keys (e.g. {list(state)[:3]}) appear in the backbone "
            f"({type(backbone).__name__}, keys e.g. {list(own)[:3]})"
        )
    if probe in own:
        return backbone, ""
    full = next(o for o in own if o.endswith("." + probe))
    prefix = full[: -len(probe) - 1]
    return backbone.get_submodule(prefix), prefix


def place_backbone_state(
    model: nn.Module, state: Mapping[str, torch.Tensor], what: str, drop: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """Map a backbone network's state dict onto the model's own keys (``backbone.<prefix>.<key>``)."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise WeightsLoadError(f"{what}: backbone weights, but the model has no .backbone")
    target, prefix = _backbone_target(backbone, state)
    fitted = _fit(state, target.state_dict(), what, drop)
    base = "backbone." + (prefix + "." if prefix else "")
    return {base + k: v for k, v in fitted.items()}


def apply_entry(model: nn.Module, entry: WeightsEntry, state: Mapping[str, torch.Tensor]) -> None:
    """Load ``state`` (the entry's tensors) into ``model`` as the entry's ``load`` section says."""
    if entry.load_into == "backbone":
        backbone = getattr(model, "backbone", None)
        if backbone is None:
            raise WeightsLoadError(f"weights '{entry.name}' load into a backbone, but the model has no .backbone")
        target, prefix = _backbone_target(backbone, state)
        where = f"backbone.{prefix}" if prefix else "backbone"
        fitted = _fit(state, target.state_dict(), f"weights '{entry.name}' into {where}", entry.drop)
        target.load_state_dict(fitted, strict=True)
        skipped = sorted(set(state) - set(fitted))
        log.info(
            "loaded %d tensors of '%s' into model.%s%s", len(fitted), entry.name, where,
            f" (not used by this model: {', '.join(skipped)})" if skipped else "",
        )
        return
    fitted = _fit(state, model.state_dict(), f"weights '{entry.name}' into recipe '{getattr(model, 'recipe', '?')}'", entry.drop)
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


def load_entry(model: nn.Module, entry: WeightsEntry, registry: Registry | None = None) -> dict[str, str]:
    """Fetch (verified) and load one entry into ``model``; returns the files' safetensors metadata."""
    from zoo.weights.store import fetch_entry

    if not entry.verified:
        raise UnverifiedWeightsError(
            f"weights '{entry.name}' are listed from their public source only ({entry.source_page}); zoo never "
            "loads weights without a sha256 in the manifest. Convert a checked copy with zoo weights convert "
            "and pass it as checkpoint="
        )
    paths = fetch_entry(entry, registry=registry)
    state, meta = read_safetensors(paths)
    apply_entry(model, entry, state)
    check_preprocess(model, entry)
    model.weights_entry = entry.name  # type: ignore[assignment]
    return meta


def load_pretrained(model: nn.Module, cfg: Any, registry: Registry | None = None) -> WeightsEntry | None:
    """Load the default weights of the resolved recipe ``cfg`` into ``model``.

    An ensemble recipe without its own entry loads each member's default weights.
    """
    try:
        entry = entry_for_recipe(cfg, registry)
    except NoPretrainedWeightsError:
        if cfg.get("ensemble") is not None and hasattr(model, "members"):
            from zoo.recipes import get_recipe

            for member, mcfg in zip(model.members, cfg.ensemble.members):
                sub = get_recipe(str(mcfg.recipe), list(mcfg.get("overrides") or []), registry=registry)
                load_pretrained(member, sub, registry)
            return None
        raise
    load_entry(model, entry, registry)
    return entry
