"""Golden fingerprints: every real-weights recipe/entry embeds real photos exactly as it did before a refactor.

A fingerprint is what ``zoo embed`` computes for a few real photos (the scikit-image / scikit-learn wheel
photos, of different aspect ratios): the network input shape each photo was resized to and a fixed random
projection of its L2-normalised descriptor (64 numbers per photo instead of 1280). They were recorded on
the code before issue 12's restructuring (``tests/golden/fingerprints.json``); any change of weights,
weight loading, resizing, interpolation, normalisation or pooling moves them far more than the tolerance.

Regenerate (only when a change of descriptors is intended, and say so in the commit):
``ZOO_WRITE_GOLDEN=1 python -m pytest -q tests/test_golden.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden" / "fingerprints.json"
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")  # landscape 3:2, 3:2, square, portrait
PROJECTION_DIM = 64
PROJECTION_SEED = 20240612
ATOL = 1e-5

#: (fingerprint name, recipe, overrides, manifest entry the recipe + overrides must load)
CASES = [
    ("default", "default", [], "tf_efficientnet_lite2.in1k"),
    ("default-lite0", "default", ["model.backbone.name=tf_efficientnet_lite0"], "tf_efficientnet_lite0.in1k"),
    ("default-lite1", "default", ["model.backbone.name=tf_efficientnet_lite1"], "tf_efficientnet_lite1.in1k"),
    ("default-mobilenetv2", "default", [
        "model.backbone.name=mobilenetv2_100",
        "data.mean=[0.485,0.456,0.406]",
        "data.std=[0.229,0.224,0.225]",
        "data.interpolation=bilinear",
    ], "mobilenetv2_100.tv_in1k"),
]


@pytest.fixture(scope="module", autouse=True)
def weights_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE_DIR", str(tmp_path_factory.mktemp("zoo-cache")))
        mp.delenv("ZOO_WEIGHTS_MIRROR", raising=False)
        mp.setenv("ZOO_NO_PROGRESS", "1")
        yield


def projection(dim: int) -> np.ndarray:
    """The fixed ``dim x 64`` projection (float64; columns ~ N(0, 1/64), so a unit vector maps to norm ~1)."""
    rng = np.random.default_rng(PROJECTION_SEED)
    return rng.standard_normal((dim, PROJECTION_DIM)) / np.sqrt(PROJECTION_DIM)


def fingerprint(recipe: str, overrides: list[str], registry, photo_paths) -> dict:
    """Descriptors of the real photos through the embed path (decode -> recipe resize -> normalise -> model)."""
    import zoo
    from zoo.data.images import ImageRecord
    from zoo.inference.embed import Embedder, embed_records

    model = zoo.create_model(recipe, pretrained=True, overrides=overrides, registry=registry).eval()
    embedder = Embedder(model, device="cpu", amp="off")
    records = [ImageRecord(name, photo_paths[name]) for name in PHOTOS]
    ids, emb, skipped = embed_records(embedder, records, batch_size=1, num_workers=0)
    assert ids == list(PHOTOS) and not skipped
    from zoo.data.images import read_image

    (pre,) = embedder.preprocesses
    shapes = []
    for name in PHOTOS:
        image = read_image(photo_paths[name])
        shapes.append(list(pre.output_size(*image.shape[:2])))
    proj = emb.astype(np.float64) @ projection(emb.shape[1])
    return {
        "recipe": recipe,
        "overrides": overrides,
        "weights_entry": getattr(model, "weights_entry", None),
        "dim": int(emb.shape[1]),
        "photos": list(PHOTOS),
        "input_hw": shapes,
        "projection": [[round(float(v), 7) for v in row] for row in proj],
    }


def _stored() -> dict:
    if not GOLDEN.is_file():
        return {}
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("name,recipe,overrides,entry", CASES, ids=[c[0] for c in CASES])
def test_golden_fingerprint(name, recipe, overrides, entry, registry, photo_paths):
    got = fingerprint(recipe, overrides, registry, photo_paths)
    assert got["weights_entry"] == entry
    if os.environ.get("ZOO_WRITE_GOLDEN"):
        data = _stored()
        data[name] = got
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        return
    want = _stored().get(name)
    assert want is not None, f"no golden fingerprint '{name}' in {GOLDEN}; record it with ZOO_WRITE_GOLDEN=1"
    assert (got["recipe"], got["overrides"], got["weights_entry"], got["dim"], got["photos"]) == (
        want["recipe"], want["overrides"], want["weights_entry"], want["dim"], want["photos"])
    assert got["input_hw"] == want["input_hw"]
    diff = np.abs(np.asarray(got["projection"]) - np.asarray(want["projection"])).max()
    assert diff <= ATOL, f"'{name}' descriptors moved: max |projection diff| {diff:.2e} > {ATOL:.0e}"


def test_fingerprints_tell_models_apart():
    """The stored fingerprints themselves differ between entries (the check can fail)."""
    data = _stored()
    assert set(data) == {c[0] for c in CASES}
    rows = {k: np.asarray(v["projection"]) for k, v in data.items()}
    names = sorted(rows)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(rows[a] - rows[b]).max() > 100 * ATOL, (a, b)
    # the default's long-side rule: the long side is 384 and the aspect ratio is kept
    hw = data["default"]["input_hw"]
    assert all(max(h, w) == 384 for h, w in hw) and hw[0] != hw[2]
