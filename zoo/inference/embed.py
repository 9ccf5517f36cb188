"""Embedding at scale: records -> DataLoader -> shape buckets -> model -> shards on disk.

* **Decode once.** Workers decode each image once and resize it for every model input (ensemble
  members at their own sizes); the device normalises and runs each member on its own input. Without
  workers (the CPU default) a thread per core decodes each chunk between forward passes.
* **JPEGs decoded on the GPU.** On CUDA (``decode="auto"``) workers only read JPEG bytes; the main
  process decodes them in batches with nvJPEG and resizes them on the GPU exactly as PIL does
  (:mod:`zoo.inference.gpu_decode`); other files and files nvJPEG rejects take the CPU path.
  ``decode="cpu"`` forces the CPU path.
* **Buckets, no padding.** Samples are grouped by exact input shape (``long_side`` resizing keeps
  the aspect ratio), a bucket runs when it holds ``batch_size`` samples, the rest when a shard
  ends. Each descriptor is the batch-1 descriptor: nothing is padded or cropped.
* **Device speed-ups where they help.** CUDA: pinned host memory, non-blocking copies,
  channels_last and bf16 (fp16 where bf16 is missing) autocast. CPU: float32, channels_last.
* **Flat memory.** Only one shard of results (``shard_size x D``) and a few chunks of decoded
  images are held at a time, whatever the number of images.
* **Resumable and distributable.** See :mod:`zoo.inference.shards`: finished shards are never
  recomputed; under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) rank ``r`` writes shards
  ``r, r + W, ...`` on ``cuda:LOCAL_RANK``. No process group is needed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.data.config import DataConfig, model_data_configs
from zoo.data.images import ImageRecord
from zoo.distributed import DistContext
from zoo.inference.dataset import ImageStream, default_decode_threads, default_num_workers, sample_loader
from zoo.inference.gpu_decode import DECODE_MODES, DeviceChunks, uses_device_decoding
from zoo.inference.identity import ModelIdentity
from zoo.inference.shards import (
    MANIFEST,
    EmbeddingStore,
    EmbeddingStoreError,
    Skipped,
    records_fingerprint,
    shard_stem,
)

log = logging.getLogger(__name__)

AMP_MODES = ("auto", "off", "bf16", "fp16")


@dataclass
class EmbedOptions:
    """Knobs of the embed loop (defaults suit both the CPU box and a GPU)."""

    batch_size: int = 32
    num_workers: int | None = None  # None: default_num_workers()
    shard_size: int = 4096
    flip_tta: bool = False
    fp16: bool = False  # store embeddings as float16
    amp: str = "auto"  # auto: bf16 (else fp16) autocast on CUDA, off on CPU
    channels_last: bool = True
    device: str = "auto"  # auto: cuda:LOCAL_RANK when CUDA is available, else cpu
    progress: bool = True
    decode: str = "auto"  # auto: JPEG batches decoded on a CUDA device (nvJPEG), else on the CPU

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise EmbeddingStoreError(f"amp must be one of {', '.join(AMP_MODES)}, got '{self.amp}'")
        if self.decode not in DECODE_MODES:
            raise EmbeddingStoreError(f"decode must be one of {', '.join(DECODE_MODES)}, got '{self.decode}'")
        if self.batch_size < 1 or self.shard_size < 1:
            raise EmbeddingStoreError("batch_size and shard_size must be >= 1")


@dataclass
class EmbedReport:
    """What one ``embed_to_folder`` call did."""

    out: Path
    num_records: int
    num_shards: int
    shards_done: list[int] = field(default_factory=list)
    shards_reused: list[int] = field(default_factory=list)
    embedded: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def resolve_device(device: str, dist: DistContext | None = None) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", (dist or DistContext.from_env()).local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(device)


def autocast_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype: ``auto`` is bf16 (fp16 without bf16 support) on CUDA and off on CPU."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or device.type != "cuda" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


class Embedder:
    """A model on a device with its preprocessing: uint8 input batches -> L2-normalised ``B x D``.

    ``preprocesses``: one :class:`~zoo.data.config.DataConfig` per model input (default: the model's
    own, one per ensemble member). For an ensemble each member runs on its own input and the
    ensemble fuses the per-member descriptors (:meth:`zoo.assembly.ZooEnsemble.member_embeddings`,
    :meth:`~zoo.assembly.ZooEnsemble.combine`).
    """

    def __init__(
        self,
        model: nn.Module,
        preprocesses: Sequence[DataConfig] | None = None,
        *,
        device: torch.device | str = "cpu",
        amp: str = "auto",
        channels_last: bool = True,
        flip_tta: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.preprocesses = list(preprocesses) if preprocesses is not None else model_data_configs(model)
        self.members: list[nn.Module] | None = list(model.members) if hasattr(model, "members") else None
        expected = len(self.members) if self.members is not None else 1
        if len(self.preprocesses) != expected:
            raise EmbeddingStoreError(f"{len(self.preprocesses)} preprocessings for {expected} model inputs")
        self.amp_dtype = autocast_dtype(self.device, amp)
        self.flip_tta = flip_tta
        self.embedding_dim = int(getattr(model, "embedding_dim"))

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _one(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            emb = module.embed(x).float()
            if self.flip_tta:
                emb = emb + module.embed(x.flip(3)).float()
        return F.normalize(emb, dim=1)

    def _member_embeddings(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        with self._autocast():
            embs = self.model.member_embeddings(xs)
            if self.flip_tta:
                flipped = self.model.member_embeddings([x.flip(3) for x in xs])
                embs = [a + b for a, b in zip(embs, flipped)]
        return [F.normalize(e.float(), dim=1) for e in embs]

    def _inputs(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [p.normalize(t.to(self.device, non_blocking=True)) for p, t in zip(self.preprocesses, inputs)]

    @torch.inference_mode()
    def __call__(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """``inputs``: one uint8 ``B x 3 x H x W`` batch per preprocessing (CPU or device)."""
        xs = self._inputs(inputs)
        if self.members is None:
            return self._one(self.model, xs[0])
        return self.model.combine(self._member_embeddings(xs))

    @torch.inference_mode()
    def with_head(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Descriptors and the head's class cosines (``B x C``, averaged over ensemble members, as
        :meth:`zoo.assembly.ZooEnsemble.forward`); ``None`` when a model has no head."""
        xs = self._inputs(inputs)
        with self._autocast():
            outs = self.model.member_outputs(xs) if self.members is not None else [self.model(xs[0])]
            flipped = None
            if self.flip_tta:
                flipped = (self.model.member_outputs([x.flip(3) for x in xs]) if self.members is not None
                           else [self.model(xs[0].flip(3))])
        embs = [F.normalize(o["embedding"].float(), dim=1) for o in outs]
        if flipped is not None:
            embs = [F.normalize(e + F.normalize(f["embedding"].float(), dim=1), dim=1) for e, f in zip(embs, flipped)]
        if self.members is None:
            head = outs[0].get("logits")
            return embs[0], None if head is None else head.float()
        return self.model.combine(embs), self.model.combine_logits(outs)


