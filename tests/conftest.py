"""Shared fixtures: the entry-point registry, real photos from wheels, the shared evaluation set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTANCE_EVAL = Path(os.environ.get("ZOO_INSTANCE_EVAL", REPO.parent / "shared" / "data" / "instance-eval"))
GROCERY_STORE = Path(os.environ.get("ZOO_GROCERY", REPO.parent / "shared" / "data" / "grocery-store"))


def _photo_paths() -> dict[str, Path]:
    import skimage.data
    import sklearn.datasets

    sk = Path(skimage.data.__file__).parent
    sl = Path(sklearn.datasets.__file__).parent / "images"
    return {
        "chelsea": sk / "chelsea.png",
        "coffee": sk / "coffee.png",
        "astronaut": sk / "astronaut.png",
        "rocket": sk / "rocket.jpg",
        "motorcycle_left": sk / "motorcycle_left.png",
        "motorcycle_right": sk / "motorcycle_right.png",
        "china": sl / "china.jpg",
        "flower": sl / "flower.jpg",
    }


@pytest.fixture(scope="session")
def registry():
    """The registry loaded from the installed entry points (built-in plugins included)."""
    from zoo.plugins import load_registry

    return load_registry(strict=False, disable=(), only=())


@pytest.fixture(scope="session")
def photo_paths() -> dict[str, Path]:
    """Real photos shipped inside the scikit-image and scikit-learn wheels."""
    return _photo_paths()


@pytest.fixture()
def photo_dir(tmp_path, photo_paths) -> Path:
    """A folder of real photos as JPEG files plus one corrupt and one truncated file."""
    from PIL import Image

    out = tmp_path / "photos"
    out.mkdir()
    for name, path in photo_paths.items():
        Image.open(path).convert("RGB").save(out / f"{name}.jpg", quality=90)
    (out / "corrupt.jpg").write_bytes(b"this is not a jpeg")
    data = (out / "chelsea.jpg").read_bytes()
    (out / "truncated.jpg").write_bytes(data[: len(data) // 3])
    return out


@pytest.fixture(scope="session")
def instance_eval() -> Path:
    """``../shared/data/instance-eval``; tests using it are marked ``realdata`` and skip only if it is absent."""
    if not (INSTANCE_EVAL / "labels.csv").is_file():
        pytest.skip(f"real evaluation set not found at {INSTANCE_EVAL}")
    return INSTANCE_EVAL


@pytest.fixture(scope="session")
def grocery_store() -> Path:
    """``../shared/data/grocery-store`` (labels.csv + protocol/); tests using it are marked ``realdata``
    and skip only if it is absent."""
    if not (GROCERY_STORE / "labels.csv").is_file() or not (GROCERY_STORE / "protocol").is_dir():
        pytest.skip(f"grocery-store data set not found at {GROCERY_STORE}")
    return GROCERY_STORE


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
