"""DOLG-EfficientNet backbone and the glr2021-1st-dolg-* recipes (GLR2021 1st place, Henkel)."""

from __future__ import annotations

import pytest
import torch

DOLG_RECIPES = {
    # recipe: (timm encoder, local-branch channels, global-branch channels, dilations, stride)
    "glr2021-1st-dolg-b5": ("tf_efficientnet_b5.ns_jft_in1k", 176, 512, [6, 12, 18], None),
    "glr2021-1st-dolg-b6": ("tf_efficientnet_b6.ns_jft_in1k", 200, 576, [3, 6, 9], None),
    "glr2021-1st-dolg-b7": ("tf_efficientnet_b7.ns_jft_in1k", 224, 640, [3, 6, 9], [1, 1]),
}
TINY = ["model.backbone.name=tf_efficientnet_b0", "model.head.num_classes=10", "model.embedding_dim=16"]


def recipe_loss(registry, recipe: str, overrides: list[str], logits: torch.Tensor) -> torch.Tensor:
    """The recipe's own loss (dynamic margins from a toy 10-class histogram) on ``logits``."""
    from zoo.recipes import get_recipe

    cfg = get_recipe(recipe, overrides, registry=registry)
    loss_fn = registry.create("loss", str(cfg.loss.type), **{k: v for k, v in cfg.loss.items() if k != "type"})
    if hasattr(loss_fn, "set_class_counts"):
        loss_fn.set_class_counts([50, 1, 7, 3, 120, 2, 9, 30, 5, 14])
    if hasattr(loss_fn, "set_epoch"):
        loss_fn.set_epoch(1)
    value = loss_fn(logits, torch.tensor([0, 4]))
    assert value.ndim == 0 and torch.isfinite(value)
    return value


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def dolg_extra_params(c_local: int, c_global: int, dim: int = 1024, atrous: int = 512) -> int:
    """Parameters of the DOLG branches as released (mam, attention2d, conv_g, bn_g, GeM p)."""
    mam = 3 * (c_local * atrous * 9 + atrous) + (3 * atrous * dim + dim)
    att = (dim * dim + dim) + 2 * dim + (dim + 1)
    glob = (c_global * dim + dim) + 2 * dim + 1
    return mam + att + glob


@pytest.mark.parametrize("recipe", sorted(DOLG_RECIPES))
def test_full_size_recipe_on_meta(registry, recipe):
    import timm

    from zoo.factory import create_model
    from zoo.recipes import get_recipe

    name, c_l, c_g, dilations, stride = DOLG_RECIPES[recipe]
    cfg = get_recipe(recipe, registry=registry)
    assert cfg.model.backbone.name == name
    assert list(cfg.model.backbone.dilations) == dilations
    assert (None if cfg.model.backbone.stride is None else list(cfg.model.backbone.stride)) == stride
    assert cfg.model.head.num_classes == 81313 and cfg.model.head.subcenters == 3
    assert cfg.model.embedding_dim == 512 and cfg.loss.s == 45.0
    with torch.device("meta"):
        model = create_model(recipe, registry=registry)
        ref = timm.create_model(name, pretrained=False, features_only=True, out_indices=(3, 4))
    bb = model.backbone
    assert _count(bb.encoder) == _count(ref)
    assert _count(bb) == _count(ref) + dolg_extra_params(c_l, c_g)
    assert bb.mam.d0.in_channels == c_l and bb.conv_g.in_channels == c_g
    assert [bb.mam.d0.dilation[0], bb.mam.d1.dilation[0], bb.mam.d2.dilation[0]] == dilations
    assert bb.num_features == 2048 and bb.output_fmt == "NCHW"
    assert tuple(bb.encoder.conv_stem.stride) == tuple(stride or (2, 2))
    assert bb.bn_g.eps == 1e-3 and bb.bn_g.momentum == 0.1
    assert model.head.weight.shape == (81313 * 3, 512)
    assert model.neck[0].weight.shape == (512, 2048)