def iter_embeddings(
    embedder: Embedder,
    records: Sequence[ImageRecord],
    indices: Sequence[int],
    *,
    batch_size: int = 32,
    num_workers: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    with_head: bool = False,
    decode: str = "auto",
) -> Iterator[tuple[torch.Tensor, Any, list[tuple[int, str]]]]:
    """Yield ``(record indices int64 B, embeddings B x D, [(index, error), ...])`` per batch.

    Batches are shape buckets; the indices say which records the rows belong to. The embeddings
    stay on the embedder's device (no per-batch synchronisation; move them once per shard). With
    ``with_head`` the second item is ``(embeddings, head cosines or None)``. ``decode``: see
    :data:`zoo.inference.gpu_decode.DECODE_MODES`.
    """
    workers = default_num_workers(embedder.device.type) if num_workers is None else num_workers
    on_device = uses_device_decoding(decode, embedder.device)
    stream = ImageStream(records, embedder.preprocesses, threads=default_decode_threads(workers),
                         jpeg_bytes=on_device)
    device_chunks = DeviceChunks(stream.distinct, embedder.device, stream.load_groups) if on_device else None
    pin = embedder.device.type == "cuda"
    buckets: dict[Any, list[tuple[torch.Tensor, list[torch.Tensor]]]] = {}
    counts: dict[Any, int] = {}

    def run(idx: torch.Tensor, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, Any]:
        inputs = stream.member_inputs(tensors)
        if with_head:
            e, h = embedder.with_head(inputs)
            emb: Any = (e.float(), None if h is None else h.float())
        else:
            emb = embedder(inputs).float()
        if on_batch:
            on_batch(int(idx.numel()))
        return idx, emb

    def drain(key: Any, full_only: bool) -> Iterator[tuple[torch.Tensor, Any, list]]:
        groups = buckets.pop(key, [])
        counts.pop(key, None)
        if not groups:
            return
        if len(groups) == 1:
            idx, tensors = groups[0]
        else:
            idx = torch.cat([g[0] for g in groups])
            tensors = [torch.cat([g[1][j] for g in groups]) for j in range(len(groups[0][1]))]
        n = int(idx.numel())
        stop = n - n % batch_size if full_only else n
        for s in range(0, stop, batch_size):
            e = min(s + batch_size, stop)
            i2, emb = run(idx[s:e], [t[s:e] for t in tensors])
            yield i2, emb, []
        if stop < n:
            buckets[key] = [(idx[stop:], [t[stop:] for t in tensors])]
            counts[key] = n - stop

    loader = sample_loader(stream, indices, chunk=batch_size, num_workers=workers, pin_memory=pin)
    try:
        for chunk in loader:
            groups, chunk_errors = device_chunks(chunk) if device_chunks else (chunk["groups"], chunk["errors"])
            errors = [(int(i), str(msg)) for i, msg in chunk_errors]
            if errors:
                if on_batch:
                    on_batch(len(errors))
                yield torch.zeros(0, dtype=torch.int64), None, errors
            for idx, tensors in groups:
                key = tuple(tuple(t.shape[1:]) for t in tensors)
                buckets.setdefault(key, []).append((idx, list(tensors)))
                counts[key] = counts.get(key, 0) + int(idx.numel())
                if counts[key] >= batch_size:
                    yield from drain(key, full_only=True)
        for key in list(buckets):
            yield from drain(key, full_only=False)
    finally:
        stream.close()
    if device_chunks:
        device_chunks.log_counts()


