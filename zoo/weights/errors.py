"""Errors raised while reading manifests, fetching, verifying and loading weights."""

from __future__ import annotations

from zoo.registry import UnknownComponentError, ZooError


class SettingError(ZooError):
    """An environment setting (``ZOO_DOWNLOAD_RETRIES``, ...) with a value zoo cannot use."""


class ManifestError(ZooError):
    """A weights manifest that does not follow the schema; the message names file, entry and field."""


class UnknownWeightsError(UnknownComponentError):
    """A weights name that no manifest lists."""


class NoPretrainedWeightsError(ZooError):
    """``pretrained=True`` for a recipe that no manifest entry belongs to."""


class UnverifiedWeightsError(ZooError):
    """A manifest entry listed with its public source only: no hash, so it is never loaded."""


class IntegrityError(ZooError):
    """A file whose size or sha256 differs from the manifest (truncated, tampered, wrong file)."""


class WeightsNotFoundError(ZooError):
    """No place searched (explicit file, mirror, cache, sources) had a file with the expected hash."""


class DownloadError(ZooError):
    """A source that could not be read (HTTP error, connection lost, missing package file)."""


class PretrainedUnavailableError(ZooError):
    """Pretrained weights a library downloads itself (timm, open_clip) that cannot be had: offline and
    not cached, no connection, or not on the hub. The message names the weights, the places searched
    and the fixes."""


class PreprocessMismatchError(ZooError):
    """Weights whose manifest preprocessing differs from the recipe's (the message names both and the fix)."""


class StateDictMismatchError(ZooError):
    """A state dict whose keys or shapes do not fit a model (the default error of :mod:`zoo.weights.fit`)."""


class ConversionError(ZooError):
    """An upstream checkpoint that cannot be read safely or does not map exactly onto the recipe's model."""


class WeightsLoadError(ZooError):
    """Verified weights that do not fit the model built from the recipe."""


class PublishError(ZooError):
    """``zoo weights publish`` input that cannot be published (run folder, name, flags, target folder)."""
