"""The GLR2021 1st-place recognition and retrieval ensemble recipes (paper §2.3/2.4, Table 1)."""

from __future__ import annotations

import pytest
import torch

RECOGNITION = [
    ("glr2021-1st-dolg-b5", 768, "dolg"),
    ("glr2021-1st-dolg-b6", 768, "dolg"),
    ("glr2021-1st-dolg-b7", 448, "dolg"),
    ("glr2021-1st-hybrid-b3-swin224", 896, "hybrid"),
    ("glr2021-1st-hybrid-b5-swin224", 448, "hybrid"),
    ("glr2021-1st-hybrid-b6-swin384", 384, "hybrid"),
    ("glr2020-3rd-effnet-b3", 768, "effnet"),
    ("glr2020-3rd-effnet-b6b", 512, "effnet"),
]
RETRIEVAL = [m for m in RECOGNITION if m[0] != "glr2020-3rd-effnet-b3"]
TINY = [
    "model.backbone.name=tf_efficientnet_b0",
    "model.backbone.swin=swin_tiny_patch4_window7_224",
    "model.backbone.img_size=64",
    "model.head.num_classes=10",
    "model.embedding_dim=16",
]
#: extra timm Swin kwargs appended to the hybrid members in the build test (a slimmer swin_tiny)
SLIM_SWIN = ["+model.backbone.embed_dim=32", "+model.backbone.depths=[2,2,2,2]", "+model.backbone.num_heads=[1,2,4,8]"]


def _members(registry, recipe, overrides=()):
    from zoo.assembly import _kwargs
    from zoo.recipes import get_recipe

    cfg = get_recipe(recipe, overrides, registry=registry)
    return cfg, [_kwargs(item, drop=()) for item in cfg.ensemble.members]


@pytest.mark.parametrize("recipe,expected,combiner", [
    ("glr2021-1st-recognition-ensemble", RECOGNITION, "family_mean_concat"),
    ("glr2021-1st-retrieval-ensemble", RETRIEVAL, "concat"),
])
def test_members_families_and_sizes(registry, recipe, expected, combiner):
    cfg, members = _members(registry, recipe)
    assert cfg.ensemble.combiner.type == combiner
    assert [(m["recipe"], m["image_size"], m["family"]) for m in members] == expected
    for m in members:  # unset ensemble knobs keep every member's own recipe values
        sub = _members_cfg(registry, m)
        assert sub.model.embedding_dim == 512 and sub.model.head.num_classes == 81313
        if m["family"] == "hybrid":
            assert sub.model.backbone.img_size == m["image_size"]


def _members_cfg(registry, member):
    from zoo.recipes import get_recipe

    return get_recipe(member["recipe"], member["overrides"], registry=registry)


def test_overrides_shrink_every_member(registry):
    _, members = _members(registry, "glr2021-1st-recognition-ensemble", TINY)
    for m in members:
        sub = _members_cfg(registry, m)
        assert m["image_size"] == 64
        assert sub.model.head.num_classes == 10 and sub.model.embedding_dim == 16
        if m["family"] == "hybrid":
            assert sub.model.backbone.name == "swin_tiny_patch4_window7_224"
            assert sub.model.backbone.embedder == "tf_efficientnet_b0"  # follows model.backbone.name
            assert sub.model.backbone.img_size == 64
        else:
            assert sub.model.backbone.name == "tf_efficientnet_b0"


@pytest.mark.slow
def test_tiny_recognition_ensemble_builds_and_embeds(registry):
    from omegaconf import OmegaConf

    from zoo.factory import create_model
    from zoo.recipes import get_recipe

    if not registry.has("ensemble", "family_mean_concat"):
        pytest.skip("ensemble combiner 'family_mean_concat' is not registered by any loaded plugin")
    cfg = get_recipe("glr2021-1st-recognition-ensemble", TINY, registry=registry)
    members = OmegaConf.to_container(cfg.ensemble.members, resolve=True)
    for m in members:
        if m["family"] == "hybrid":
            m["overrides"] = [*m["overrides"], *SLIM_SWIN]
    cfg.ensemble.members = members
    torch.manual_seed(0)
    model = create_model(cfg, registry=registry).eval()
    assert len(model.members) == 8 and model.embedding_dim == 3 * 16  # family mean, then concat
    with torch.no_grad():
        emb = model.embed(torch.randn(2, 3, 64, 64))
    assert emb.shape == (2, 48) and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