class _ShardRows:
    """Embeddings of one shard gathered on the device, moved to the host once, in record order."""

    def __init__(self) -> None:
        self.idx: list[torch.Tensor] = []
        self.emb: list[torch.Tensor] = []
        self.head: list[torch.Tensor] = []

    def add(self, idx: torch.Tensor, emb: Any) -> None:
        if isinstance(emb, tuple):
            emb, head = emb
            if head is not None:
                self.head.append(head)
        self.idx.append(idx)
        self.emb.append(emb)

    def result(self, dim: int) -> tuple[list[int], np.ndarray, np.ndarray | None]:
        if not self.idx:
            return [], np.zeros((0, dim), np.float32), None
        idx = torch.cat(self.idx).numpy()
        order = np.argsort(idx, kind="stable")
        emb = torch.cat(self.emb).cpu().numpy()[order]
        head = torch.cat(self.head).cpu().numpy()[order] if self.head else None
        return idx[order].tolist(), emb.astype(np.float32), head


def embed_records(
    embedder: Embedder,
    records: Sequence[ImageRecord],
    *,
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: bool = False,
    desc: str = "embed",
    heads: list[np.ndarray] | None = None,
    decode: str = "auto",
) -> tuple[list[str], np.ndarray, list[Skipped]]:
    """In memory: ``(ids, N x D float32 in record order, skipped)`` for a small set of records.

    With a ``heads`` list, the head's class cosines (``N x C``, same order) are appended to it.
    ``decode``: see :data:`zoo.inference.gpu_decode.DECODE_MODES`.
    """
    from tqdm.auto import tqdm

    rows = _ShardRows()
    skipped: list[Skipped] = []
    with tqdm(total=len(records), desc=desc, unit="img", disable=not progress) as bar:
        for idx, emb, errors in iter_embeddings(
            embedder, records, range(len(records)), batch_size=batch_size, num_workers=num_workers,
            on_batch=bar.update, with_head=heads is not None, decode=decode,
        ):
            for i, err in errors:
                skipped.append(Skipped(records[i].id, str(records[i].path), err))
                log.warning("skipped unreadable image %s", err)
            if emb is not None:
                if heads is not None and emb[1] is None:
                    raise EmbeddingStoreError(
                        f"recipe '{getattr(embedder.model, 'recipe', '?')}' has no head: its post-processors "
                        "cannot use head cosines"
                    )
                rows.add(idx, emb)
    order, emb_all, head_all = rows.result(embedder.embedding_dim)
    if heads is not None and head_all is not None:
        heads.append(head_all.astype(np.float32))
    return [records[i].id for i in order], emb_all, skipped


def _manifest(
    records: Sequence[ImageRecord],
    embedder: Embedder,
    options: EmbedOptions,
    meta: dict[str, Any],
) -> dict[str, Any]:
    n = len(records)
    return {
        "num_records": n,
        "num_shards": (n + options.shard_size - 1) // options.shard_size,
        "shard_size": options.shard_size,
        "records_sha256": records_fingerprint([r.id for r in records]),
        "dim": embedder.embedding_dim,
        "dtype": "float16" if options.fp16 else "float32",
        "flip_tta": options.flip_tta,
        "preprocess": [p.to_dict() for p in embedder.preprocesses],
        **meta,
        "identity": ModelIdentity.of_model(embedder.model, embedder.preprocesses, flip_tta=options.flip_tta,
                                           dim=embedder.embedding_dim).to_dict(),
    }


#: manifest keys that must match for a run to resume into an existing folder (``identity``: the same
#: weights - the same seeded random initialisation included - config and preprocessing)
RESUME_KEYS = ("num_records", "shard_size", "records_sha256", "dim", "dtype", "flip_tta", "preprocess",
               "recipe", "checkpoint", "identity")


