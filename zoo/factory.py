"""The public factory: a recipe, a resolved config, a run folder or a checkpoint -> a model with its weights.

::

    zoo.create_model("default", pretrained=True)                 # the manifest's default weights
    zoo.create_model("runs/ft")                                  # the run folder of zoo train ... --out runs/ft
    zoo.create_model(checkpoint="runs/ft/model.safetensors")     # a self-describing checkpoint, no recipe
    zoo.create_model("default-finetune", checkpoint="runs/ft/model.safetensors")

A checkpoint written by ``zoo train`` describes its model (:mod:`zoo.runs`: resolved config with the
real head size, label map, data config), so each of the last three rebuilds exactly the trained model.

Every model is built under a seed (``seed=0``) and carries ``weights_origin``
(:class:`~zoo.weights.origin.WeightsOrigin`): the sha256 of the weight files loaded into it and the
tensors left at a random initialisation, found by :func:`~zoo.weights.origin.find_random_tensors`
(a warning names them). The same call therefore always gives the same model, random layers included.
The layering is one-way: this module sits above :mod:`zoo.assembly` (the wiring of registered parts),
:mod:`zoo.runs` (the run-folder contract) and :mod:`zoo.weights` (manifest weights, state-dict fitting).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from omegaconf import DictConfig, OmegaConf
from torch import nn

from zoo.assembly import ModelBuildError, ZooModel, build_model
from zoo.plugins import get_registry
from zoo.recipes import apply_overrides, get_recipe, list_recipes
from zoo.registry import Registry
from zoo.runs import WEIGHTS_FILE, CheckpointInfo, read_checkpoint_info
from zoo.weights.fit import check_fit
from zoo.weights.loading import load_pretrained
from zoo.weights.origin import WeightsOrigin, find_random_tensors, seeded, tensors_sha256, track_loaded

log = logging.getLogger(__name__)


def _is_checkpoint_source(source: str | Path, registry: Registry) -> bool:
    """A path to a run folder or a ``.safetensors`` file (a registered recipe name wins over a folder)."""
    if isinstance(source, Path):
        return True
    if source.endswith(".safetensors"):
        return True
    if source in list_recipes(registry=registry):
        return False
    return Path(source).is_dir() and (Path(source) / WEIGHTS_FILE).is_file()


def _weights_from_checkpoint(cfg: DictConfig) -> DictConfig:
    """A trained model's config with its backbone's own download switch off: the weights come from the
    checkpoint (a run that started from ImageNet records ``model.backbone.pretrained: true``)."""
    backbone = (cfg.get("model") or {}).get("backbone")
    if backbone is not None and backbone.get("pretrained"):
        OmegaConf.set_struct(cfg, False)
        cfg.model.backbone.pretrained = False
    return cfg


def _overridden(overrides: Iterable[str], key: str) -> bool:
    return any(o.split("=", 1)[0].strip().lstrip("+") == key for o in overrides)


def resolve_model_config(
    source: str | Path | DictConfig | None,
    *,
    checkpoint: str | Path | None = None,
    overrides: Iterable[str] = (),
    registry: Registry | None = None,
) -> tuple[DictConfig, CheckpointInfo | None]:
    """The resolved config to build and the checkpoint's self-description (None without a checkpoint).

    A self-describing checkpoint's own config wins over the recipe (overrides are applied on top of
    it); for an older checkpoint without one, the recipe is used and its head is sized to the
    checkpoint's label map.
    """
    reg = registry or get_registry()
    overrides = list(overrides)
    recipe: str | None = None
    cfg: DictConfig | None = None
    if isinstance(source, DictConfig):
        cfg = apply_overrides(source, overrides, what=str(source.get("name"))) if overrides else source
    elif source is not None and _is_checkpoint_source(source, reg):
        if checkpoint is not None:
            raise ModelBuildError(
                f"'{source}' is a checkpoint or run folder and checkpoint={checkpoint} is given too; pass one of them"
            )
        checkpoint = source
    elif source is not None:
        recipe = str(source)
    if checkpoint is None:
        if cfg is None:
            if recipe is None:
                raise ModelBuildError("create_model needs a recipe name, a config, a run folder or checkpoint=")
            cfg = get_recipe(recipe, overrides, registry=reg)
        return cfg, None
    info = read_checkpoint_info(checkpoint)
    if cfg is not None:
        return cfg, info
    if info.self_describing:
        assert info.config is not None
        if recipe is not None and info.recipe not in (None, recipe):
            raise ModelBuildError(
                f"checkpoint {info.path} was trained from recipe '{info.recipe}', not '{recipe}'; pass '{info.recipe}' "
                "or leave the recipe out to rebuild the model from the checkpoint alone"
            )
        cfg = _weights_from_checkpoint(OmegaConf.create(OmegaConf.to_container(info.config, resolve=True)))
        return (apply_overrides(cfg, overrides, what=f"checkpoint {info.path}") if overrides else cfg), info
    if recipe is None:
        recipe = info.recipe
        if recipe is None:
            raise ModelBuildError(
                f"checkpoint {info.path} does not say which model it belongs to (no zoo_config or recipe metadata); "
                "pass its recipe: zoo.create_model(RECIPE, checkpoint=...)"
            )
    cfg = get_recipe(recipe, overrides, registry=reg)
    head = (cfg.get("model") or {}).get("head")
    if info.labels and head is not None and head.get("type") is not None and not _overridden(overrides, "model.head.num_classes"):
        OmegaConf.set_struct(cfg, False)
        cfg.model.head.num_classes = len(info.labels)  # its labels.json sizes the head of an older run
    return cfg, info


def load_checkpoint(model: nn.Module, path: str | Path) -> dict[str, str]:
    """Load a zoo safetensors checkpoint strictly into ``model``; returns its metadata."""
    from safetensors.torch import load_file

    info = read_checkpoint_info(path)
    state = load_file(str(info.path))
    check_fit(state, model.state_dict(), f"checkpoint {info.path} for recipe '{getattr(model, 'recipe', '?')}'",
              hint="Was it written with the same overrides?", error=ModelBuildError)
    model.load_state_dict(state, strict=True)
    return dict(info.metadata)


def create_model(
    recipe: str | Path | DictConfig | None = None,
    *,
    pretrained: bool = False,
    checkpoint: str | Path | None = None,
    overrides: Iterable[str] = (),
    registry: Registry | None = None,
    seed: int | None = 0,
) -> nn.Module:
    """Build a model: ``recipe`` is a recipe name, a resolved config, a run folder or a checkpoint file.

    ``pretrained`` loads the recipe's default weights from the manifest (ignored with a checkpoint);
    ``checkpoint`` a zoo safetensors file or run folder. A model loaded from a checkpoint carries
    ``checkpoint`` (its path) and ``labels`` (the label map of its head, when known).
    ``seed`` seeds the initialisation of whatever no weights file fills (None: the global random
    state); every model carries ``weights_origin`` (files loaded, random tensors, seed).
    """
    reg = registry or get_registry()
    cfg, info = resolve_model_config(recipe, checkpoint=checkpoint, overrides=overrides, registry=reg)
    model = _build_seeded(cfg, reg, seed)
    with track_loaded(model) as loaded:
        if info is not None:
            load_checkpoint(model, info.path)
            model.checkpoint = str(info.path)  # type: ignore[assignment]
            model.labels = info.labels  # type: ignore[assignment]
        elif pretrained:
            load_pretrained(model, cfg, registry=reg)
    model.weights_origin = weights_origin(model, cfg, reg, seed, loaded.keys, info)  # type: ignore[assignment]
    return model


def _build_seeded(cfg: DictConfig, registry: Registry, seed: int | None) -> nn.Module:
    with seeded(seed):
        return build_model(cfg, registry)


def head_tensor_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict key prefixes of the classification heads (``head.``, ``members.0.head.``, ...):
    tensors under them do not shape the descriptor."""
    return tuple(f"{name}.head." if name else "head." for name, m in model.named_modules()
                 if isinstance(m, ZooModel) and m.head is not None)


