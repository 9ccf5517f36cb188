"""Embedding folders written by ``zoo embed``: a manifest plus fixed-size shards.

Layout of ``EMB/``::

    manifest.json              # recipe, dim, dtype, shard size, record count and fingerprint, and the
                               # model identity (zoo.inference.identity: recipe, weights sha256, config,
                               # preprocessing, dim, flip-TTA) that searches check before mixing folders
    shard-00000.json           # {"ids": [...], "skipped": [{"id", "path", "error"}, ...]}
    shard-00000.safetensors    # {"embeddings": N x D} (float32 or float16), rows in the order of "ids"

Shard ``k`` always holds records ``[k*S, (k+1)*S)`` of the input list, so a shard is either complete
(both files present; the ``.json`` is written first, the ``.safetensors`` last, each atomically) or
absent. That makes an interrupted run resumable without recomputing finished shards or duplicating
ids, and lets ``torchrun`` ranks take shards ``rank, rank + world, ...`` without talking to each other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from zoo.registry import ZooError

if TYPE_CHECKING:
    from zoo.inference.identity import ModelIdentity

FORMAT = "zoo-embeddings/1"
MANIFEST = "manifest.json"


class EmbeddingStoreError(ZooError):
    """An embeddings folder that is missing, incomplete or written with other settings."""


def shard_stem(k: int) -> str:
    return f"shard-{k:05d}"


def records_fingerprint(ids: Sequence[str]) -> str:
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class Skipped:
    """An image that could not be read, with the reason."""

    id: str
    path: str
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "path": self.path, "error": self.error}


class EmbeddingStore:
    """Read access to an embeddings folder (all shards, in input order)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        mf = self.path / MANIFEST
        if not mf.is_file():
            raise EmbeddingStoreError(
                f"{self.path} is not an embeddings folder (no {MANIFEST}); create one with: zoo embed RECIPE "
                f"--images DIR --out {self.path}"
            )
        self.manifest: dict[str, Any] = json.loads(mf.read_text())
        if self.manifest.get("format") != FORMAT:
            raise EmbeddingStoreError(f"{mf}: format '{self.manifest.get('format')}', expected '{FORMAT}'")

    @property
    def num_shards(self) -> int:
        return int(self.manifest["num_shards"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def identity(self) -> "ModelIdentity":
        """The model that wrote these vectors (what an older folder records, when it has no identity)."""
        from zoo.inference.identity import ModelIdentity

        return ModelIdentity.from_manifest(self.manifest)

    def shard_files(self, k: int) -> tuple[Path, Path]:
        stem = shard_stem(k)
        return self.path / f"{stem}.json", self.path / f"{stem}.safetensors"

    def is_complete(self, k: int) -> bool:
        meta, data = self.shard_files(k)
        return meta.is_file() and data.is_file()

    def missing_shards(self) -> list[int]:
        return [k for k in range(self.num_shards) if not self.is_complete(k)]

    def check_complete(self) -> None:
        missing = self.missing_shards()
        if missing:
            shown = ", ".join(str(k) for k in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise EmbeddingStoreError(
                f"{self.path}: {len(missing)} of {self.num_shards} shards are not written yet ({shown}). "
                "Run the same `zoo embed` command again to finish them (finished shards are kept)."
            )

    def read_shard(self, k: int, dtype: np.dtype | type = np.float32) -> tuple[list[str], np.ndarray]:
        from safetensors.numpy import load_file

        meta, data = self.shard_files(k)
        ids = json.loads(meta.read_text())["ids"]
        emb = load_file(str(data))["embeddings"]
        if emb.shape[0] != len(ids):
            raise EmbeddingStoreError(f"{data}: {emb.shape[0]} rows but {len(ids)} ids in {meta.name}")
        return list(ids), emb.astype(dtype, copy=False)

    def iter_shards(self, dtype: np.dtype | type = np.float32) -> Iterator[tuple[list[str], np.ndarray]]:
        self.check_complete()
        for k in range(self.num_shards):
            yield self.read_shard(k, dtype)

    def load(self, dtype: np.dtype | type = np.float32) -> tuple[list[str], np.ndarray]:
        """Every id and embedding row (``N x D``), in input order; raises if shards are missing."""
        ids: list[str] = []
        parts: list[np.ndarray] = []
        for shard_ids, emb in self.iter_shards(dtype):
            ids.extend(shard_ids)
            parts.append(emb)
        if not parts:
            return ids, np.zeros((0, self.dim), dtype=dtype)
        return ids, np.concatenate(parts, axis=0)

    def write_shard(self, k: int, ids: Sequence[str], embeddings: np.ndarray, skipped: Sequence[Skipped] = ()) -> None:
        """Write shard ``k`` atomically: the ids ``.json`` first, the ``.safetensors`` (completion mark) last."""
        import torch

        from zoo import atomic

        if embeddings.shape != (len(ids), self.dim):
            raise EmbeddingStoreError(f"shard {k}: embeddings {embeddings.shape} for {len(ids)} ids of dim {self.dim}")
        dtype = np.float16 if self.manifest.get("dtype") == "float16" else np.float32
        meta, data = self.shard_files(k)
        atomic.write_json(meta, {"ids": list(ids), "skipped": [s.to_dict() for s in skipped]})
        atomic.save_safetensors(
            data, {"embeddings": torch.from_numpy(np.ascontiguousarray(embeddings, dtype=dtype))},
            metadata={"shard": str(k), "format": FORMAT},
        )

    @classmethod
    def create(cls, path: str | Path, manifest: dict[str, Any]) -> "EmbeddingStore":
        """Write ``manifest.json`` (format added) and open the folder."""
        from zoo import atomic

        atomic.write_json(Path(path) / MANIFEST, {"format": FORMAT, **manifest})
        return cls(path)

    def skipped(self) -> list[Skipped]:
        out: list[Skipped] = []
        for k in range(self.num_shards):
            meta, _ = self.shard_files(k)
            if meta.is_file():
                out.extend(Skipped(**s) for s in json.loads(meta.read_text()).get("skipped", []))
        return out

    def __len__(self) -> int:
        total = 0
        for k in range(self.num_shards):
            meta, _ = self.shard_files(k)
            if meta.is_file():
                total += len(json.loads(meta.read_text())["ids"])
        return total