def _prepare_folder(out: Path, manifest: dict[str, Any], overwrite: bool, dist: DistContext) -> None:
    """Create the manifest, or check that an existing folder was written with the same settings.

    With ``overwrite`` every rank writes the (identical) manifest atomically and deletes only its
    own shards (rank 0 also those beyond the new shard count), so ranks never delete each other's work.
    """
    mf = out / MANIFEST
    if mf.is_file() and not overwrite:
        old = EmbeddingStore(out).manifest
        diff = [k for k in RESUME_KEYS if old.get(k) != manifest.get(k)]
        if diff:
            models = ""
            if "identity" in diff:
                models = (f" (written by {ModelIdentity.from_manifest(old).describe()}; this run: "
                          f"{ModelIdentity.from_manifest(manifest).describe()})")
            raise EmbeddingStoreError(
                f"{out} holds embeddings written with other settings ({', '.join(diff)} differ){models}; "
                "use another --out, or --overwrite to start again"
            )
        return
    if overwrite and out.is_dir():
        n = int(manifest["num_shards"])
        for p in out.glob("shard-*"):
            try:
                k = int(p.name.split(".")[0].split("-")[1])
            except (IndexError, ValueError):
                continue
            if (k < n and k % dist.world_size == dist.rank) or (k >= n and dist.rank == 0):
                p.unlink(missing_ok=True)
    EmbeddingStore.create(out, manifest)


def _clean_partial(out: Path, shards: Sequence[int]) -> None:
    """Remove temp files a killed run left behind for ``shards`` (only this rank's shards)."""
    for k in shards:
        for tmp in out.glob(f".{shard_stem(k)}.*.tmp"):
            tmp.unlink(missing_ok=True)


def embed_to_folder(
    model: nn.Module,
    records: Sequence[ImageRecord],
    out: str | Path,
    *,
    options: EmbedOptions | None = None,
    preprocesses: Sequence[DataConfig] | None = None,
    meta: dict[str, Any] | None = None,
    dist: DistContext | None = None,
    overwrite: bool = False,
) -> EmbedReport:
    """Embed ``records`` into the shard folder ``out`` (resuming, this rank's shards only)."""
    from tqdm.auto import tqdm

    options = options or EmbedOptions()
    dist = dist or DistContext.from_env()
    out = Path(out)
    device = resolve_device(options.device, dist)
    embedder = Embedder(
        model, preprocesses, device=device, amp=options.amp, channels_last=options.channels_last,
        flip_tta=options.flip_tta,
    )
    manifest = _manifest(records, embedder, options, {"recipe": None, "checkpoint": None, **(meta or {})})
    _prepare_folder(out, manifest, overwrite, dist)
    store = EmbeddingStore(out)
    mine = list(range(dist.rank, store.num_shards, dist.world_size))
    _clean_partial(out, mine)
    todo = [k for k in mine if not store.is_complete(k)]
    report = EmbedReport(out, len(records), store.num_shards, shards_reused=[k for k in mine if k not in todo])
    S = options.shard_size
    total = sum(min(len(records), (k + 1) * S) - k * S for k in todo)
    log.info(
        "embedding %d images into %s: rank %d/%d, %d shards to do, %d already done, device %s, amp %s",
        total, out, dist.rank, dist.world_size, len(todo), len(report.shards_reused), device,
        embedder.amp_dtype or "off",
    )
    t0 = time.perf_counter()
    with tqdm(total=total, desc=f"embed[{dist.rank}]" if dist.world_size > 1 else "embed", unit="img",
              disable=not options.progress) as bar:
        for k in todo:
            indices = range(k * S, min(len(records), (k + 1) * S))
            rows = _ShardRows()
            skipped: list[Skipped] = []
            for idx, emb, errors in iter_embeddings(
                embedder, records, indices, batch_size=options.batch_size,
                num_workers=options.num_workers, on_batch=bar.update, decode=options.decode,
            ):
                for i, err in errors:
                    skipped.append(Skipped(records[i].id, str(records[i].path), err))
                    log.warning("skipped unreadable image %s", err)
                if emb is not None:
                    rows.add(idx, emb)
            order, mat, _ = rows.result(embedder.embedding_dim)
            store.write_shard(k, [records[i].id for i in order], mat, skipped)
            report.shards_done.append(k)
            report.embedded += len(order)
            report.skipped.extend(skipped)
    report.seconds = time.perf_counter() - t0
    log.info(
        "rank %d embedded %d images in %d shards (%.1f img/s), skipped %d unreadable, reused %d shards",
        dist.rank, report.embedded, len(report.shards_done), report.images_per_second,
        len(report.skipped), len(report.shards_reused),
    )
    return report
