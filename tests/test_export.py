"""``zoo export``: TorchScript / ONNX models taking uint8 images that reproduce ``zoo embed`` (size rule,
PIL resampling, mean/std), checked against ``zoo embed`` and the eager model before anything is written."""

from __future__ import annotations

import json

import pytest
import torch

IMAGE_SIZE = 160  # small input keeps the test fast; the parity check is the same at any size


@pytest.fixture(scope="module", autouse=True)
def weights_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE_DIR", str(tmp_path_factory.mktemp("zoo-cache")))
        mp.delenv("ZOO_WEIGHTS_MIRROR", raising=False)
        mp.setenv("ZOO_NO_PROGRESS", "1")
        yield


@pytest.fixture(scope="module")
def embedder(registry):
    from zoo.export import build_embedder

    return build_embedder("default", image_size=IMAGE_SIZE, registry=registry)


def uint8_photos(photo_paths, names=("chelsea", "rocket", "motorcycle_left")):
    from zoo.export import photo_batches

    return photo_batches([photo_paths[n] for n in names])


TINY = ["model.backbone.name=mobilenetv2_035"]


@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=pytest.mark.slow)])
def test_tiny_export_parity_on_real_photos(tmp_path, fmt, registry, photo_paths):
    """Fast check of both formats on an untrained small network (the parity check is weight-agnostic)."""
    from zoo.export import build_embedder, export_model

    out = tmp_path / f"tiny.{fmt}"
    torch.manual_seed(0)
    result = export_model("default", out, fmt=fmt, pretrained=False, overrides=TINY, image_size=64, registry=registry)
    assert out.is_file() and result.parity.ok and result.embedding_dim == 1280
    torch.manual_seed(0)  # the same random init as the exported model
    eager = build_embedder("default", pretrained=False, overrides=TINY, image_size=64, registry=registry)
    x = uint8_photos(photo_paths, ("rocket",))[0]
    got = _run(out, fmt, x)
    assert got.shape == (1, 1280)
    assert torch.allclose(got, eager(x), atol=1e-4)


def _run(path, fmt, x):  # type: ignore[no-untyped-def]
    if fmt == "torchscript":
        return torch.jit.load(str(path))(x)
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(np.asarray(session.run(None, {"images": x.numpy()})[0]))


@pytest.mark.slow
def test_torchscript_export_via_cli(tmp_path, embedder, photo_paths):
    from zoo.cli import main

    out = tmp_path / "default.pt"
    assert main(["export", "default", "--format", "torchscript", "--out", str(out),
                 "--image-size", str(IMAGE_SIZE)]) == 0
    scripted = torch.jit.load(str(out))
    batches = uint8_photos(photo_paths)  # photos the export check did not use, of other sizes
    assert len({tuple(b.shape[-2:]) for b in batches}) == 3
    for x in batches:
        got = scripted(x)
        assert got.shape == (1, 1280) and x.dtype == torch.uint8
        assert torch.allclose(got.norm(dim=1), torch.ones(1), atol=1e-5)
        assert torch.allclose(got, embedder(x), atol=1e-4)
    two = torch.cat([batches[0], batches[0]])
    assert torch.allclose(scripted(two)[1], embedder(batches[0])[0], atol=1e-4)


@pytest.mark.slow
def test_onnx_export_matches_eager(tmp_path, embedder, photo_paths, registry):
    import numpy as np
    import onnxruntime as ort

    from zoo.export import export_model

    out = tmp_path / "default.onnx"
    result = export_model("default", out, fmt="onnx", image_size=IMAGE_SIZE, registry=registry)
    assert result.parity.ok and result.parity.min_cosine > 0.9999 and len(result.parity.photos) == 6
    assert result.embed_parity.ok and result.embed_parity.min_cosine > 0.9999
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for x in uint8_photos(photo_paths):
        got = torch.from_numpy(np.asarray(session.run(None, {"images": x.numpy()})[0]))
        assert torch.allclose(got, embedder(x), atol=1e-4)


def test_failed_parity_writes_nothing(tmp_path, monkeypatch, registry):
    import zoo.export as export

    def broken_export(embedder, example, tmp, metadata=None):  # a "converted" model that flips the descriptor
        tmp.write_bytes(b"not a model")
        return lambda x: -embedder(x)

    monkeypatch.setattr(export, "_to_torchscript", broken_export)
    out = tmp_path / "bad.pt"
    with pytest.raises(export.ExportError, match="does not match the eager model on real photos"):
        export.export_model("default", out, pretrained=False, overrides=TINY, image_size=64, registry=registry)
    assert list(tmp_path.iterdir()) == []


def test_descriptor_limit_for_guie(tmp_path, registry):
    from zoo.export import ExportError, export_model

    out = tmp_path / "wide.pt"
    with pytest.raises(ExportError, match="1280-d descriptors, more than the 64 allowed"):
        export_model("default", out, pretrained=False, overrides=TINY, max_dim=64, image_size=64, registry=registry)
    assert not out.exists()


