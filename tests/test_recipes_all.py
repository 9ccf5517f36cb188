"""Every recipe the issues name exists, resolves, and accepts the shrinking override keys."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

import zoo
from zoo.cli import main
from zoo.recipes import flat_keys

EXPECTED = [
    *(f"glr2020-3rd-effnet-{b}" for b in ("b3", "b4", "b5", "b5b", "b6", "b6b", "b7")),
    "glr2020-3rd-resnest101", "glr2020-3rd-rexnet200", "glr2020-3rd-ensemble",
    "glr2021-1st-dolg-b5", "glr2021-1st-dolg-b6", "glr2021-1st-dolg-b7",
    "glr2021-1st-hybrid-b3-swin224", "glr2021-1st-hybrid-b5-swin224", "glr2021-1st-hybrid-b6-swin384",
    "glr2021-1st-recognition-ensemble", "glr2021-1st-retrieval-ensemble",
    "glr2021-top100-effnet-b0", "glr2019-xception-cbp", "guie2022-2nd-vith14-64d", "default",
]
ALL = zoo.list_recipes()


def test_every_named_recipe_is_listed():
    missing = sorted(set(EXPECTED) - set(ALL))
    assert not missing, f"missing recipes: {missing}"
    assert zoo.list_recipes("glr2021*") == sorted(
        [n for n in ALL if n.startswith("glr2021")], key=zoo.registry.natural_key)


@pytest.mark.parametrize("name", ALL)
def test_recipe_resolves_with_override_keys(name):
    cfg = zoo.get_recipe(name)
    assert cfg.name == name and cfg.get("description")
    if cfg.get("ensemble") is not None:
        assert len(cfg.ensemble.members) >= 2
        for member in cfg.ensemble.members:
            assert member.recipe in ALL
        return
    keys = set(flat_keys(cfg))
    need = {"model.backbone.name", "model.head.num_classes", "model.head.subcenters", "model.embedding_dim"}
    if cfg.model.backbone.type == "dolg_efficientnet":
        need |= {"model.backbone.dilations", "model.backbone.stride"}
    if cfg.model.backbone.type == "hybrid_swin":
        need |= {"model.backbone.embedder", "model.backbone.embedder_index", "model.backbone.img_size"}
    assert need <= keys, f"{name} lacks {sorted(need - keys)}"
    OmegaConf.to_yaml(cfg, resolve=True)  # interpolations resolve


@pytest.mark.parametrize("name", ["glr2021-1st-dolg-b5", "guie2022-2nd-vith14-64d", "glr2020-3rd-ensemble"])
def test_zoo_info_prints_the_resolved_config(name, capsys):
    assert main(["info", name]) == 0
    out = capsys.readouterr().out
    assert f"name: {name}" in out and "# override keys" in out


def test_zoo_recipes_pattern_exit_codes(capsys):
    assert main(["recipes", "glr2021*"]) == 0
    listed = capsys.readouterr().out.split()
    assert "glr2021-1st-dolg-b5" in listed and all(n.startswith("glr2021") for n in listed)
    assert main(["recipes", "nothing-matches-*"]) == 1
