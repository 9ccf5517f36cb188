"""Released weights: manifests, verified fetching (mirror, cache, sources), loading and conversion.

    zoo.weights.list_weights("tf_efficientnet_lite*")
    entry = zoo.weights.get_weights("tf_efficientnet_lite0.in1k")   # preprocessing, licence, files
    paths = zoo.weights.fetch_entry(entry)                          # verified local safetensors
    zoo.weights.export_mirror("/mnt/mirror")                        # for ZOO_WEIGHTS_MIRROR offline use
    zoo.weights.publish_run("runs/ft", "tf_efficientnet_lite0.shop", "release/", license="MIT")  # a trained run

Modules by kind: ``env`` (environment settings), ``integrity`` (sha256, size + hash check, file
lock), ``schema`` (manifest YAML -> :class:`WeightsEntry`), ``catalog`` (the cached entries in use,
lookups), ``resolve`` (mirror -> cache -> sources), ``hub`` (``hf-hub:`` sources through
huggingface_hub), ``verify``, ``mirror``, ``upstream`` (reading upstream pickles), ``fit`` (fitting a
state dict to a model), ``convert``, ``loading`` (``pretrained=True``), ``library`` (timm/open_clip's
own downloads: offline, one clear error), ``publish`` (a trained run's weights as a release).
Environment variables: see :mod:`zoo.weights.env`.
Names are imported on first use, so reading manifests and fetching files does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ConversionError": "zoo.weights.errors",
    "DownloadError": "zoo.weights.errors",
    "IntegrityError": "zoo.weights.errors",
    "ManifestError": "zoo.weights.errors",
    "NoPretrainedWeightsError": "zoo.weights.errors",
    "PreprocessMismatchError": "zoo.weights.errors",
    "PretrainedUnavailableError": "zoo.weights.errors",
    "PublishError": "zoo.weights.errors",
    "SettingError": "zoo.weights.errors",
    "StateDictMismatchError": "zoo.weights.errors",
    "UnknownWeightsError": "zoo.weights.errors",
    "UnverifiedWeightsError": "zoo.weights.errors",
    "WeightsLoadError": "zoo.weights.errors",
    "WeightsNotFoundError": "zoo.weights.errors",
    "apply_offline_switches": "zoo.weights.env",
    "cache_dir": "zoo.weights.env",
    "cache_path": "zoo.weights.env",
    "mirror_dirs": "zoo.weights.env",
    "offline": "zoo.weights.env",
    "check_file": "zoo.weights.integrity",
    "sha256_of": "zoo.weights.integrity",
    "WeightsEntry": "zoo.weights.schema",
    "parse_manifest": "zoo.weights.schema",
    "read_manifest": "zoo.weights.schema",
    "entry_for_recipe": "zoo.weights.catalog",
    "get_weights": "zoo.weights.catalog",
    "list_weights": "zoo.weights.catalog",
    "load_entries": "zoo.weights.catalog",
    "fetch_entry": "zoo.weights.resolve",
    "fetch_file": "zoo.weights.resolve",
    "FileStatus": "zoo.weights.verify",
    "verify_entry": "zoo.weights.verify",
    "export_mirror": "zoo.weights.mirror",
    "check_fit": "zoo.weights.fit",
    "fit_state": "zoo.weights.fit",
    "place_backbone_state": "zoo.weights.fit",
    "read_upstream_checkpoint": "zoo.weights.upstream",
    "unwrap_state_dict": "zoo.weights.upstream",
    "convert_checkpoint": "zoo.weights.convert",
    "library_download": "zoo.weights.library",
    "load_entry": "zoo.weights.loading",
    "load_pretrained": "zoo.weights.loading",
    "PublishReport": "zoo.weights.publish",
    "publish_run": "zoo.weights.publish",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo.weights' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
