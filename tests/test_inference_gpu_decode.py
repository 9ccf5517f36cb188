"""JPEG batches decoded on the embedding device: routing, EXIF orientation, exact resize, fallbacks.

No GPU here: the device path runs with torchvision's CPU decoder standing in for nvJPEG (the same
code path: bytes from the workers, one batched decode call, orientation, PIL-exact resize on the
device, per-file fallback to the CPU path). That decoder is the libjpeg-turbo PIL uses, so this path
must reproduce the CPU path's pixels exactly; on a GPU, nvJPEG's pixels may differ by a few levels
(``benchmarks/gpu_embed.py`` measures the descriptors' minimum cosine there).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.data.config import DataConfig
from zoo.data.images import ImageRecord, list_images, read_image
from zoo.data.resample import ResizeUint8
from zoo.inference import gpu_decode
from zoo.inference.dataset import ImageStream, default_decode_threads
from zoo.inference.embed import EmbedOptions, Embedder, embed_records
from zoo.inference.gpu_decode import (
    DeviceChunks,
    DeviceDecodeError,
    DeviceResizer,
    JpegBatchDecoder,
    decode_with_torchvision,
    orient,
    route_jpeg,
    uses_device_decoding,
)
from zoo.inference.shards import EmbeddingStoreError

TINY = ["model.backbone.name=mobilenetv2_035", "data.image_size=64"]
#: two model inputs (an ensemble's): long side 64 bicubic, and timm's resize + centre crop to 48
CONFIGS = [DataConfig(64, "long_side", "bicubic"), DataConfig(48, "square", "bilinear", crop_pct=0.875)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _photo(h: int, w: int, seed: int = 0) -> Image.Image:
    """Smooth random content (JPEG-friendly) with fine detail, so any transposition shows."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    img = np.clip(img + rng.integers(-20, 21, size=img.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(img)


def _jpeg_bytes(img: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92, **save)
    return buf.getvalue()


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _blob(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


@pytest.fixture
def mixed_dir(tmp_path) -> Path:
    """Every routing case: baseline, grey, EXIF-rotated, progressive, CMYK JPEGs, a PNG, a corrupt and a
    truncated file, and ``reject.jpg``, which the stand-in decoder refuses (as nvJPEG may refuse a file)."""
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "a_baseline.jpg").write_bytes(_jpeg_bytes(_photo(90, 120, 1)))
    (d / "b_grey.jpg").write_bytes(_jpeg_bytes(_photo(70, 50, 2).convert("L")))
    (d / "c_rot6.jpg").write_bytes(_jpeg_bytes(_photo(60, 100, 3), exif=_exif(6)))
    (d / "d_rot3.jpg").write_bytes(_jpeg_bytes(_photo(90, 120, 4), exif=_exif(3)))
    (d / "e_progressive.jpg").write_bytes(_jpeg_bytes(_photo(80, 64, 5), progressive=True))
    (d / "f_cmyk.jpg").write_bytes(_jpeg_bytes(_photo(40, 56, 6).convert("CMYK")))
    _photo(50, 90, 7).save(d / "g_png.png")
    (d / "h_corrupt.jpg").write_bytes(b"\xff\xd8\xff this is not a jpeg \xff\xd9")
    data = _jpeg_bytes(_photo(90, 120, 8))
    (d / "i_truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "j_reject.jpg").write_bytes(_jpeg_bytes(_photo(90, 120, 9)))
    (d / "k_same_size.jpg").write_bytes(_jpeg_bytes(_photo(90, 120, 10)))
    return d


def _rejecting(bad: bytes):
    """torchvision's CPU decoder, failing (as a whole batch, then for the file) on the bytes ``bad``."""
    calls = []

    def decode(blobs, device):
        calls.append(len(blobs))
        if any(bytes(b.numpy().tobytes()) == bad for b in blobs):
            raise RuntimeError("Error while decoding JPEG images: stand-in rejects this file")
        return decode_with_torchvision(blobs, device)

    decode.calls = calls  # type: ignore[attr-defined]
    return decode


# -- routing ------------------------------------------------------------------------------------
def test_route_jpeg_sends_only_sequential_ycbcr_or_grey_jpegs_to_the_device(mixed_dir):
    routes = {p.name: route_jpeg(p.read_bytes()) for p in sorted(mixed_dir.iterdir())}
    on_device = sorted(k for k, r in routes.items() if r.device)
    assert on_device == ["a_baseline.jpg", "b_grey.jpg", "c_rot6.jpg", "d_rot3.jpg", "j_reject.jpg", "k_same_size.jpg"]
    assert routes["c_rot6.jpg"].orientation == 6 and routes["d_rot3.jpg"].orientation == 3
    assert routes["a_baseline.jpg"].orientation == 1
    assert routes["e_progressive.jpg"].reason == "progressive JPEG"
    assert routes["f_cmyk.jpg"].reason == "CMYK JPEG"
    assert routes["g_png.png"].reason == "not a JPEG"
    assert "end-of-image" in routes["i_truncated.jpg"].reason
    assert routes["h_corrupt.jpg"].reason.startswith("header:")


def test_route_jpeg_keeps_rgb_coded_jpegs_on_the_cpu():
    # an Adobe APP14 marker with transform 0: the three components are R, G, B (libjpeg does no YCbCr conversion)
    data = _jpeg_bytes(_photo(16, 16))
    adobe = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
    routed = route_jpeg(data[:2] + adobe + data[2:])
    assert not routed.device and routed.reason == "RGB-coded JPEG"
    adobe_ycc = adobe[:-1] + b"\x01"
    assert route_jpeg(data[:2] + adobe_ycc + data[2:]).device


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_on_the_device_equals_pil_exif_transpose(tmp_path, orientation):
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(_jpeg_bytes(_photo(30, 52, orientation), exif=_exif(orientation)))
    route = route_jpeg(path.read_bytes())
    assert route.device and route.orientation == orientation
    (decoded,) = decode_with_torchvision([_blob(path.read_bytes())], torch.device("cpu"))
    got = orient(decoded, route.orientation).permute(1, 2, 0).numpy()
    want = read_image(path)  # PIL decode + ImageOps.exif_transpose
    assert got.shape == want.shape
    assert np.array_equal(got, want)


# -- exact resize -------------------------------------------------------------------------------
@pytest.mark.parametrize("config,hw", [
    (DataConfig(64, "long_side", "bicubic"), (300, 100)),   # height shrinks > 2x width's: vertical pass first
    (DataConfig(64, "long_side", "bicubic"), (97, 131)),
    (DataConfig(48, "square", "bilinear", crop_pct=0.875), (90, 120)),
    (DataConfig(40, "square", "lanczos"), (33, 71)),         # upscale one side
    (DataConfig(32, "square", "nearest"), (90, 61)),
    (DataConfig(64, "long_side", "box"), (64, 40)),          # long side unchanged
])
def test_device_resizer_equals_pil(config, hw, monkeypatch):
    rng = np.random.default_rng(sum(hw))
    images = [rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8) for _ in range(3)]
    want = torch.stack([config.resize_uint8(a) for a in images])
    batch = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in images])
    resizer = DeviceResizer(config, "cpu")
    monkeypatch.setattr(gpu_decode, "RESIZE_STEP_BYTES", hw[0] * hw[1] * 3 * 8 * 2)  # two images per step
    got = resizer(batch)
    assert got.dtype == torch.uint8 and torch.equal(got, want)
    assert list(resizer._cache) == [hw]  # matrices computed once per size
    assert torch.equal(resizer(batch[:1]), want[:1])
    # the eager matrices are the exported graph's resize
    assert torch.equal(ResizeUint8(config)(batch).to(torch.uint8), want)


