"""The embedded ``default`` recipe: real offline ImageNet weights, GeM, ready to embed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE_DIR", str(tmp_path_factory.mktemp("zoo-cache")))
        mp.delenv("ZOO_WEIGHTS_MIRROR", raising=False)
        mp.setenv("ZOO_NO_PROGRESS", "1")
        yield


@pytest.fixture(scope="module")
def default_model(registry, weights_cache):
    import zoo

    return zoo.create_model("default", pretrained=True, registry=registry).eval()


def test_default_recipe_shape(registry):
    from zoo.recipes import get_recipe

    cfg = get_recipe("default", registry=registry)
    assert cfg.model.backbone.type == "timm" and cfg.model.backbone.name == "tf_efficientnet_lite2"
    assert cfg.model.pooling.type == "gem" and cfg.model.pooling.p == 3.0
    assert cfg.model.head.num_classes == 0 and cfg.model.head.subcenters == 1 and cfg.model.head.type is None
    assert cfg.model.embedding_dim == 1280
    assert list(cfg.data.mean) == [0.5] * 3 and list(cfg.data.std) == [0.5] * 3
    assert (cfg.data.interpolation, cfg.data.resize, cfg.data.image_size) == ("bicubic", "long_side", 384)


def test_pretrained_default_embeds_with_the_manifest_weights(default_model, registry):
    from safetensors.torch import load_file

    from zoo.weights.catalog import get_weights
    from zoo.weights.resolve import fetch_entry

    assert default_model.weights_entry == "tf_efficientnet_lite2.in1k"
    assert default_model.head is None
    (path,) = fetch_entry(get_weights("tf_efficientnet_lite2.in1k", registry))
    state = load_file(str(path))
    own = default_model.backbone.net.state_dict()
    assert set(own) == set(state) - {"classifier.weight", "classifier.bias"}
    assert all(torch.equal(own[k], state[k]) for k in own)
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        emb = default_model.embed(x)
    assert emb.shape == (2, 1280)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)


def test_imagenet_classes_of_real_photos(registry, weights_cache, photo_paths):
    """The converted weights in a plain timm model: chelsea is a cat, coffee is espresso."""
    import timm
    from PIL import Image
    from safetensors.torch import load_file
    from timm.data import create_transform, resolve_data_config

    from zoo.weights.catalog import get_weights
    from zoo.weights.resolve import fetch_entry

    entry = get_weights("tf_efficientnet_lite2.in1k", registry)
    (path,) = fetch_entry(entry)
    net = timm.create_model("tf_efficientnet_lite2").eval()
    net.load_state_dict(load_file(str(path)), strict=True)
    pre = entry.preprocess
    transform = create_transform(**resolve_data_config({
        "input_size": (3, pre.input_size, pre.input_size), "mean": pre.mean, "std": pre.std,
        "interpolation": pre.interpolation, "crop_pct": pre.crop_pct,
    }))
    top = {}
    for name in ("chelsea", "coffee"):
        x = transform(Image.open(photo_paths[name]).convert("RGB"))[None]
        with torch.no_grad():
            top[name] = int(net(x).argmax(1))
    assert top["chelsea"] in CAT_CLASSES, top
    assert top["coffee"] == ESPRESSO, top


def test_zoo_features_equal_plain_timm(default_model):
    import timm

    net = timm.create_model("tf_efficientnet_lite2").eval()
    net.load_state_dict(default_model.backbone.net.state_dict(), strict=False)
    x = torch.randn(1, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fmap = net.forward_features(x)
        gem = fmap.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)
        ours = default_model.embed(x)
    assert torch.allclose(ours, torch.nn.functional.normalize(gem, dim=1), atol=1e-5)


@pytest.mark.realdata
@pytest.mark.slow
def test_default_retrieval_map_on_instance_eval(instance_eval, default_model):
    """Each image queries all others: not below the plain-timm Lite0 reference (mAP 0.688); Lite2 measured 0.724."""
    spec = importlib.util.spec_from_file_location("default_retrieval", REPO / "benchmarks" / "default_retrieval.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from zoo.data.images import read_image

    paths, labels = bench.read_labels(instance_eval)
    pre = default_model.data_config
    with torch.no_grad():
        emb = torch.cat([
            default_model.embed(pre.normalize(pre.resize_uint8(read_image(p))[None]))
            for p in paths
        ]).numpy()
    m_ap, r1 = bench.average_precision_and_r1(emb, labels)
    assert m_ap >= 0.72, (m_ap, r1)
    assert r1 >= 0.68, (m_ap, r1)
