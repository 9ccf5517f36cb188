"""Hybrid EfficientNet-Swin backbone and the glr2021-1st-hybrid-* recipes (GLR2021 1st place)."""

from __future__ import annotations

import pytest
import torch
from test_models_dolg import recipe_loss

HYBRID_RECIPES = {
    # recipe: (swin, embedder, out index, img size, stride, embedder channels, patch grid)
    "glr2021-1st-hybrid-b3-swin224": (
        "swin_base_patch4_window7_224.ms_in22k_ft_in1k", "tf_efficientnet_b3.ns_jft_in1k", 3, 896, None, 136, 56,
    ),
    "glr2021-1st-hybrid-b5-swin224": (
        "swin_base_patch4_window7_224.ms_in22k_ft_in1k", "tf_efficientnet_b5.ns_jft_in1k", 3, 448, [1, 1], 176, 56,
    ),
    "glr2021-1st-hybrid-b6-swin384": (
        "swin_base_patch4_window12_384.ms_in22k_ft_in1k", "tf_efficientnet_b6.ns_jft_in1k", 1, 384, None, 40, 96,
    ),
}
#: zoo keys = upstream keys (SEED_SYSTEMS §2.2: 936/1216/1348) - 35 attention buffers - unused global_pool.p
ZOO_KEYS = {"glr2021-1st-hybrid-b3-swin224": 936 - 36, "glr2021-1st-hybrid-b5-swin224": 1216 - 36,
            "glr2021-1st-hybrid-b6-swin384": 1348 - 36}
TINY = [
    "model.backbone.name=swin_tiny_patch4_window7_224",
    "model.backbone.embedder=tf_efficientnet_b0",
    "model.backbone.img_size=64",
    "model.head.num_classes=10",
    "model.embedding_dim=16",
    # a slimmer swin_tiny (extra timm Swin kwargs) keeps the CPU tests fast
    "+model.backbone.embed_dim=32",
    "+model.backbone.depths=[2,2,2,2]",
    "+model.backbone.num_heads=[1,2,4,8]",
]


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("recipe", sorted(HYBRID_RECIPES))
def test_full_size_recipe_on_meta(registry, recipe):
    import timm

    from zoo.factory import create_model
    from zoo.recipes import get_recipe

    swin, emb, idx, size, stride, c_emb, grid = HYBRID_RECIPES[recipe]
    cfg = get_recipe(recipe, registry=registry)
    bcfg = cfg.model.backbone
    assert (bcfg.name, bcfg.embedder, bcfg.embedder_index, bcfg.img_size) == (swin, emb, idx, size)
    assert (None if bcfg.stride is None else list(bcfg.stride)) == stride
    assert cfg.data.image_size == size  # follows model.backbone.img_size
    assert cfg.model.head.num_classes == 81313 and cfg.model.embedding_dim == 512
    with torch.device("meta"):
        model = create_model(recipe, registry=registry)
        ref_swin = timm.create_model(swin, pretrained=False, num_classes=0)
        ref_emb = timm.create_model(emb, pretrained=False, features_only=True, out_indices=[idx])
    bb = model.backbone
    # the Swin at its own patch grid: the released models need no resizing of the window grid
    assert tuple(ref_swin.patch_embed.grid_size) == (grid, grid) and bb.grid_size == [grid, grid]
    proj = c_emb * 128 + 128
    expected = _count(ref_swin) - _count(ref_swin.patch_embed) + _count(ref_emb) + proj
    assert _count(bb) == expected
    assert bb.swin.patch_embed.proj.weight.shape == (128, c_emb, 1, 1)
    assert bb.num_features == 1024 and bb.output_fmt == "NC"
    assert len(model.state_dict()) == ZOO_KEYS[recipe]
    assert tuple(bb.swin.patch_embed.backbone.conv_stem.stride) == tuple(stride or (2, 2))


@pytest.mark.parametrize("recipe", sorted(HYBRID_RECIPES))
def test_tiny_recipe_forward_backward(registry, recipe):
    from zoo.factory import create_model

    torch.manual_seed(0)
    model = create_model(recipe, overrides=TINY, registry=registry)
    assert model.data_config.input_size == 64
    idx, stride = HYBRID_RECIPES[recipe][2], HYBRID_RECIPES[recipe][4]
    reduction = {1: 4, 3: 16}[idx] // (2 if stride else 1)
    grid = 64 // reduction
    assert model.backbone.grid_size == [grid, grid]
    x = torch.randn(2, 3, 64, 64)
    tokens = model.backbone.swin.patch_embed(x)
    assert tokens.shape == (2, grid, grid, 32)  # NHWC, the Swin embed_dim
    out = model(x)
    assert out["embedding"].shape == (2, 16) and out["logits"].shape == (2, 10)
    recipe_loss(registry, recipe, TINY, out["logits"]).backward()
    for name in ("swin.patch_embed.proj.weight", "swin.patch_embed.backbone.conv_stem.weight", "swin.norm.weight"):
        grad = model.backbone.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_output_is_norm_then_token_mean():
    from zoo_backbones.hybrid_swin import TEST_KWARGS, create_hybrid_swin

    torch.manual_seed(0)
    model = create_hybrid_swin(**TEST_KWARGS).eval()
    size = TEST_KWARGS["img_size"]
    assert model.grid_size == [size // 8, size // 8]  # out index 2: reduction 8
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        swin = model.swin
        feats = swin.norm(swin.layers(swin.patch_embed(x)))  # B x h x w x C
        expected = feats.flatten(1, 2).mean(1)
        out = model(x)
    assert out.shape == (2, model.num_features) and torch.allclose(out, expected, atol=1e-5)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        amp = model(x)
    assert torch.isfinite(amp.float()).all()


def test_bad_arguments_raise_clear_errors():
    from zoo_backbones.hybrid_swin import TEST_KWARGS, HybridSwinConfigError, create_hybrid_swin

    with pytest.raises(HybridSwinConfigError, match="multiple of the embedder's reduction"):
        create_hybrid_swin(**{**TEST_KWARGS, "img_size": 60})
    with pytest.raises(HybridSwinConfigError, match="embedder"):
        create_hybrid_swin(**{**TEST_KWARGS, "embedder_index": 9})
    model = create_hybrid_swin(**TEST_KWARGS)
    with pytest.raises(HybridSwinConfigError, match="expects"):
        model(torch.randn(1, 3, 96, 96))


def test_registered_with_tiny_test_kwargs(registry):
    entry = registry.get("backbone", "hybrid_swin")
    model = entry.create(**entry.meta["test_kwargs"])
    assert model.output_fmt == "NC"
    size = entry.meta["test_kwargs"]["img_size"]
    assert model(torch.randn(1, 3, size, size)).shape == (1, model.num_features)