# -- batch decoding and fallbacks -----------------------------------------------------------------
def test_batch_decoder_retries_file_by_file_and_reports_rejects(mixed_dir):
    good = [_blob((mixed_dir / n).read_bytes()) for n in ("a_baseline.jpg", "b_grey.jpg")]
    bad = (mixed_dir / "j_reject.jpg").read_bytes()
    decode = _rejecting(bad)
    dec = JpegBatchDecoder("cpu", decode)
    out = dec.decode([good[0], _blob(bad), good[1]])
    assert decode.calls == [3, 1, 1, 1]  # the batch, then each file
    assert out[1] is None and dec.rejected == 1
    assert out[0].shape == (3, 90, 120) and out[2].shape == (3, 70, 50)  # grey decoded as RGB
    dec2 = JpegBatchDecoder("cpu", decode)
    assert [t.shape for t in dec2.decode(good)] == [(3, 90, 120), (3, 70, 50)] and decode.calls[-1] == 2
    assert dec2.decode([]) == []


def _by_index(groups) -> dict[int, list[torch.Tensor]]:
    out = {}
    for idx, tensors in groups:
        for k, i in enumerate(idx.tolist()):
            out[i] = [t[k].cpu() for t in tensors]
    return out


@pytest.mark.parametrize("threads", [1, 2])
def test_device_chunks_reproduce_the_cpu_path(mixed_dir, threads):
    """Bytes -> batch decode -> orientation -> exact resize, with CPU fallbacks, equals the CPU path
    pixel for pixel, with the same skip report."""
    records = list_images(mixed_dir)
    indices = list(range(len(records)))
    cpu_stream = ImageStream(records, CONFIGS)
    want = cpu_stream.load_groups(indices)

    stream = ImageStream(records, CONFIGS, threads=threads, jpeg_bytes=True)
    chunk = stream.load_chunk(indices)
    idx, orientations, blob, offsets = chunk["encoded"]
    names = [records[i].id for i in idx.tolist()]
    assert names == ["a_baseline.jpg", "b_grey.jpg", "c_rot6.jpg", "d_rot3.jpg", "j_reject.jpg", "k_same_size.jpg"]
    assert orientations.tolist() == [1, 1, 6, 3, 1, 1]
    assert int(offsets[-1]) == blob.numel() == sum((mixed_dir / n).stat().st_size for n in names)
    # the workers decoded only what the device does not take
    assert sorted(records[i].id for g in chunk["groups"] for i in g[0].tolist()) == [
        "e_progressive.jpg", "f_cmyk.jpg", "g_png.png"]

    decode = _rejecting((mixed_dir / "j_reject.jpg").read_bytes())
    fallback_calls = []

    def fallback(rejected):
        fallback_calls.append([records[i].id for i in rejected])
        return stream.load_groups(rejected)

    chunks = DeviceChunks(stream.distinct, "cpu", fallback, decode_fn=decode)
    groups, errors = chunks(chunk)
    stream.close()
    assert fallback_calls == [["j_reject.jpg"]]
    assert (chunks.on_device, chunks.on_cpu, chunks.decoder.rejected) == (5, 4, 1)
    # same-size images (after orientation) are resized together: 90 x 120 ones in one group
    same = [sorted(records[i].id for i in g[0].tolist()) for g in groups if "a_baseline.jpg" in
            [records[i].id for i in g[0].tolist()]]
    assert same == [["a_baseline.jpg", "d_rot3.jpg", "k_same_size.jpg"]]
    got, ref = _by_index(groups), _by_index(want["groups"])
    assert sorted(got) == sorted(ref) and len(got) == len(records) - 2
    for i in ref:
        for a, b in zip(got[i], ref[i]):
            assert a.dtype == torch.uint8 and torch.equal(a, b), records[i].id
    assert sorted(errors) == sorted(want["errors"])
    assert sorted(records[i].id for i, _ in errors) == ["h_corrupt.jpg", "i_truncated.jpg"]