@pytest.mark.parametrize("recipe", sorted(DOLG_RECIPES))
def test_tiny_recipe_forward_backward(registry, recipe):
    from zoo.factory import create_model

    torch.manual_seed(0)
    model = create_model(recipe, overrides=TINY, registry=registry)
    model.train()
    x = torch.randn(2, 3, 64, 64)
    fused = model.backbone(x)
    # stride-16 map (stride-8 with a stride-1 stem), 1024 local + 1024 global channels
    expect = 8 if DOLG_RECIPES[recipe][4] else 4
    assert fused.shape == (2, 2048, expect, expect)
    out = model(x)
    assert out["embedding"].shape == (2, 16) and out["logits"].shape == (2, 10)
    recipe_loss(registry, recipe, TINY, out["logits"]).backward()
    for name in ("mam.d0.weight", "attention2d.conv2.weight", "conv_g.weight", "global_pool.p", "encoder.conv_stem.weight"):
        grad = model.backbone.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    emb = model.eval().embed(x)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)


def test_orthogonal_fusion_released_and_paper():
    from zoo_backbones.dolg import OrthogonalFusion

    torch.manual_seed(0)
    fl, fg = torch.randn(2, 8, 3, 3), torch.randn(2, 8) * 3
    fused = OrthogonalFusion("released")(fl, fg)
    assert fused.shape == (2, 16, 3, 3)
    assert torch.equal(fused[:, 8:], fg[:, :, None, None].expand(2, 8, 3, 3))
    norm = fg.norm(dim=1)
    dot = torch.einsum("bc,bchw->bhw", fg, fl)
    expected = fl - (dot / norm[:, None, None])[:, None] * fg[:, :, None, None]
    assert torch.allclose(fused[:, :8], expected, atol=1e-5)
    # released form divides by ||fg|| only: not orthogonal to fg; the paper form is
    assert torch.einsum("bc,bchw->bhw", fg, fused[:, :8]).abs().max() > 1e-2
    paper = OrthogonalFusion("paper")(fl, fg)
    assert torch.einsum("bc,bchw->bhw", fg, paper[:, :8]).abs().max() < 1e-4


def tiny_kwargs(registry, **changes):
    """The registered tiny DOLG arguments with the nested GeM built through the registry."""
    from zoo.assembly import build_nested_components
    from zoo_backbones.dolg import TEST_KWARGS

    return build_nested_components({**TEST_KWARGS, **changes}, registry)


def test_fusion_option_and_amp(registry):
    from zoo_backbones.dolg import create_dolg_efficientnet

    torch.manual_seed(0)
    model = create_dolg_efficientnet(**tiny_kwargs(registry, fusion="paper")).eval()
    assert model.fusion.mode == "paper"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    with torch.no_grad():
        ref = model(x)
    assert (out.float() - ref).abs().max() < 0.25 * ref.abs().max()


def test_bad_arguments_raise_clear_errors(registry):
    from zoo.registry import ZooError
    from zoo_backbones.dolg import TEST_KWARGS, DolgConfigError, OrthogonalFusion, create_dolg_efficientnet

    with pytest.raises(DolgConfigError, match="three dilations"):
        create_dolg_efficientnet(**tiny_kwargs(registry, dilations=[1, 2]))
    with pytest.raises(DolgConfigError, match="fusion"):
        OrthogonalFusion("orthogonal")
    with pytest.raises(DolgConfigError, match="local_dim"):
        create_dolg_efficientnet(**tiny_kwargs(registry, global_dim=8))
    with pytest.raises(ZooError, match="conv_stem"):
        create_dolg_efficientnet(**tiny_kwargs(registry, name="resnet10t", stride=[1, 1]))
    # the nested GeM must be built (through the registry), not passed as its spec
    with pytest.raises(DolgConfigError, match="global_pool: {component: pooling, type: gem"):
        create_dolg_efficientnet(**TEST_KWARGS)


def test_global_pool_is_the_registered_gem(registry):
    from zoo.assembly import ModelBuildError, build_nested_components

    model = registry.get("backbone", "dolg_efficientnet").create(**tiny_kwargs(registry))
    gem = registry.create("pooling", "gem")
    assert type(model.global_pool) is type(gem)
    assert float(model.global_pool.p.detach()) == 3.0 and model.global_pool.p.requires_grad
    with pytest.raises(ModelBuildError, match=r"model.backbone.global_pool: a nested pooling needs 'type'"):
        build_nested_components({"global_pool": {"component": "pooling", "p": 3.0}}, registry, "model.backbone")


def test_registered_with_tiny_test_kwargs(registry):
    from zoo.assembly import build_nested_components

    entry = registry.get("backbone", "dolg_efficientnet")
    model = entry.create(**build_nested_components(entry.meta["test_kwargs"], registry))
    assert model.output_fmt == "NCHW" and model.num_features == 64
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 64, 4, 4)
