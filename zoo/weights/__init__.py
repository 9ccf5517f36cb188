"""Released weights: manifests, verified fetching (mirror, cache, sources), loading and conversion.

    zoo.weights.list_weights("tf_efficientnet_lite*")
    entry = zoo.weights.get_weights("tf_efficientnet_lite0.in1k")   # preprocessing, licence, files
    paths = zoo.weights.fetch_entry(entry)                          # verified local safetensors
    zoo.weights.export_mirror("/mnt/mirror")                        # for ZOO_WEIGHTS_MIRROR offline use

Environment: ``ZOO_CACHE_DIR``, ``ZOO_WEIGHTS_MIRROR``, ``ZOO_OFFLINE=1``, ``ZOO_WEIGHTS_MANIFEST``,
``ZOO_DOWNLOAD_RETRIES``, ``ZOO_DOWNLOAD_TIMEOUT``, ``ZOO_NO_PROGRESS``, ``HF_ENDPOINT``.
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
    "UnknownWeightsError": "zoo.weights.errors",
    "UnverifiedWeightsError": "zoo.weights.errors",
    "StateDictMismatchError": "zoo.weights.errors",
    "WeightsLoadError": "zoo.weights.errors",
    "WeightsNotFoundError": "zoo.weights.errors",
    "check_fit": "zoo.weights.fit",
    "fit_state": "zoo.weights.fit",
    "place_backbone_state": "zoo.weights.fit",
    "read_upstream_checkpoint": "zoo.weights.upstream",
    "unwrap_state_dict": "zoo.weights.upstream",
    "convert_checkpoint": "zoo.weights.convert",
    "WeightsEntry": "zoo.weights.manifest",
    "entry_for_recipe": "zoo.weights.manifest",
    "get_weights": "zoo.weights.manifest",
    "list_weights": "zoo.weights.manifest",
    "load_entries": "zoo.weights.manifest",
    "cache_dir": "zoo.weights.store",
    "fetch_entry": "zoo.weights.store",
    "fetch_file": "zoo.weights.store",
    "mirror_dirs": "zoo.weights.store",
    "offline": "zoo.weights.store",
    "verify_entry": "zoo.weights.store",
    "export_mirror": "zoo.weights.mirror",
    "load_entry": "zoo.weights.loading",
    "load_pretrained": "zoo.weights.loading",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo.weights' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
