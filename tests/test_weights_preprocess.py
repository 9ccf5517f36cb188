"""The manifest's ``preprocess`` section is a DataConfig, and weights made with other preprocessing
than the recipe's are refused with an error naming both (whole models: every field; backbones:
mean, std and interpolation)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from zoo.data.config import DataConfig
from zoo.weights.catalog import get_weights
from zoo.weights.errors import ManifestError, PreprocessMismatchError
from zoo.weights.schema import parse_manifest

TINY = ["model.backbone.name=mobilenetv2_035"]


def entry_yaml(preprocess: dict) -> dict:
    return {"schema_version": 1, "weights": {"arch.tag": {
        "recipe": "default", "format": "safetensors", "embedding_dim": 8, "license": "MIT", "paper": "p",
        "files": [{"name": "x.safetensors", "sha256": "ab" * 32, "size": 10, "sources": ["https://example.org/x"]}],
        "preprocess": preprocess,
    }}}


def test_preprocess_section_parses_into_a_data_config():
    (e,) = parse_manifest(entry_yaml({"input_size": 384, "resize": "long_side", "interpolation": "area",
                                      "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}), "m.yaml").values()
    assert isinstance(e.preprocess, DataConfig)
    assert e.preprocess == DataConfig(input_size=384, resize="long_side", interpolation="box",
                                      mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    (e,) = parse_manifest(entry_yaml({"input_size": 224, "interpolation": "bicubic", "crop_pct": 0.875,
                                      "mean": [0.5] * 3, "std": [0.5] * 3}), "m.yaml").values()
    assert e.preprocess.resize == "square" and e.preprocess.crop_pct == 0.875  # the size rule defaults to square


@pytest.mark.parametrize("pre,field,words", [
    ({"resize": "stretch"}, "preprocess.resize", "must be one of square, long_side"),
    ({"resize": "long_side", "crop_pct": 0.9}, "preprocess", "needs data.resize=square"),
    ({"crop_pct": 1.5}, "preprocess.crop_pct", "(0, 1]"),
    ({"input_size": 0}, "preprocess.input_size", "positive integer"),
])
def test_bad_preprocess_names_entry_and_field(pre, field, words):
    base = {"input_size": 224, "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3}
    with pytest.raises(ManifestError) as err:
        parse_manifest(entry_yaml({**base, **pre}), "m.yaml")
    assert "m.yaml: entry 'arch.tag'" in str(err.value) and f"field '{field}'" in str(err.value)
    assert words in str(err.value)


@pytest.fixture(scope="module")
def tiny_model(registry):
    import zoo

    return zoo.create_model("default", overrides=TINY, registry=registry)


def test_backbone_weights_at_another_size_are_fine(tiny_model, registry):
    from zoo.weights.loading import check_preprocess

    entry = get_weights("tf_efficientnet_lite2.in1k", registry)  # 260 px square crop 0.89; the recipe: 384 long side
    assert entry.load_into == "backbone" and tiny_model.data_config.input_size != entry.preprocess.input_size
    check_preprocess(tiny_model, entry)  # mean, std and interpolation agree


@pytest.mark.parametrize("field,value,words", [
    ("interpolation", "bilinear", "interpolation: bicubic != bilinear"),
    ("mean", (0.485, 0.456, 0.406), "mean: [0.5, 0.5, 0.5] != [0.485, 0.456, 0.406]"),
])
def test_backbone_weights_with_other_normalisation_are_refused(tiny_model, registry, field, value, words):
    from zoo.weights.loading import check_preprocess

    entry = get_weights("tf_efficientnet_lite2.in1k", registry)
    entry = dataclasses.replace(entry, preprocess=dataclasses.replace(entry.preprocess, **{field: value}))
    with pytest.raises(PreprocessMismatchError) as err:
        check_preprocess(tiny_model, entry)
    msg = str(err.value)
    assert "weights 'tf_efficientnet_lite2.in1k' (backbone weights)" in msg and "recipe 'default'" in msg
    assert words in msg and "input_size" not in msg  # only the fields backbone weights fix
    assert f"data.{field}=" in msg and "\n" not in msg


def test_whole_model_weights_need_the_full_config(tiny_model, registry):
    from zoo.weights.loading import check_preprocess

    entry = dataclasses.replace(get_weights("tf_efficientnet_lite2.in1k", registry), load_into="model",
                                preprocess=tiny_model.data_config)
    check_preprocess(tiny_model, entry)  # identical: fine
    for change, words in [({"input_size": 512}, "input_size: 384 != 512"),
                          ({"resize": "square"}, "resize: long_side != square")]:
        other = dataclasses.replace(entry, preprocess=dataclasses.replace(tiny_model.data_config, **change))
        with pytest.raises(PreprocessMismatchError, match="(model weights)") as err:
            check_preprocess(tiny_model, other)
        assert words in str(err.value)
    other = dataclasses.replace(entry, preprocess=DataConfig(input_size=384, resize="square", crop_pct=0.9))
    with pytest.raises(PreprocessMismatchError) as err:
        check_preprocess(tiny_model, other)
    assert "data.image_size" not in str(err.value) and "data.crop_pct=0.9" in str(err.value)


def test_pretrained_with_other_interpolation_fails_before_fetching(registry, tmp_path, monkeypatch):
    import zoo

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(PreprocessMismatchError, match=r"interpolation: bilinear != bicubic.*data\.interpolation=bicubic"):
        zoo.create_model("default", pretrained=True, overrides=["data.interpolation=bilinear"], registry=registry)
    assert not (tmp_path / "cache").exists()  # refused before anything was fetched or converted
