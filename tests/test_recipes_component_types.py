"""A component's ``type`` changed by an override or an ``extends`` layer replaces its arguments."""

from __future__ import annotations

import textwrap

import pytest
from omegaconf import OmegaConf

import zoo
from zoo.recipes import RecipeError, apply_overrides, get_recipe, merge_layers

TINY = "model.backbone.name=mobilenetv2_035"


def test_override_changing_the_pooling_type_drops_gem_arguments(registry):
    cfg = get_recipe("default", ["model.pooling.type=avg"], registry=registry)
    assert OmegaConf.to_container(cfg.model.pooling) == {"type": "avg"}
    # the model builds (GeM's p/eps/p_trainable would have crashed AvgPool before)
    model = zoo.create_model("default", overrides=["model.pooling.type=avg", TINY], registry=registry)
    assert type(model.global_pool).__name__ == "AvgPool"


def test_same_type_merges_and_new_type_arguments_follow_without_plus(registry):
    cfg = get_recipe("default", ["model.pooling.type=gem", "model.pooling.p=4"], registry=registry)
    assert OmegaConf.to_container(cfg.model.pooling) == {"type": "gem", "p": 4, "p_trainable": True, "eps": 1e-6}
    cfg = get_recipe("default", ["model.pooling.type=max", "model.pooling.flatten=true"], registry=registry)
    assert OmegaConf.to_container(cfg.model.pooling) == {"type": "max", "flatten": True}
    # in a later call, keys of the old type are unknown again (the replaced component has none of them)
    cfg = get_recipe("default", ["model.pooling.type=avg"], registry=registry)
    with pytest.raises(RecipeError, match=r"unknown override key 'model\.pooling\.p'"):
        apply_overrides(cfg, ["model.pooling.p=4"], what="default")


def test_the_head_keeps_its_class_count(registry):
    cfg = get_recipe("default-finetune", ["model.head.type=linear"], registry=registry)
    assert OmegaConf.to_container(cfg.model.head) == {"type": "linear", "num_classes": 1000}
    cfg = get_recipe("default-finetune", ["train.optimizer.type=sgd"], registry=registry)
    assert OmegaConf.to_container(cfg.train.optimizer) == {"type": "sgd"}


def test_extends_with_another_type_replaces_the_component(registry, tmp_path):
    child = tmp_path / "avg-child.yaml"
    child.write_text(textwrap.dedent("""
        extends: default
        model:
          pooling: {type: avg}
          backbone: {name: mobilenetv2_035}
    """))
    cfg = get_recipe(str(child), registry=registry)
    assert cfg.name == "avg-child"
    assert OmegaConf.to_container(cfg.model.pooling) == {"type": "avg"}
    # a layer that keeps the type is merged key by key
    assert OmegaConf.to_container(cfg.model.backbone) == {"type": "timm", "name": "mobilenetv2_035", "pretrained": False}
    model = zoo.create_model(cfg, registry=registry)
    assert type(model.global_pool).__name__ == "AvgPool"


def test_merge_layers_rules():
    base = OmegaConf.create({"a": {"type": "x", "k": 1, "inner": {"type": "p", "q": 2}},
                             "model": {"head": {"type": "arcface", "num_classes": 7, "subcenters": 3}}})
    layer = OmegaConf.create({"a": {"inner": {"type": "r"}}, "model": {"head": {"type": "linear"}}})
    out = OmegaConf.to_container(merge_layers(base, layer))
    assert out["a"] == {"type": "x", "k": 1, "inner": {"type": "r"}}
    assert out["model"]["head"] == {"type": "linear", "num_classes": 7}
    assert OmegaConf.to_container(base)["a"]["inner"] == {"type": "p", "q": 2}, "the base layer is not modified"


@pytest.mark.parametrize("value", ["[1,", "{a", "'unclosed"])
def test_a_malformed_override_value_is_one_line(registry, value):
    with pytest.raises(RecipeError) as exc:
        get_recipe("default", [f"model.pooling.p={value}"], registry=registry)
    text = str(exc.value)
    assert "\n" not in text and "model.pooling.p" in text and "Values are YAML" in text
