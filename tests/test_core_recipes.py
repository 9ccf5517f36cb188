"""Recipes: extends, overrides with checked keys, requires_plugins, natural listing, assembly."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from zoo import hookimpl
from zoo.assembly import ModelBuildError, ZooModel
from zoo.factory import create_model
from zoo.plugins import load_registry
from zoo.recipes import RecipeError, get_recipe, list_recipes
from zoo.registry import UnknownComponentError


class TinyConv(nn.Module):
    """A 2-layer CNN used only by these tests."""

    output_fmt = "NCHW"

    def __init__(self, width: int = 8):
        super().__init__()
        self.num_features = width
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 2, 1))

    def forward(self, x):
        return self.body(x)


class MeanPool(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))


class CosHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, subcenters: int = 1):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes * subcenters, in_features))
        self.k = subcenters

    def forward(self, x):
        cos = nn.functional.linear(nn.functional.normalize(x), nn.functional.normalize(self.weight))
        return cos.view(x.shape[0], -1, self.k).amax(2)


RECIPES = {
    "toy-base": """
        description: base
        data: {image_size: 32}
        model:
          backbone: {type: tiny, name: tiny, width: 8}
          pooling: {type: mean}
          neck: {type: lin}
          embedding_dim: 6
          head: {type: cos, num_classes: 5, subcenters: 1}
        train: {lr: 0.001, epochs: 2}
    """,
    "toy-b2": "extends: toy-base\ntrain: {epochs: 3}\n",
    "toy-b10": "extends: toy-b2\nmodel: {head: {subcenters: 3}}\n",
    "toy-needs": "extends: toy-base\nrequires_plugins: ['toy>=2.0']\n",
    "toy-cycle-a": "extends: toy-cycle-b\n",
    "toy-cycle-b": "extends: toy-cycle-a\n",
    "toy-badref": "extends: toy-base\nmodel: {pooling: {type: gemm}}\n",
    "_toy-hidden": "description: a base\n",
}


@pytest.fixture()
def reg(tmp_path: Path):
    for name, text in RECIPES.items():
        (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(text))

    class ToyPlugin:
        @hookimpl
        def zoo_register_backbones(self, registrar):
            registrar.add("tiny", lambda name="tiny", width=8: TinyConv(width))

        @hookimpl
        def zoo_register_poolings(self, registrar):
            registrar.add("mean", MeanPool)

        @hookimpl
        def zoo_register_necks(self, registrar):
            registrar.add("lin", lambda in_features, out_features: nn.Linear(in_features, out_features))

        @hookimpl
        def zoo_register_heads(self, registrar):
            registrar.add("cos", CosHead)

        @hookimpl
        def zoo_register_recipes(self, registrar):
            registrar.add_directory(tmp_path)

    return load_registry([("toy", ToyPlugin())], entry_points=False)


def test_list_recipes_natural_sort_and_hidden_bases(reg):
    assert list_recipes("toy-b*", registry=reg) == ["toy-b2", "toy-b10", "toy-badref", "toy-base"]
    assert "_toy-hidden" not in list_recipes(registry=reg)
    assert list_recipes("_*", registry=reg) == ["_toy-hidden"]


def test_extends_chain_merges_child_last(reg):
    cfg = get_recipe("toy-b10", registry=reg)
    assert cfg.name == "toy-b10"
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.001
    assert cfg.model.head.subcenters == 3 and cfg.model.head.num_classes == 5
    assert "extends" not in cfg


def test_extends_cycle_is_an_error(reg):
    with pytest.raises(RecipeError, match="toy-cycle-a -> toy-cycle-b -> toy-cycle-a"):
        get_recipe("toy-cycle-a", registry=reg)


def test_overrides_apply_and_unknown_keys_suggest(reg):
    cfg = get_recipe("toy-base", ["train.lr=1e-4", "model.head.num_classes=7"], registry=reg)
    assert cfg.train.lr == pytest.approx(1e-4) and cfg.model.head.num_classes == 7
    with pytest.raises(RecipeError, match=r"unknown override key 'train\.lrr'.*Close matches: train\.lr"):
        get_recipe("toy-base", ["train.lrr=1"], registry=reg)
    with pytest.raises(RecipeError, match="not of the form key=value"):
        get_recipe("toy-base", ["train.lr"], registry=reg)
    cfg = get_recipe("toy-base", ["+train.ema=0.999"], registry=reg)
    assert cfg.train.ema == pytest.approx(0.999)


def test_unknown_recipe_and_component_names(reg):
    with pytest.raises(UnknownComponentError, match="unknown recipe 'toy-bse'.*toy-base"):
        get_recipe("toy-bse", registry=reg)
    with pytest.raises(UnknownComponentError, match="unknown pooling 'gemm'"):
        get_recipe("toy-badref", registry=reg)


def test_requires_plugins_checks_versions(reg):
    with pytest.raises(RecipeError, match=r"requires plugins: toy>=2\.0 \(found None\)|not installed"):
        get_recipe("toy-needs", registry=reg)


def test_create_model_forward_and_embed(reg):
    model = create_model("toy-base", registry=reg)
    assert isinstance(model, ZooModel)
    x = torch.randn(3, 3, 32, 32)
    out = model(x)
    assert out["embedding"].shape == (3, 6) and out["logits"].shape == (3, 5)
    assert out["logits"].abs().max() <= 1.0 + 1e-6
    emb = model.embed(x)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    assert model.data_config.input_size == 32


def test_subcenter_override_reaches_the_head(reg):
    model = create_model("toy-base", overrides=["model.head.subcenters=3"], registry=reg)
    assert model.head.weight.shape == (15, 6)


def test_checkpoint_round_trip_and_mismatch(reg, tmp_path):
    from zoo.atomic import save_safetensors

    model = create_model("toy-base", registry=reg)
    path = tmp_path / "toy.safetensors"
    save_safetensors(path, model.state_dict(), {"recipe": "toy-base"})
    again = create_model("toy-base", checkpoint=path, registry=reg)
    x = torch.randn(2, 3, 32, 32)
    model.eval(), again.eval()
    assert torch.equal(model(x)["logits"], again(x)["logits"])
    with pytest.raises(ModelBuildError, match="shape mismatches.*head.weight"):
        create_model("toy-base", checkpoint=path, overrides=["model.head.num_classes=9"], registry=reg)
    pth = tmp_path / "toy.pth"
    pth.write_bytes(b"not read")
    with pytest.raises(ModelBuildError, match="never unpickles"):
        create_model("toy-base", checkpoint=pth, registry=reg)


def test_embedding_dim_without_neck_is_an_error(reg):
    with pytest.raises(ModelBuildError, match="no neck"):
        create_model("toy-base", overrides=["model.neck=null"], registry=reg)