def test_decoding_threads_change_nothing(mixed_dir):
    records = list_images(mixed_dir)
    one = ImageStream(records, CONFIGS).load_groups(range(len(records)))
    stream = ImageStream(records, CONFIGS, threads=3)
    many = stream.load_groups(range(len(records)))
    assert stream._pool is not None
    stream.close()
    assert stream._pool is None
    a, b = _by_index(one["groups"]), _by_index(many["groups"])
    assert sorted(a) == sorted(b) and all(torch.equal(x, y) for i in a for x, y in zip(a[i], b[i]))
    assert one["errors"] == many["errors"]
    assert default_decode_threads(2) == 1 and default_decode_threads(0) >= 1


# -- mode selection and the embed loop ------------------------------------------------------------
def test_decode_mode_selection(monkeypatch):
    cpu = torch.device("cpu")
    assert uses_device_decoding("cpu", cpu) is False
    assert uses_device_decoding("auto", cpu) is False  # auto decodes on the device only on CUDA
    assert uses_device_decoding("device", cpu) is True  # torchvision's CPU decoder
    with pytest.raises(DeviceDecodeError, match="decode must be one of auto, cpu, device"):
        uses_device_decoding("gpu", cpu)
    with pytest.raises(EmbeddingStoreError, match="decode must be one of"):
        EmbedOptions(decode="nvjpeg")
    monkeypatch.setattr(gpu_decode, "_PROBED", {"cuda:0": False, "cpu": False})
    assert uses_device_decoding("auto", torch.device("cuda:0")) is False  # no nvJPEG: the CPU path
    with pytest.raises(DeviceDecodeError, match="use --decode cpu"):
        uses_device_decoding("device", cpu)
    monkeypatch.setattr(gpu_decode, "_PROBED", {"cuda:0": True})
    assert uses_device_decoding("auto", torch.device("cuda:0")) is True
    assert uses_device_decoding("cpu", torch.device("cuda:0")) is False


@pytest.mark.parametrize("workers", [0, 1])
def test_embed_with_device_decoding_equals_cpu_decoding(tmp_path, photo_dir, mixed_dir, workers):
    """Real photos (plus the routing cases) through the bytes -> decode_jpeg -> exact-resize path give
    the CPU path's descriptors (tolerance 1e-6: same pixels, same network) and the same skip report."""
    torch.manual_seed(0)
    model = zoo.create_model("default", overrides=TINY)
    records = list_images(photo_dir) + [ImageRecord(f"mixed/{p.name}", p) for p in sorted(mixed_dir.iterdir())]
    embedder = Embedder(model)
    ids_cpu, emb_cpu, skipped_cpu = embed_records(embedder, records, batch_size=3, num_workers=workers, decode="cpu")
    ids_dev, emb_dev, skipped_dev = embed_records(embedder, records, batch_size=3, num_workers=workers,
                                                  decode="device")
    assert ids_dev == ids_cpu and len(ids_cpu) == len(records) - 4
    assert np.abs(emb_dev - emb_cpu).max() <= 1e-6
    assert float((emb_dev * emb_cpu).sum(1).min()) >= 1 - 1e-6
    assert [(s.id, s.error) for s in skipped_dev] == [(s.id, s.error) for s in skipped_cpu]
    assert sorted(s.id for s in skipped_cpu) == ["corrupt.jpg", "mixed/h_corrupt.jpg", "mixed/i_truncated.jpg",
                                                 "truncated.jpg"]
