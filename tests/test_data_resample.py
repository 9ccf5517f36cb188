"""zoo.data.resample: PIL's uint8 resize as tensor operations (what exported models run), pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.data.config import DataConfig
from zoo.data.resample import ResizeUint8

FILTERS = ["bicubic", "bilinear", "nearest", "box", "hamming", "lanczos"]
CONFIGS = [
    ("long_side", None, 97),
    ("square", None, 64),
    ("square", 0.875, 80),
]


def _images(photo_paths) -> list[np.ndarray]:
    from zoo.data.images import read_image

    rng = np.random.default_rng(0)
    real = [read_image(photo_paths[n]) for n in ("chelsea", "astronaut", "rocket")]
    # odd shapes: enlarging, a tall strip (Pillow >= 13 runs its vertical pass first there), a wide strip
    odd = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((37, 53, 3), (400, 13, 3), (9, 300, 3))]
    return real + odd


@pytest.mark.parametrize("interpolation", FILTERS)
def test_resize_equals_pil_pixel_for_pixel(interpolation, photo_paths):
    for resize, crop, size in CONFIGS:
        dc = DataConfig(size, resize, interpolation, crop_pct=crop)
        module = ResizeUint8(dc)
        for image in _images(photo_paths):
            want = dc.resize_uint8(image)
            got = module(torch.from_numpy(image.copy()).permute(2, 0, 1)[None])[0]
            assert got.shape == want.shape, (interpolation, resize, image.shape)
            assert torch.equal(got, want.float()), (interpolation, resize, crop, image.shape)


def test_traced_and_onnx_resize_follow_the_input_size(tmp_path, photo_paths):
    """Traced on one photo, the graph resizes photos of other sizes and aspect ratios exactly as PIL."""
    import warnings

    import onnxruntime as ort

    dc = DataConfig(96, "long_side", "bicubic")
    module = ResizeUint8(dc)
    images = [torch.from_numpy(im.copy()).permute(2, 0, 1)[None] for im in _images(photo_paths)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, images[0], check_trace=False)
        torch.onnx.export(module, (images[0],), str(tmp_path / "r.onnx"), dynamo=False, input_names=["images"],
                          dynamic_axes={"images": {0: "b", 2: "h", 3: "w"}}, opset_version=17)
    session = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"])
    shapes = set()
    for x in images[1:]:
        want = dc.resize_uint8(x[0].permute(1, 2, 0).numpy()).float()
        shapes.add(tuple(want.shape))
        assert torch.equal(traced(x)[0], want)
        assert np.array_equal(session.run(None, {"images": x.numpy()})[0][0], want.numpy())
    assert len(shapes) >= 4


def test_pillow_version_decides_the_pass_order():
    """Pillow < 13 always resizes horizontally first; the exported rule follows the Pillow in use."""
    dc = DataConfig(64, "square", "bicubic")
    assert ResizeUint8(dc, pillow_version="12.1.0").vertical_first_rule is False
    assert ResizeUint8(dc, pillow_version="13.0.0").vertical_first_rule is True
