"""``zoo export``: TorchScript / ONNX models taking uint8 images, checked against the eager model."""

from __future__ import annotations

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
    assert result.parity.ok and result.parity.min_cosine > 0.9999 and len(result.parity.photos) == 5
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for x in uint8_photos(photo_paths):
        got = torch.from_numpy(np.asarray(session.run(None, {"images": x.numpy()})[0]))
        assert torch.allclose(got, embedder(x), atol=1e-4)


def test_failed_parity_writes_nothing(tmp_path, monkeypatch, registry):
    import zoo.export as export

    def broken_export(embedder, example, tmp):  # a "converted" model that flips the descriptor
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
