"""DataConfig: the one preprocessing description (recipe -> model -> embed / train / export / manifest)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo
from zoo.data.config import DataConfig, DataConfigError, model_data_configs, with_input_size

TINY = ["model.backbone.name=mobilenetv2_035"]


def test_from_recipe_reads_the_data_section(registry):
    cfg = zoo.get_recipe("default", registry=registry)
    dc = DataConfig.from_recipe(cfg)
    assert dc == DataConfig(384, "long_side", "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), None)
    glr = DataConfig.from_recipe(zoo.get_recipe("glr2020-3rd-effnet-b6b", registry=registry))
    assert (glr.input_size, glr.resize, glr.interpolation) == (512, "square", "bilinear")
    assert glr.mean == (0.485, 0.456, 0.406)


def test_unknown_keys_and_values_are_one_clear_error(registry):
    cfg = zoo.get_recipe("default", overrides=["+data.imag_size=3"], registry=registry)
    with pytest.raises(DataConfigError, match="unknown data key.*imag_size.*accepts image_size"):
        DataConfig.from_recipe(cfg)
    with pytest.raises(DataConfigError, match="data.resize 'crop'"):
        DataConfig(64, "crop")
    with pytest.raises(DataConfigError, match="interpolation 'fancy'"):
        DataConfig(64, interpolation="fancy")
    with pytest.raises(DataConfigError, match="data.std must be positive"):
        DataConfig(64, std=(0.5, 0.0, 0.5))
    with pytest.raises(DataConfigError, match="crop_pct=0.9 needs data.resize=square"):
        DataConfig(64, "long_side", crop_pct=0.9)
    with pytest.raises(DataConfigError, match="positive integer"):
        DataConfig(0)


def test_dict_round_trip_diff_and_aliases():
    dc = DataConfig(260, "square", "cubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 0.89)
    assert dc.interpolation == "bicubic"  # canonical names
    assert DataConfig.from_dict(dc.to_dict()) == dc
    assert DataConfig.from_dict({**dc.to_dict(), "input_size": [3, 260, 260]}) == dc
    other = DataConfig(384, "long_side", "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert dc.diff(other) == ["input_size: 260 != 384", "resize: square != long_side", "crop_pct: 0.89 != None"]
    assert dc.diff(dc) == []
    with pytest.raises(DataConfigError, match="unknown data config key"):
        DataConfig.from_dict({"image_sise": 3})


def test_output_sizes():
    assert DataConfig(384, "long_side").output_size(300, 451) == (255, 384)
    assert DataConfig(384, "long_side").output_size(640, 427) == (384, 256)
    assert DataConfig(64, "square").output_size(300, 451) == (64, 64)
    assert DataConfig(224, "square", crop_pct=0.875).resize_plan(300, 451) == (256, 384, 16, 80)
    assert DataConfig(224, "square", crop_pct=0.875).output_size(300, 451) == (224, 224)


def test_crop_pct_equals_timms_eval_transform(photo_paths):
    """square + crop_pct is exactly timm's evaluation transform (resize short side, centre crop)."""
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    from zoo.data.images import read_image

    dc = DataConfig(240, "square", "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), crop_pct=0.882)
    transform = create_transform(**resolve_data_config(pretrained_cfg=dc.pretrained_cfg()))
    for name in ("chelsea", "rocket", "astronaut"):
        want = transform(Image.open(photo_paths[name]).convert("RGB"))
        got = dc.normalize(dc.resize_uint8(read_image(photo_paths[name]))[None])[0]
        assert got.shape == want.shape == (3, 240, 240)
        assert torch.allclose(got, want, atol=1e-5), name


def test_normalize_matches_the_formula():
    dc = DataConfig(8, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.125))
    x = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    want = (x.float() / 255 - torch.tensor(dc.mean).view(1, 3, 1, 1)) / torch.tensor(dc.std).view(1, 3, 1, 1)
    got = dc.normalize(x)
    assert got.dtype == torch.float32 and got.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(got, want, atol=1e-5)


def test_resize_uint8_is_pil(photo_paths):
    from PIL import Image

    from zoo.data.images import read_image

    image = read_image(photo_paths["coffee"])
    dc = DataConfig(100, "long_side", "bicubic")
    want = np.asarray(Image.fromarray(image).resize((100, 67), Image.Resampling.BICUBIC))
    got = dc.resize_uint8(image)
    assert got.dtype == torch.uint8 and tuple(got.shape) == (3, 67, 100)
    assert np.array_equal(got.permute(1, 2, 0).numpy(), want)


def test_models_expose_data_config_and_pretrained_cfg(registry):
    model = zoo.create_model("default", overrides=TINY, registry=registry)
    assert model.data_config == DataConfig.from_recipe(zoo.get_recipe("default", registry=registry))
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 384, 384) and cfg["interpolation"] == "bicubic"
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["num_classes"] == 0 and cfg["resize"] == "long_side"
    assert model_data_configs(model) == [model.data_config]
    assert with_input_size([model.data_config], 64)[0].input_size == 64


def test_ensemble_members_get_their_own_data_config(registry):
    from zoo.assembly import ZooEnsemble

    a = zoo.create_model("default", overrides=TINY, registry=registry)
    b = zoo.create_model("default", overrides=["model.backbone.name=mobilenetv2_050", "data.resize=square"],
                         registry=registry)
    ens = ZooEnsemble([a, b], [{"image_size": 64}, {"image_size": 48}], lambda embs, cfgs: torch.cat(embs, 1))
    configs = model_data_configs(ens)
    assert [(c.input_size, c.resize) for c in configs] == [(64, "long_side"), (48, "square")]
    assert [m["input_size"] for m in ens.pretrained_cfg["members"]] == [(3, 64, 64), (3, 48, 48)]
    with pytest.raises(DataConfigError, match="--image-size applies to a single model"):
        with_input_size(configs, 32)
