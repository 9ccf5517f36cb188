"""Where inference inputs come from: image lists, ``zoo embed`` folders or index folders.

``--index``/``--query``/``--train``/``--test`` of the commands accept any of:

* an **index folder** (``index.json``, from ``zoo index``) - gallery side only;
* an **embeddings folder** (``manifest.json``, from ``zoo embed``);
* an **image folder or CSV** - embedded with the command's recipe into ``WORK/<name>-<images>-<key>/``
  (a resumable shard folder, so a second run with the same images and model reuses it; other images
  or another model - recipe, checkpoint, overrides - get their own folder).

Labels come from the CSV (``landmark_id``/``label``/``instance`` column) or the image-folder tree;
an embeddings folder written by ``zoo embed`` records where its images came from
(:func:`source_meta`), and its labels are read back from there (or from ``--labels``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn

from zoo.data.images import list_images
from zoo.inference.embed import EmbedOptions, embed_to_folder
from zoo.inference.identity import ModelIdentity
from zoo.data.config import DataConfig, model_data_configs
from zoo.inference.shards import MANIFEST, EmbeddingStore
from zoo.registry import ZooError

log = logging.getLogger(__name__)


class SourceError(ZooError):
    """An input that is neither an image list, an embeddings folder nor an index folder."""


@dataclass
class EmbeddedSet:
    """Ids, L2-normalised embeddings and (when known) labels and paths of one side of a search."""

    ids: list[str]
    embeddings: np.ndarray
    labels: list[str | None] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    skipped: list[Any] = field(default_factory=list)
    identity: ModelIdentity | None = None  # the model that made the embeddings (None: not known)

    def __post_init__(self) -> None:
        if not self.labels:
            self.labels = [None] * len(self.ids)

    @property
    def has_labels(self) -> bool:
        return bool(self.ids) and all(label is not None for label in self.labels)


def is_index_folder(path: str | Path) -> bool:
    return (Path(path) / "index.json").is_file()


def is_embeddings_folder(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def source_identity(source: str | Path) -> ModelIdentity | None:
    """The recorded model identity of an embeddings or index folder (None for images)."""
    if is_embeddings_folder(source):
        return EmbeddingStore(source).identity
    if is_index_folder(source):
        return ModelIdentity.from_manifest(json.loads((Path(source) / "index.json").read_text()))
    return None


def input_identities(
    model: nn.Module | None,
    preprocesses: Sequence[DataConfig] | None,
    options: EmbedOptions,
    inputs: Sequence[tuple[str, str | Path | None]],
    *,
    recipe: str | None = None,
) -> list[tuple[str, ModelIdentity | None]]:
    """``(what, identity)`` of a command's inputs (``(flag, path)``; None paths left out): each folder's
    recorded identity, and the command's model for image inputs - known before anything is embedded."""
    sides: list[tuple[str, ModelIdentity | None]] = []
    images = False
    for flag, path in inputs:
        if path is None:
            continue
        ident = source_identity(path)
        images = images or ident is None
        if ident is not None:
            sides.append((f"{flag} {path}", ident))
    if model is not None and images:
        pre = preprocesses if preprocesses is not None else model_data_configs(model)
        sides.insert(0, (f"recipe '{recipe or getattr(model, 'recipe', '?')}' (embedding the images)",
                         ModelIdentity.of_model(model, pre, flip_tta=options.flip_tta)))
    return sides


def load_set(
    source: str | Path,
    *,
    name: str,
    model: nn.Module | None,
    work: str | Path,
    image_root: str | Path | None = None,
    labels: str | Path | None = None,
    options: EmbedOptions | None = None,
    preprocesses: Sequence[DataConfig] | None = None,
    meta: dict[str, Any] | None = None,
) -> EmbeddedSet:
    """Embeddings (and labels/paths) for ``source``; images are embedded into ``work/name``."""
    source = Path(source)
    label_map = _labels_csv(labels) if labels else {}
    if is_embeddings_folder(source):
        store = EmbeddingStore(source)
        ids, emb = store.load()
        label_map = label_map or recorded_labels(store.manifest, source)
        return EmbeddedSet(ids, emb, [label_map.get(i) for i in ids] if label_map else [], identity=store.identity)
    if is_index_folder(source):
        raise SourceError(f"{source} is an index folder; it can only be the gallery (--index) side")
    if not source.exists():
        raise SourceError(f"{source}: no such image folder, CSV, embeddings folder or index folder")
    if model is None:
        raise SourceError(f"{source} holds images; a recipe is needed to embed them")
    records = list_images(source, image_root)
    meta = {**(meta or {}), **source_meta(source, image_root)}
    folder = Path(work) / work_folder_name(name, source, meta)
    report = embed_to_folder(model, records, folder, options=options, preprocesses=preprocesses, meta=meta)
    store = EmbeddingStore(folder)
    ids, emb = store.load()
    by_id = {r.id: r for r in records}
    labs = [label_map.get(i, by_id[i].label) if label_map else by_id[i].label for i in ids]
    return EmbeddedSet(ids, emb, labs, {i: by_id[i].path for i in ids}, store.skipped() or report.skipped,
                       identity=store.identity)


def _labels_csv(path: str | Path) -> dict[str, str]:
    """``id -> label`` from a CSV with an id/path column and a label column."""
    recs = list_images(path, Path(path).parent)
    return {r.id: r.label for r in recs if r.label is not None}


def source_meta(images: str | Path, image_root: str | Path | None) -> dict[str, str | None]:
    """What an embeddings manifest records about its images: the CSV/folder and the CSV's image root."""
    return {"images": str(Path(images).resolve()),
            "image_root": str(Path(image_root).resolve()) if image_root is not None else None}


def work_folder_name(name: str, source: str | Path, meta: dict[str, Any]) -> str:
    """``<name>-<images>-<8 hex>``: one work folder per (images, model) pair."""
    key = json.dumps(meta, sort_keys=True, default=str)
    return f"{name}-{Path(source).stem or 'images'}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def recorded_labels(manifest: dict[str, Any], folder: str | Path) -> dict[str, str]:
    """``id -> label`` of the images an embeddings folder was made from (empty when unknown or gone)."""
    images = manifest.get("images")
    if not images:
        return {}
    if not Path(images).exists():
        log.info("%s: its images %s are gone; no labels (give --labels CSV)", folder, images)
        return {}
    return {r.id: r.label for r in list_images(images, manifest.get("image_root")) if r.label is not None}

