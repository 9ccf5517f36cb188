"""The public factory: a recipe, a resolved config, a run folder or a checkpoint -> a model with its weights.

::

    zoo.create_model("default", pretrained=True)                 # the manifest's default weights
    zoo.create_model("runs/ft")                                  # the run folder of zoo train ... --out runs/ft
    zoo.create_model(checkpoint="runs/ft/model.safetensors")     # a self-describing checkpoint, no recipe
    zoo.create_model("default-finetune", checkpoint="runs/ft/model.safetensors")
    zoo.create_model("tf_efficientnet_lite0.grocery", pretrained=True)   # weights by name (zoo weights publish)

A checkpoint written by ``zoo train`` describes its model (:mod:`zoo.runs`: resolved config with the
real head size, label map, data config), so each of the last three rebuilds exactly the trained model;
so does a weights name whose manifest entry carries the resolved config it was trained with
(:mod:`zoo.weights.publish`), or a recipe whose default weights such an entry is.

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
from zoo.recipes import RECIPE_SUFFIXES, apply_overrides, get_recipe, list_recipes
from zoo.registry import Registry, close_matches
from zoo.runs import WEIGHTS_FILE, CheckpointInfo, read_checkpoint_info
from zoo.weights.catalog import entry_for_recipe, load_entries
from zoo.weights.errors import NoPretrainedWeightsError, UnknownWeightsError
from zoo.weights.fit import check_fit
from zoo.weights.loading import load_entry, load_pretrained
from zoo.weights.origin import WeightsOrigin, find_random_tensors, seeded, tensors_sha256, track_loaded
from zoo.weights.schema import WeightsEntry, is_weights_name

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


def _weights_named(source: object, registry: Registry) -> WeightsEntry | None:
    """The manifest entry ``source`` names when it is a weights name (``ARCH.TAG``), not a recipe.

    Registered recipes win; a name that looks like ``ARCH.TAG`` and is neither a recipe, a manifest
    entry nor an existing path is an error naming the close matches of both kinds.
    """
    if not isinstance(source, str) or not is_weights_name(source) or Path(source).suffix in (*RECIPE_SUFFIXES, ".safetensors"):
        return None
    recipes = list_recipes(registry=registry)
    if source in recipes:
        return None
    entries = load_entries(registry)
    if source in entries:
        return entries[source]
    if Path(source).exists():
        return None
    hints = close_matches(source, [*entries, *recipes])
    raise UnknownWeightsError(
        f"'{source}' is neither a recipe nor weights that a manifest lists."
        + (f" Close matches: {', '.join(hints)}." if hints else "")
        + " List them with: zoo weights list / zoo recipes"
    )


def weights_config(entry: WeightsEntry, overrides: Iterable[str] = (), registry: Registry | None = None) -> DictConfig:
    """The config to build ``entry``'s model: the resolved config it was trained with (published weights:
    real head size; the backbone's own download off), else its recipe with the entry's overrides;
    ``overrides`` on top."""
    overrides = list(overrides)
    if entry.config is None:
        return get_recipe(entry.recipe, [*entry.overrides, *overrides], registry=registry)
    cfg = _weights_from_checkpoint(OmegaConf.create(dict(entry.config)))
    return apply_overrides(cfg, overrides, what=f"weights '{entry.name}'") if overrides else cfg


def _pretrained_weights(
    source: object, cfg: DictConfig, overrides: Iterable[str], registry: Registry
) -> tuple[WeightsEntry | None, DictConfig]:
    """What ``pretrained=True`` loads and the config to build for it: a weights name's own entry; else the
    recipe's weights, built from their own config when they are a published trained model. None when
    the recipe has no entry (:func:`load_pretrained` then raises, or loads an ensemble's members)."""
    entry = _weights_named(source, registry)
    if entry is not None:
        return entry, cfg
    try:
        entry = entry_for_recipe(cfg, registry)
    except NoPretrainedWeightsError:
        return None, cfg
    return entry, (weights_config(entry, overrides, registry) if entry.config is not None else cfg)


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
    elif checkpoint is None and (entry := _weights_named(source, reg)) is not None:
        return weights_config(entry, overrides, reg), None
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
    """Build a model: ``recipe`` is a recipe name, a weights name (``ARCH.TAG``), a resolved config, a
    run folder or a checkpoint file.

    ``pretrained`` loads the weights named, else the recipe's default weights from the manifest
    (ignored with a checkpoint); ``checkpoint`` a zoo safetensors file or run folder. A model loaded
    from a checkpoint or from published weights carries ``labels`` (the label map of its head, when
    known); from a checkpoint also ``checkpoint`` (its path).
    ``seed`` seeds the initialisation of whatever no weights file fills (None: the global random
    state); every model carries ``weights_origin`` (files loaded, random tensors, seed).
    """
    reg = registry or get_registry()
    overrides = list(overrides)
    cfg, info = resolve_model_config(recipe, checkpoint=checkpoint, overrides=overrides, registry=reg)
    entry = None
    if pretrained and info is None:
        entry, cfg = _pretrained_weights(recipe, cfg, overrides, reg)
    model = _build_seeded(cfg, reg, seed)
    with track_loaded(model) as loaded:
        if info is not None:
            load_checkpoint(model, info.path)
            model.checkpoint = str(info.path)  # type: ignore[assignment]
            model.labels = info.labels  # type: ignore[assignment]
        elif entry is not None:
            load_entry(model, entry, reg, cfg)
            if entry.labels is not None:
                model.labels = list(entry.labels)  # type: ignore[assignment]
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


__all__ = [
    "create_model", "head_tensor_prefixes", "load_checkpoint", "resolve_model_config", "weights_config", "weights_origin",
]
