"""Streaming inference dataset: decode each image once, resize it for every model input.

Workers run :meth:`ImageStream.load_chunk` on a chunk of record indices: they decode, resize and
**stack** the chunk's images by shape, so one inter-process message carries a few ``B x 3 x H x W``
uint8 tensors (not one tensor per image), and the DataLoader's pin-memory thread pins them off the
main thread. Without worker processes (the CPU default) the chunk's images are decoded by a pool of
``threads`` threads (PIL releases the GIL while it decodes and resizes), so decoding uses every core
between two forward passes. With ``jpeg_bytes`` (GPU decoding, :mod:`zoo.inference.gpu_decode`) the
JPEGs the device decodes travel as bytes and only the other files are decoded here. An unreadable
image becomes an ``(index, error)`` entry instead of an exception, so one corrupt file never stops a
run; the embed loop skips and reports it. Nothing here holds more than a few chunks of decoded images.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset

from zoo.data.config import DataConfig
from zoo.data.images import ImageReadError, ImageRecord, read_image
from zoo.inference.gpu_decode import route_jpeg

T = TypeVar("T")


@dataclass
class Sample:
    """One record's model inputs (one uint8 ``3 x H x W`` tensor per distinct preprocessing)."""

    index: int
    inputs: tuple[torch.Tensor, ...] | None = None
    error: str | None = None

    @property
    def key(self) -> tuple[tuple[int, ...], ...]:
        """Shapes of the inputs: samples with equal keys can be stacked into one batch."""
        return tuple(tuple(t.shape) for t in self.inputs or ())


def _resize_key(p: DataConfig) -> tuple:
    return (p.input_size, p.resize, p.interpolation, p.crop_pct)


