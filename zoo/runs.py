"""The run-folder contract: a trained checkpoint carries everything needed to rebuild its model.

A run folder (``zoo train ... --out runs/ft``) holds::

    runs/ft/model.safetensors   weights; metadata: the resolved model config (real head size), label map,
                                data config, recipe name, training step
    runs/ft/config.json         the same resolved config (written with model.safetensors)
    runs/ft/labels.json         the label map ({"labels": [class name of head row 0, 1, ...]})

The trainer writes weights only through :func:`save_run_weights`; :func:`read_checkpoint_info` reads a
checkpoint's self-description (falling back, for checkpoints written before this contract, to the
``labels.json`` beside it). :func:`zoo.factory.create_model` rebuilds the trained model from either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from zoo.assembly import ModelBuildError
from zoo.atomic import save_safetensors, write_json
from zoo.data.config import DataConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
#: safetensors metadata keys of the contract
META_FORMAT, META_RECIPE, META_CONFIG, META_LABELS, META_DATA = "format", "recipe", "zoo_config", "zoo_labels", "zoo_data_config"


class RunFolderError(ModelBuildError):
    """A run folder or checkpoint that cannot be read as the run-folder contract says."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about the model it belongs to (``config`` None: it does not say)."""

    path: Path
    recipe: str | None
    config: DictConfig | None
    labels: list[str] | None
    data_config: DataConfig | None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def self_describing(self) -> bool:
        return self.config is not None


def _config_dict(cfg: Any) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def save_run_weights(
    path: str | Path,
    state_dict: Mapping[str, Any],
    config: Any,
    labels: Sequence[str] | None,
    *,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``state_dict`` to ``path`` (safetensors, atomically) with the model's self-description.

    ``config`` is the resolved config the model was built from (``model.recipe_cfg``: the real head
    size, stage overrides included); ``labels`` the label map (head row i = ``labels[i]``). Next to a
    ``model.safetensors`` the same description is written as ``config.json`` and ``labels.json``.
    """
    path = Path(path)
    data = _config_dict(config)
    meta = {
        **{k: str(v) for k, v in (metadata or {}).items()},
        META_FORMAT: "zoo",
        META_RECIPE: str(data.get("name")),
        META_CONFIG: json.dumps(data),
        META_DATA: json.dumps(DataConfig.from_recipe(data).to_dict()),
    }
    if labels is not None:
        meta[META_LABELS] = json.dumps(list(labels))
    save_safetensors(path, {k: v.detach() for k, v in state_dict.items()}, metadata=meta)
    if path.name == WEIGHTS_FILE:
        write_json(path.parent / CONFIG_FILE, data)
        if labels is not None:
            write_json(path.parent / LABELS_FILE, {"labels": list(labels)})
    return path


def weights_of(source: str | Path) -> Path:
    """The weights file of a run folder (``runs/ft`` -> ``runs/ft/model.safetensors``) or the file itself."""
    path = Path(source)
    if path.is_dir():
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise RunFolderError(
                f"{path} is a folder without {WEIGHTS_FILE}: not a finished run (train into it with "
                f"zoo train RECIPE --out {path}, or pass the .safetensors file)"
            )
        return weights
    return path


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """The self-description of a zoo safetensors checkpoint (metadata, else the run folder's labels.json)."""
    from safetensors import safe_open

    path = weights_of(path)
    if not path.is_file():
        raise RunFolderError(f"checkpoint {path} does not exist")
    if path.suffix != ".safetensors":
        raise RunFolderError(
            f"checkpoint {path} is not a .safetensors file; zoo never unpickles checkpoints. Convert an "
            "upstream .pth with: zoo weights convert SRC --from LAYOUT --recipe RECIPE --out DST.safetensors"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as exc:
        raise RunFolderError(f"checkpoint {path} cannot be read as safetensors ({type(exc).__name__}: {exc})") from exc
    config = None
    if META_CONFIG in meta:
        try:
            config = OmegaConf.create(json.loads(meta[META_CONFIG]))
        except (ValueError, TypeError) as exc:
            raise RunFolderError(f"checkpoint {path}: metadata '{META_CONFIG}' is not a JSON config ({exc})") from exc
    labels = None
    if META_LABELS in meta:
        labels = list(json.loads(meta[META_LABELS]))
    elif (path.parent / LABELS_FILE).is_file() and path.name.startswith("model"):
        labels = list(json.loads((path.parent / LABELS_FILE).read_text())["labels"])
    data = DataConfig.from_dict(json.loads(meta[META_DATA])) if META_DATA in meta else None
    recipe = meta.get(META_RECIPE) or (str(config.get("name")) if config is not None else None)
    return CheckpointInfo(path, recipe, config, labels, data, meta)