def _zoo_embed(model, paths, data_configs=None):  # type: ignore[no-untyped-def]
    """What ``zoo embed`` stores for these photo files."""
    from zoo.data.images import ImageRecord
    from zoo.inference.embed import Embedder, embed_records

    embedder = Embedder(model, data_configs, device="cpu", amp="off", channels_last=False)
    ids, emb, skipped = embed_records(embedder, [ImageRecord(str(i), p) for i, p in enumerate(paths)], num_workers=0)
    assert not skipped
    return torch.from_numpy(emb)


def test_export_keeps_the_recipes_size_rule(tmp_path, registry, photo_paths):
    """The default resizes the long side (aspect ratio kept), as zoo embed does: the exported model's
    descriptor of a whole photo equals zoo embed's of the photo file, for landscape, square and portrait."""
    from pathlib import Path

    import skimage.data

    from zoo.export import build_embedder, export_model

    torch.manual_seed(0)
    out = tmp_path / "tiny.pt"
    result = export_model("default", out, pretrained=False, overrides=TINY, image_size=96, registry=registry)
    assert [(dc.resize, dc.input_size) for dc in result.data_configs] == [("long_side", 96)]
    assert result.embed_parity.min_cosine > 0.9999
    torch.manual_seed(0)  # the same random init as the exported model
    eager = build_embedder("default", pretrained=False, overrides=TINY, image_size=96, registry=registry)
    paths = [photo_paths[n] for n in ("chelsea", "astronaut", "rocket")]
    paths.append(Path(skimage.data.__file__).parent / "cell.png")  # portrait
    want = _zoo_embed(eager.model, paths, eager.data_configs)
    scripted = torch.jit.load(str(out))
    got = torch.cat([scripted(x) for x in uint8_photos_of(paths)])
    assert (got * want).sum(1).min() > 0.9999
    meta = {"zoo.json": ""}
    torch.jit.load(str(out), _extra_files=meta)
    info = json.loads(meta["zoo.json"])
    assert info["data_configs"][0]["resize"] == "long_side" and info["data_configs"][0]["input_size"] == 96
    assert info["recipe"] == "default" and info["embedding_dim"] == 1280


def uint8_photos_of(paths):  # type: ignore[no-untyped-def]
    from zoo.export import photo_batches

    return photo_batches(paths)


@pytest.mark.slow
def test_squashing_export_is_refused(tmp_path, monkeypatch, registry):
    """The old export (squash to a square) reached only median cos 0.94 with zoo embed: refused, nothing written."""
    import torch.nn.functional as F

    import zoo.export as export

    class Squash(torch.nn.Module):
        def __init__(self, data_config):  # type: ignore[no-untyped-def]
            super().__init__()
            self.size = data_config.input_size

        def forward(self, images):  # type: ignore[no-untyped-def]
            return F.interpolate(images.float(), size=(self.size, self.size), mode="bicubic", align_corners=False)

    monkeypatch.setattr(export, "ResizeUint8", Squash)
    out = tmp_path / "squashed.pt"
    with pytest.raises(export.ExportError, match="does not reproduce zoo embed on real photos"):
        export.export_model("default", out, image_size=IMAGE_SIZE, registry=registry)
    assert not out.exists()


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_reproduces_zoo_embed_on_instance_eval(tmp_path, instance_eval, registry, fmt):
    """The pretrained default at its own preprocessing (long side 384, bicubic) on real photos of several
    aspect ratios: the written file's descriptors of the whole photos equal zoo embed's (cos >= 0.999)."""
    import csv

    from PIL import Image

    from zoo.export import EMBED_MIN_COSINE, build_embedder, export_model

    rows = list(csv.DictReader(open(instance_eval / "labels.csv")))
    by_shape: dict = {}
    for r in rows:
        path = instance_eval / r["path"]
        w, h = Image.open(path).size
        key = "portrait" if h > w else ("square" if h == w else f"landscape{round(w / h, 1)}")
        by_shape.setdefault(key, path)
    photos = list(by_shape.values())[:6]
    assert any(Image.open(p).size[1] > Image.open(p).size[0] for p in photos)  # a portrait photo
    out = tmp_path / f"default.{fmt}"
    result = export_model("default", out, fmt=fmt, photos=photos, registry=registry)
    assert result.embed_parity.min_cosine >= EMBED_MIN_COSINE and out.is_file()
    eager = build_embedder("default", registry=registry)
    want = _zoo_embed(eager.model, photos)
    got = torch.cat([_run(out, fmt, x) for x in uint8_photos_of(photos)])
    assert (got * want).sum(1).min() >= EMBED_MIN_COSINE
