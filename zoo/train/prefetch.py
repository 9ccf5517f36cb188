"""Batches that arrive on the GPU before the step needs them: asynchronous host-to-device prefetch.

:class:`DevicePrefetcher` wraps the epoch's DataLoader (whose workers hand over **pinned** host
batches, ``pin_memory=True`` on CUDA). While the step computes batch ``n`` on the default stream,
batch ``n + 1`` is already being copied (``non_blocking``) and its uint8 images normalised on a side
CUDA stream; before batch ``n + 1`` is used the default stream waits for the side stream, and its
tensors are marked as used there (``record_stream``) so the caching allocator never hands their memory
to another tensor too early. This is the pattern of NVIDIA apex's ``data_prefetcher`` and
``torch.utils.data``'s pin-memory thread, done with torch's own stream API.

On the CPU (and any non-CUDA device) the prefetcher yields the loader's batches unchanged: the CPU
path is exactly what it was.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import torch

#: batch entries moved to the device (others, e.g. ``skipped``, stay on the host)
DEVICE_KEYS = ("image", "target")


class CudaStreams:
    """The CUDA stream operations the prefetcher needs (a seam for tests without a GPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.side = torch.cuda.Stream(device)

    def on_side(self) -> Any:
        """Context: work issued inside runs on the side stream."""
        return torch.cuda.stream(self.side)

    def wait_for_side(self) -> None:
        """The current (compute) stream waits for everything issued on the side stream so far."""
        torch.cuda.current_stream(self.device).wait_stream(self.side)

    def mark_used_here(self, tensor: torch.Tensor) -> None:
        """``tensor`` (allocated on the side stream) is used on the current stream from now on."""
        tensor.record_stream(torch.cuda.current_stream(self.device))


class DevicePrefetcher:
    """Iterate ``loader``'s batches with ``image``/``target`` already on ``device`` (one batch ahead).

    ``transform_images``: applied to the images on the side stream after the copy (e.g. the
    model's uint8 -> float normalisation); ``None`` keeps them as they come. ``streams``: the stream
    operations (default :class:`CudaStreams` on CUDA; tests pass a fake).
    """

    def __init__(
        self,
        loader: Iterable[Any],
        device: torch.device,
        *,
        transform_images: Callable[[torch.Tensor], torch.Tensor] | None = None,
        streams: Any = None,
    ) -> None:
        self.loader = loader
        self.device = torch.device(device)
        self.transform_images = transform_images
        self.streams = streams
        self.active = streams is not None or self.device.type == "cuda"

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        if not self.active:
            yield from self.loader
            return
        streams = self.streams if self.streams is not None else CudaStreams(self.device)
        it = iter(self.loader)
        ahead = self._issue(it, streams)
        while ahead is not None:
            streams.wait_for_side()
            batch = ahead
            for key in DEVICE_KEYS:
                value = batch.get(key)
                if isinstance(value, torch.Tensor):
                    streams.mark_used_here(value)
            ahead = self._issue(it, streams)  # the next copy runs while the caller computes this batch
            yield batch

    def _issue(self, it: Iterator[Any], streams: Any) -> dict[str, Any] | None:
        """Take the next batch from the loader and start its copy on the side stream (None at the end)."""
        try:
            batch = next(it)
        except StopIteration:
            return None
        if not isinstance(batch, dict) or batch.get("image") is None:
            return batch  # an all-unreadable batch: nothing to move
        moved = dict(batch)
        with streams.on_side():
            for key in DEVICE_KEYS:
                value = batch.get(key)
                if isinstance(value, torch.Tensor):
                    moved[key] = value.to(self.device, non_blocking=True)
            if self.transform_images is not None:
                moved["image"] = self.transform_images(moved["image"])
        return moved
