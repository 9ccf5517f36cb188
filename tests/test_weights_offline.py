"""``ZOO_OFFLINE=1`` means no network anywhere: timm's and open_clip's own pretrained downloads too.

The scenarios run in fresh processes with empty Hugging Face / torch hub caches and a guard
(``sitecustomize``) that records and refuses every socket connection and name lookup, so a test
fails if anything reaches for the network; each must fail at once (< 5 s) with one
``PretrainedUnavailableError`` naming the weights, the places searched and the fixes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

GUARD = """
import json, os, socket

_LOG = os.environ["NET_GUARD_LOG"]


def _refuse(what):
    def guard(*args, **kwargs):
        with open(_LOG, "a") as f:
            f.write(json.dumps([what, repr(args[:2])]) + "\\n")
        raise OSError(f"network guard: {what} refused")
    return guard


socket.socket.connect = _refuse("connect")
socket.socket.connect_ex = _refuse("connect_ex")
socket.getaddrinfo = _refuse("getaddrinfo")
socket.create_connection = _refuse("create_connection")
"""


@pytest.fixture()
def offline_env(tmp_path) -> dict[str, str]:
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ZOO_", "TORCH_HOME"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(guard), env.get("PYTHONPATH", "")]),
        NET_GUARD_LOG=str(tmp_path / "net.log"),
        ZOO_OFFLINE="1",
        ZOO_CACHE_DIR=str(tmp_path / "zoo-cache"),
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_CACHE=str(tmp_path / "hf" / "hub"),
        TORCH_HOME=str(tmp_path / "torch"),
        HOME=str(tmp_path / "home"),  # open_clip's URL cache is ~/.cache/clip
        ZOO_NO_PROGRESS="1",
        # albumentations checks PyPI when it is imported (at plugin loading, before any zoo code could
        # run apply_offline_switches): zoo's start must set it, see test_offline_switches_*
        NO_ALBUMENTATIONS_UPDATE="1",
    )
    return env


def run_python(code: str, env: dict[str, str], cwd: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def network_attempts(env: dict[str, str]) -> list:
    log = Path(env["NET_GUARD_LOG"])
    return [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []


BUILD = """
import json, os, time
from zoo.plugins import get_registry
from zoo.weights.errors import PretrainedUnavailableError

reg = get_registry()
t0 = time.perf_counter()
try:
    {call}
    out = {{"error": None}}
except PretrainedUnavailableError as exc:
    out = {{"error": str(exc), "type": type(exc).__name__}}
out["seconds"] = time.perf_counter() - t0
import huggingface_hub.constants as c
out["hf_offline"] = [os.environ.get("HF_HUB_OFFLINE"), c.HF_HUB_OFFLINE]
print(json.dumps(out))
"""


def test_timm_hub_weights_offline_fail_fast_and_clearly(offline_env, tmp_path):
    call = 'reg.create("backbone", "timm", name="tf_efficientnet_b0.aa_in1k", pretrained=True)'
    out = run_python(BUILD.format(call=call), offline_env, tmp_path)
    err = out["error"]
    assert err is not None and out["seconds"] < 5, out
    assert "ZOO_OFFLINE=1" in err and "'tf_efficientnet_b0.aa_in1k'" in err and "timm" in err
    assert str(Path(offline_env["HF_HUB_CACHE"])) in err  # the place searched
    assert "--no-pretrained" in err and "HF_HUB_CACHE" in err and "zoo weights" in err  # the fixes
    assert "\n" not in err
    assert out["hf_offline"] == ["1", True]  # the hub library's own switch is on
    assert network_attempts(offline_env) == []


def test_timm_url_weights_offline_never_touch_the_network(offline_env, tmp_path):
    """legacy_xception has no Hugging Face id: timm would fetch a plain URL through torch.hub."""
    call = 'reg.create("backbone", "timm", name="legacy_xception", pretrained=True)'
    out = run_python(BUILD.format(call=call), offline_env, tmp_path)
    assert out["error"] is not None and out["seconds"] < 5, out
    assert str(Path(offline_env["TORCH_HOME"]) / "hub" / "checkpoints") in out["error"]
    assert network_attempts(offline_env) == []


def test_open_clip_weights_offline_fail_fast(offline_env, tmp_path):
    call = 'from zoo_backbones.library_pretrained import create_open_clip_model; create_open_clip_model("ViT-B-32", "laion2b_s34b_b79k")'
    out = run_python(BUILD.format(call=call), offline_env, tmp_path)
    err = out["error"]
    assert err is not None and out["seconds"] < 5, out
    assert "open_clip" in err and "'ViT-B-32/laion2b_s34b_b79k'" in err and "--no-pretrained" in err
    assert network_attempts(offline_env) == []


def test_manifest_weights_are_named_as_the_fix(offline_env, tmp_path):
    """ImageNet Lite0 from timm offline: the manifest's verified copy is offered instead."""
    call = 'reg.create("backbone", "timm", name="tf_efficientnet_lite0", pretrained=True)'
    out = run_python(BUILD.format(call=call), offline_env, tmp_path)
    assert "zoo weights fetch tf_efficientnet_lite0.in1k" in out["error"]


@pytest.mark.slow
def test_zoo_train_offline_from_imagenet_weights_is_one_clear_error(offline_env, tmp_path, photo_paths):
    tree = tmp_path / "tree"
    for cls, names in {"a": ["chelsea", "coffee"], "b": ["china", "flower"]}.items():
        (tree / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(photo_paths[n], tree / cls / Path(photo_paths[n]).name)
    # the recipe as the issue ran it: the first stage starts from timm's ImageNet weights
    argv = [sys.executable, "-m", "zoo", "train", "glr2021-top100-effnet-b0", "--data", str(tree),
            "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress"]
    res = subprocess.run(argv, env=offline_env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr and "LocalEntryNotFoundError" not in res.stderr, res.stderr[-3000:]
    assert "'tf_efficientnet_b0.aa_in1k'" in res.stderr and "--no-pretrained" in res.stderr
    assert network_attempts(offline_env) == []


def test_library_download_passes_other_errors_and_converts_connection_errors(monkeypatch):
    from zoo.weights.errors import PretrainedUnavailableError
    from zoo.weights.library import library_download

    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    with pytest.raises(ValueError, match="bad argument"):
        with library_download("x.tag", "timm"):
            raise ValueError("bad argument")
    with pytest.raises(PretrainedUnavailableError, match=r"timm could not download .*'x\.tag' \(ConnectionError: reset\).*the network"):
        with library_download("x.tag", "timm"):
            try:
                raise ConnectionError("reset")
            except ConnectionError as exc:
                raise RuntimeError("Failed to download weights") from exc


def test_offline_switches_reach_an_already_imported_hub_library(monkeypatch):
    import huggingface_hub.constants as constants

    from zoo.weights.env import OFFLINE_SWITCHES, apply_offline_switches

    for var in OFFLINE_SWITCHES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    assert apply_offline_switches() is False  # online: nothing changes
    assert "HF_HUB_OFFLINE" not in os.environ and constants.HF_HUB_OFFLINE is False
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert apply_offline_switches() is True
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["NO_ALBUMENTATIONS_UPDATE"] == "1"
    assert constants.HF_HUB_OFFLINE is True and constants.is_offline_mode()