class ImageStream(Dataset):
    """Map-style dataset over ``records[indices]`` producing :class:`Sample` objects.

    ``preprocesses`` are the model inputs (one per ensemble member); identical ones are computed once.
    ``threads`` decode a chunk's images in parallel (use 1 in worker processes); with ``jpeg_bytes``
    :meth:`load_chunk` hands device-decodable JPEGs over as bytes (see :mod:`zoo.inference.gpu_decode`).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        preprocesses: Sequence[DataConfig],
        *,
        threads: int = 1,
        jpeg_bytes: bool = False,
    ) -> None:
        self.records = records
        self.preprocesses = list(preprocesses)
        self.threads = max(1, int(threads))
        self.jpeg_bytes = jpeg_bytes
        self._pool: ThreadPoolExecutor | None = None
        # distinct resize settings (normalisation happens on the device, so it does not matter here)
        keys = [_resize_key(p) for p in self.preprocesses]
        self.distinct: list[DataConfig] = []
        self.slot: list[int] = []
        for p, key in zip(self.preprocesses, keys):
            seen = [_resize_key(q) for q in self.distinct]
            if key not in seen:
                self.distinct.append(p)
                seen.append(key)
            self.slot.append(seen.index(key))

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pool"] = None  # a worker process makes its own
        return state

    def _map(self, fn: Callable[[int], T], indices: Sequence[int]) -> list[T]:
        if self.threads <= 1 or len(indices) <= 1:
            return [fn(i) for i in indices]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="zoo-decode")
        return list(self._pool.map(fn, indices))

    def close(self) -> None:
        """Stop the decoding threads (a later call starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __getitem__(self, index: int) -> Sample:
        rec = self.records[index]
        try:
            image = read_image(rec.path)  # whole: a DataConfig resizes the decoded photo (as exports do)
        except ImageReadError as exc:
            return Sample(index, error=str(exc))
        except Exception as exc:  # a decoder bug on one file must not stop a million-image run
            return Sample(index, error=f"{rec.path}: {type(exc).__name__}: {exc}")
        return Sample(index, inputs=tuple(p.resize_uint8(image) for p in self.distinct))

    def load_groups(self, indices: Sequence[int]) -> dict[str, list]:
        """Decode ``indices`` and stack them by input shape.

        Returns ``{"groups": [(indices int64 B, [uint8 B x 3 x H x W per distinct input]), ...],
        "errors": [(index, message), ...]}`` (plain containers, so the DataLoader can pin them).
        """
        by_key: dict[tuple, list[Sample]] = {}
        errors: list[tuple[int, str]] = []
        for i, s in zip(indices, self._map(self.__getitem__, list(indices))):
            if s.inputs is None:
                errors.append((i, s.error or "unreadable"))
            else:
                by_key.setdefault(s.key, []).append(s)
        groups = [
            (torch.tensor([s.index for s in group], dtype=torch.int64),
             [torch.stack([s.inputs[j] for s in group]) for j in range(len(self.distinct))])  # type: ignore[index]
            for group in by_key.values()
        ]
        return {"groups": groups, "errors": errors}

    def _read_jpeg(self, index: int) -> tuple[bytes, int] | None:
        """``(bytes, EXIF orientation)`` of a record the device decodes, else ``None`` (the CPU path's)."""
        try:
            with open(self.records[index].path, "rb") as f:
                data = f.read()
        except OSError:
            return None  # the CPU path reports it, in its words
        route = route_jpeg(data)
        return (data, route.orientation) if route.device else None

    def load_chunk(self, indices: Sequence[int]) -> dict[str, Any]:
        """:meth:`load_groups`; with ``jpeg_bytes`` the device-decodable JPEGs are read, not decoded, and
        returned as ``"encoded": (record indices int64 N, EXIF orientations int64 N, their bytes
        concatenated uint8, offsets int64 N + 1)`` (one tensor each, one message per chunk)."""
        indices = list(indices)
        if not self.jpeg_bytes:
            return self.load_groups(indices)
        read = self._map(self._read_jpeg, indices)
        out = self.load_groups([i for i, r in zip(indices, read) if r is None])
        jpegs = [(i, r) for i, r in zip(indices, read) if r is not None]
        sizes = [len(r[0]) for _, r in jpegs]
        offsets = torch.zeros(len(jpegs) + 1, dtype=torch.int64)
        if jpegs:
            offsets[1:] = torch.cumsum(torch.tensor(sizes, dtype=torch.int64), 0)
        blob = torch.frombuffer(bytearray(b"".join(r[0] for _, r in jpegs)), dtype=torch.uint8) if jpegs else \
            torch.zeros(0, dtype=torch.uint8)
        out["encoded"] = (
            torch.tensor([i for i, _ in jpegs], dtype=torch.int64),
            torch.tensor([r[1] for _, r in jpegs], dtype=torch.int64),
            blob,
            offsets,
        )
        return out

    def member_inputs(self, stacked: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Distinct-input batches -> one batch per preprocessing (shared tensors, no copies)."""
        return [stacked[s] for s in self.slot]


class _Chunks(Dataset):
    """Chunks of indices, so that one worker message carries a whole chunk of samples."""

    def __init__(self, stream: ImageStream, indices: Sequence[int], chunk: int) -> None:
        self.stream = stream
        self.chunks = [list(indices[i : i + chunk]) for i in range(0, len(indices), chunk)]

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.stream.load_chunk(self.chunks[i])


def _identity(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


def default_num_workers(device_type: str = "cuda") -> int:
    """Decoding workers. CUDA: all cores but one, at most 8. CPU: ``cores // 8``, since torch's
    intra-op threads already use every core and a worker only competes with them (on a 2-core box
    one worker next to two OpenMP threads cut throughput 4x; decoding inline costs ~10 %)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device_type != "cuda":
        return n // 8
    return max(0, min(8, n - 1))


def default_decode_threads(num_workers: int) -> int:
    """Threads decoding a chunk: every core when the main process decodes (no workers), else one per worker."""
    if num_workers > 0:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def sample_loader(
    stream: ImageStream,
    indices: Sequence[int],
    *,
    chunk: int,
    num_workers: int,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader yielding :meth:`ImageStream.load_chunk` results in index order (workers prefetch
    chunks; with ``pin_memory`` the stacked tensors arrive pinned)."""
    kwargs = {}
    if num_workers > 0:
        kwargs = {"prefetch_factor": 2, "persistent_workers": False}
    return DataLoader(
        _Chunks(stream, indices, chunk),
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_identity,
        pin_memory=pin_memory,
        **kwargs,
    )
