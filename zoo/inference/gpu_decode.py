"""JPEGs decoded in batches on the embedding device (nvJPEG on CUDA), resized there exactly as PIL does.

With GPU decoding, ``zoo embed``'s workers only read files: :func:`route_jpeg` sends each JPEG the
device can decode as bytes and leaves everything else to the CPU path. The main process then decodes
a chunk's JPEGs in one call (:class:`JpegBatchDecoder`: ``torchvision.io.decode_jpeg(list, device=...)``),
applies the EXIF orientation (:func:`orient`), resizes each image for every model input with PIL's
exact uint8 resampling (:class:`DeviceResizer`: :class:`zoo.data.resample.ResizeUint8`'s matrices, cached
per image size) and stacks the results by shape (:func:`decode_chunk`), so the embed loop receives what
the CPU path (:class:`zoo.inference.dataset.ImageStream`) would have handed over, on the device.

Routing, decided in the workers from the header PIL parses without decoding:

* **device**: 8-bit sequential (baseline or extended) JPEGs with one (grey) or three (YCbCr)
  components that end with the end-of-image marker;
* **CPU** (the worker decodes it with PIL, as without GPU decoding): every other format; progressive
  JPEGs (nvJPEG decodes those one by one with host Huffman decoding in the main process, slower than a
  worker); CMYK/YCCK and RGB-coded JPEGs (colour conversions differ from libjpeg's); multi-picture
  files; files without the end-of-image marker (truncated ones: PIL reports them as today);
  unreadable files;
* **rejected by the device decoder**: a failing batch is retried file by file; a file the device still
  rejects is decoded on the CPU in the main process (the CPU path, same result and same skip report when
  it is unreadable there too).

EXIF orientation is read by PIL from the header (``Image.getexif``, the tag ``ImageOps.exif_transpose``
applies in :func:`zoo.data.images.read_image`, including PIL's XMP fallback) and applied on the device as
the same transposition; nvJPEG itself ignores it.

Pixels: nvJPEG's IDCT and chroma upsampling may differ from libjpeg-turbo's by a few levels, so
descriptors can differ slightly from the CPU path (``benchmarks/gpu_embed.py`` reports the minimum
cosine). With the CPU decoder (``torchvision.io.decode_jpeg`` on the CPU, the same libjpeg-turbo as PIL's)
the whole path reproduces the CPU path's pixels; the tests run it that way.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from zoo.data.config import DataConfig
from zoo.data.resample import ResizeUint8
from zoo.registry import ZooError

log = logging.getLogger(__name__)

#: where ``zoo embed`` decodes images: ``auto`` (JPEG batches on the embedding device when it is a GPU
#: and torchvision decodes there, else ``cpu``), ``cpu`` (PIL in the workers or decoding threads),
#: ``device`` (JPEG batches on the embedding device, whatever it is; a CPU decodes with libjpeg-turbo)
DECODE_MODES = ("auto", "cpu", "device")

JPEG_MAGIC = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
#: component ids libjpeg reads as RGB (not YCbCr) when a file has no JFIF or Adobe marker
RGB_COMPONENT_IDS = (ord("R"), ord("G"), ord("B"))
#: bytes of float64 images one resize step may hold (chunks of same-size images are resized together)
RESIZE_STEP_BYTES = 512 * 2**20

#: ``decode(list of 1-D uint8 CPU tensors, device) -> list of uint8 C x H x W tensors on device``
DecodeFn = Callable[[list, torch.device], list]
#: ``fallback(record indices) -> {"groups": [...], "errors": [...]}``: the CPU path
#: (:meth:`zoo.inference.dataset.ImageStream.load_groups`)
FallbackFn = Callable[[list], dict]


class DeviceDecodeError(ZooError):
    """A decode setting that cannot be followed (unknown mode, no decoder on the device)."""


@dataclass(frozen=True)
class JpegRoute:
    """Where a file is decoded: on the device (with its EXIF ``orientation``), or on the CPU (``reason``)."""

    device: bool
    orientation: int = 1
    reason: str = ""


def route_jpeg(data: bytes) -> JpegRoute:
    """Whether the device decoder takes ``data`` (file bytes), and the EXIF orientation to apply after it."""
    from PIL import ExifTags, Image

    if not data.startswith(JPEG_MAGIC):
        return JpegRoute(False, reason="not a JPEG")
    if not data.endswith(JPEG_EOI):
        return JpegRoute(False, reason="no end-of-image marker (truncated, or data after the image)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, mode, info = img.format, img.mode, dict(img.info)
            layer = tuple(c[0] for c in getattr(img, "layer", ()))
            orientation = int(img.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception as exc:  # anything PIL cannot parse is the CPU path's to report
        return JpegRoute(False, reason=f"header: {type(exc).__name__}: {exc}")
    if fmt != "JPEG":
        return JpegRoute(False, reason=f"{fmt} file")
    if mode not in ("L", "RGB"):
        return JpegRoute(False, reason=f"{mode} JPEG")
    if info.get("progressive") or info.get("progression"):
        return JpegRoute(False, reason="progressive JPEG")
    if mode == "RGB":
        adobe_rgb = "adobe" in info and info.get("adobe_transform") == 0
        plain_rgb = "jfif" not in info and "adobe" not in info and layer == RGB_COMPONENT_IDS
        if adobe_rgb or plain_rgb:
            return JpegRoute(False, reason="RGB-coded JPEG")
    return JpegRoute(True, orientation=orientation if 2 <= orientation <= 8 else 1)


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """``C x H x W`` transposed as ``PIL.ImageOps.exif_transpose`` does for EXIF ``orientation`` (1-8)."""
    if orientation == 2:  # FLIP_LEFT_RIGHT
        return image.flip(-1)
    if orientation == 3:  # ROTATE_180
        return image.flip(-2, -1)
    if orientation == 4:  # FLIP_TOP_BOTTOM
        return image.flip(-2)
    if orientation == 5:  # TRANSPOSE
        return image.transpose(-2, -1)
    if orientation == 6:  # ROTATE_270 (counter-clockwise)
        return torch.rot90(image, -1, (-2, -1))
    if orientation == 7:  # TRANSVERSE
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:  # ROTATE_90
        return torch.rot90(image, 1, (-2, -1))
    return image


class DeviceResizer:
    """One :class:`DataConfig`'s resize of uint8 ``B x 3 x H x W`` batches on their device, equal pixel
    for pixel to :meth:`DataConfig.resize_uint8` (PIL); the matrices of the last ``cache_size`` image
    sizes stay on the device."""

    def __init__(self, data_config: DataConfig, device: torch.device | str, cache_size: int = 128) -> None:
        self.data_config = data_config
        self.device = torch.device(device)
        self.module = ResizeUint8(data_config)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, bool]] = OrderedDict()

    def _matrices(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        key = (height, width)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        vertical, horizontal, vertical_first = self.module.matrices(height, width)
        hit = (vertical.to(self.device), horizontal.to(self.device), vertical_first)
        self._cache[key] = hit
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return hit

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``B x 3 x H x W`` (one size) -> uint8 ``B x 3 x h x w``."""
        b, c, h, w = images.shape
        vertical, horizontal, vertical_first = self._matrices(h, w)
        step = max(1, RESIZE_STEP_BYTES // max(1, c * h * w * 8))
        out = [
            self.module.apply_matrices(images[s : s + step].to(torch.float64), vertical, horizontal, vertical_first)
            for s in range(0, b, step)
        ]
        return (out[0] if len(out) == 1 else torch.cat(out)).to(torch.uint8)


def decode_with_torchvision(blobs: list, device: torch.device) -> list:
    """``torchvision.io.decode_jpeg`` of a list of byte tensors to RGB on ``device`` (nvJPEG on CUDA,
    libjpeg-turbo on the CPU)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():  # the image decoders are deprecated for torchcodec (torchvision 0.29)
        warnings.simplefilter("ignore")
        return decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device)


class JpegBatchDecoder:
    """Decode a list of JPEG byte tensors on ``device`` in one call; when the call fails, file by file.

    :meth:`decode` returns one ``3 x H x W`` uint8 tensor per input, or ``None`` for a file the
    decoder rejects (the caller decodes those on the CPU). ``decode_fn`` replaces torchvision's
    decoder (tests)."""

    def __init__(self, device: torch.device | str, decode_fn: DecodeFn | None = None) -> None:
        self.device = torch.device(device)
        self.decode_fn = decode_fn or decode_with_torchvision
        self.rejected = 0

    def _valid(self, image: object) -> bool:
        return (isinstance(image, torch.Tensor) and image.dim() == 3 and image.shape[0] == 3
                and image.dtype == torch.uint8 and image.shape[1] > 0 and image.shape[2] > 0)

    def decode(self, blobs: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        if not blobs:
            return []
        try:
            images = list(self.decode_fn(list(blobs), self.device))
            if len(images) == len(blobs) and all(self._valid(im) for im in images):
                return images
        except (RuntimeError, ValueError) as exc:
            log.debug("device JPEG decoding of %d files failed (%s); retrying them one by one", len(blobs), exc)
        out: list[torch.Tensor | None] = []
        for blob in blobs:
            try:
                (image,) = self.decode_fn([blob], self.device)
            except (RuntimeError, ValueError):
                image = None
            if not self._valid(image):
                image = None
                self.rejected += 1
            out.append(image)
        return out


def decode_chunk(
    encoded: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    decoder: JpegBatchDecoder,
    resizers: Sequence[DeviceResizer],
) -> tuple[list[tuple[torch.Tensor, list[torch.Tensor]]], list[int]]:
    """A worker's ``encoded`` chunk (record indices, orientations, concatenated bytes, offsets) ->
    ``(groups, rejected)``: groups as :meth:`ImageStream.load_groups` makes them (record indices,
    one uint8 batch per resizer; on the decoder's device), and the record indices the decoder rejected."""
    indices, orientations, blob, offsets = encoded
    n = int(indices.numel())
    if n == 0:
        return [], []
    bounds = offsets.tolist()
    images = decoder.decode([blob[bounds[k] : bounds[k + 1]] for k in range(n)])
    rejected: list[int] = []
    by_size: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = {}
    for k, (index, orientation, image) in enumerate(zip(indices.tolist(), orientations.tolist(), images)):
        if image is None:
            rejected.append(index)
            continue
        image = orient(image, orientation)
        by_size.setdefault((int(image.shape[1]), int(image.shape[2])), []).append((index, image))
    groups = []
    for members in by_size.values():
        batch = torch.stack([im for _, im in members])
        idx = torch.tensor([i for i, _ in members], dtype=torch.int64)
        groups.append((idx, [resize(batch) for resize in resizers]))
    return groups, rejected


_PROBED: dict[str, bool] = {}


def device_decoding_available(device: torch.device | str) -> bool:
    """Whether ``decode_jpeg(..., device=device)`` works here (torchvision built with nvJPEG, a CUDA
    device); probed once per device with a tiny JPEG."""
    device = torch.device(device)
    key = str(device)
    if key not in _PROBED:
        try:
            import numpy as np
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buf, format="JPEG")
            blob = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
            (image,) = decode_with_torchvision([blob], device)
            _PROBED[key] = tuple(image.shape) == (3, 8, 8) and image.device.type == device.type
        except Exception as exc:  # no torchvision image ops, no nvJPEG, no device
            log.info("JPEG decoding on %s is not available (%s: %s); decoding on the CPU", device,
                     type(exc).__name__, exc)
            _PROBED[key] = False
    return _PROBED[key]


def uses_device_decoding(decode: str, device: torch.device) -> bool:
    """Whether JPEGs are decoded on ``device`` for ``decode`` (one of :data:`DECODE_MODES`)."""
    if decode not in DECODE_MODES:
        raise DeviceDecodeError(f"decode must be one of {', '.join(DECODE_MODES)}, got '{decode}'")
    if decode == "cpu" or (decode == "auto" and device.type != "cuda"):
        return False
    if device_decoding_available(device):
        return True
    if decode == "device":
        raise DeviceDecodeError(
            f"cannot decode JPEGs on {device}: torchvision's decode_jpeg does not run there; use --decode cpu"
        )
    return False


class DeviceChunks:
    """A loader chunk of :meth:`zoo.inference.dataset.ImageStream.load_chunk` (with ``jpeg_bytes``) ->
    ``(groups, errors)`` on ``device``: the JPEGs decoded and resized there (one resizer per distinct
    :class:`DataConfig`, in the stream's order), CPU-decoded groups moved there, and files the decoder
    rejects decoded by ``fallback`` (the CPU path: same pixels, or the same skip report)."""

    def __init__(
        self,
        distinct: Sequence[DataConfig],
        device: torch.device | str,
        fallback: FallbackFn,
        decode_fn: DecodeFn | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.fallback = fallback
        self.decoder = JpegBatchDecoder(self.device, decode_fn)
        self.resizers = [DeviceResizer(p, self.device) for p in distinct]
        self.on_device = 0
        self.on_cpu = 0

    def __call__(self, chunk: dict) -> tuple[list, list]:
        groups, rejected = decode_chunk(chunk["encoded"], self.decoder, self.resizers)
        errors = list(chunk["errors"])
        cpu_groups = list(chunk["groups"])
        if rejected:
            done = self.fallback(rejected)
            cpu_groups += done["groups"]
            errors += done["errors"]
        self.on_device += sum(int(idx.numel()) for idx, _ in groups)
        self.on_cpu += sum(int(idx.numel()) for idx, _ in cpu_groups)
        moved = [(idx, [t.to(self.device, non_blocking=True) for t in ts]) for idx, ts in cpu_groups]
        return moved + groups, errors

    def log_counts(self) -> None:
        log.info("%d JPEGs decoded in batches on %s, %d images by the CPU path (%d files rejected by the "
                 "device decoder)", self.on_device, self.device, self.on_cpu, self.decoder.rejected)