def weights_origin(
    model: nn.Module,
    cfg: DictConfig,
    registry: Registry,
    seed: int | None,
    loaded: set[str],
    info: CheckpointInfo | None = None,
) -> WeightsOrigin:
    """The files loaded into ``model`` and the tensors left random (a warning names those)."""
    from zoo.weights.catalog import get_weights
    from zoo.weights.integrity import sha256_of

    if info is not None:
        files: list[str] = [f"sha256:{sha256_of(info.path)}"]
    else:
        entries = dict.fromkeys(str(m.weights_entry) for m in model.modules() if getattr(m, "weights_entry", None))
        files = [f"sha256:{f.sha256}" for name in entries for f in get_weights(name, registry).files]
    random = find_random_tensors(model, loaded, lambda other: _build_seeded(cfg, registry, other), seed)
    heads = head_tensor_prefixes(model)
    shaping = tuple(k for k in random if not k.startswith(heads))
    head_only = tuple(k for k in random if k.startswith(heads))
    origin = WeightsOrigin(tuple(files), shaping, seed, tensors_sha256(model, list(shaping)) if shaping else None,
                           random_head=head_only)
    what = f"recipe '{getattr(model, 'recipe', None) or cfg.get('name')}'"
    seeding = "seeded with 0" if seed == 0 else (f"seeded with {seed}" if seed is not None else "not seeded")
    if shaping:
        log.warning("%s: weights are RANDOM: %s were not loaded from any weights file (initialisation %s); "
                    "its descriptors carry no learned meaning", what, origin.describe_random(), seeding)
    if head_only:
        log.warning("%s: the head has %s (not loaded from a weights file; initialisation %s); descriptors are not "
                    "affected, its class scores are", what, origin.describe_random(head=True), seeding)
    return origin


__all__ = ["create_model", "head_tensor_prefixes", "load_checkpoint", "resolve_model_config", "weights_origin"]
