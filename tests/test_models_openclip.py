"""OpenCLIP ViT tower without projection and the guie2022-2nd-vith14-64d recipe (GUIE 2022 2nd place)."""

from __future__ import annotations

import pytest
import torch
from test_models_dolg import recipe_loss

RECIPE = "guie2022-2nd-vith14-64d"
TINY_VISION = "{image_size: 64, patch_size: 16, width: 64, layers: 2, head_width: 32}"
TINY = [
    f"model.backbone.vision_cfg={TINY_VISION}",
    "data.image_size=64",
    "model.head.num_classes=10",
    "model.embedding_dim=16",
]


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def vit_params(width: int, layers: int, patch: int, image: int, mlp_ratio: float = 4.0) -> int:
    """Parameters of an open_clip ViT visual tower without projection, from its config."""
    tokens = (image // patch) ** 2 + 1
    hidden = int(width * mlp_ratio)
    block = 4 * width + (3 * width * width + 3 * width) + (width * width + width)
    block += (width * hidden + hidden) + (hidden * width + width)
    return 3 * patch * patch * width + width + tokens * width + 2 * width + layers * block + 2 * width


def test_full_size_recipe_on_meta(registry):
    import timm

    from zoo.factory import create_model
    from zoo.recipes import get_recipe

    cfg = get_recipe(RECIPE, registry=registry)
    assert cfg.model.backbone.name == "ViT-H-14" and cfg.model.backbone.tag == "laion2b_s32b_b79k"
    assert cfg.model.backbone.pretrained is False
    assert cfg.model.embedding_dim == 64 and cfg.model.head.num_classes == 274330
    assert cfg.model.head.type == "arcface" and cfg.model.head.subcenters == 1
    assert cfg.loss.type == "arcface_scheduled" and cfg.loss.s == 30.0
    assert list(cfg.data.mean) == [0.48145466, 0.4578275, 0.40821073]
    with torch.device("meta"):
        model = create_model(RECIPE, registry=registry)
        ref = timm.create_model("vit_huge_patch14_clip_224", pretrained=False, num_classes=0)
    n = _count(model.backbone)
    assert n == vit_params(1280, 32, 14, 224) == _count(ref) == 630_766_080  # ~632M with the 1280x1024 proj
    assert model.backbone.net.proj is None and model.backbone.num_features == 1280
    assert model.backbone.output_fmt == "NC"
    keys = [k for k in model.state_dict() if k.startswith("backbone.net.")]
    assert len(keys) == 391  # the 392 keys of open_clip's ViT-H-14 visual minus proj
    assert model.neck[1].weight.shape == (64, 1280) and model.head.weight.shape == (274330, 64)


def test_tiny_recipe_forward_backward(registry):
    from zoo.factory import create_model

    torch.manual_seed(0)
    model = create_model(RECIPE, overrides=TINY, registry=registry)
    assert _count(model.backbone) == vit_params(64, 2, 16, 64)
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out["embedding"].shape == (2, 16) and out["logits"].shape == (2, 10)
    assert out["logits"].abs().max() <= 1 + 1e-5  # cosines, no margin
    recipe_loss(registry, RECIPE, TINY, out["logits"]).backward()
    for name in ("net.conv1.weight", "net.class_embedding", "net.transformer.resblocks.1.mlp.c_proj.weight"):
        grad = model.backbone.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_tower_output_is_ln_post_class_token_without_projection():
    from zoo_backbones.openclip_vit import TEST_KWARGS, create_openclip_vit

    torch.manual_seed(0)
    model = create_openclip_vit(**TEST_KWARGS).eval()
    net = model.net
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        t = net.conv1(x).flatten(2).transpose(1, 2)
        t = torch.cat([net.class_embedding.expand(2, 1, -1), t], dim=1) + net.positional_embedding
        t = net.transformer(net.ln_pre(t))
        expected = net.ln_post(t[:, 0])
        out = model(x)
    assert out.shape == (2, 64) and torch.allclose(out, expected, atol=1e-5)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        amp = model(x)
    assert torch.isfinite(amp.float()).all()


def test_bad_arguments_raise_clear_errors():
    from zoo_backbones.openclip_vit import TEST_KWARGS, OpenClipConfigError, create_openclip_vit

    with pytest.raises(OpenClipConfigError, match="unknown open_clip architecture"):
        create_openclip_vit(name="ViT-Q-99")
    with pytest.raises(OpenClipConfigError, match="stock vision config"):
        create_openclip_vit(**{**TEST_KWARGS, "pretrained": True})  # refuses before any download
    model = create_openclip_vit(**TEST_KWARGS)
    with pytest.raises(OpenClipConfigError, match="expects"):
        model(torch.randn(1, 3, 96, 96))


def test_registered_with_tiny_test_kwargs(registry):
    entry = registry.get("backbone", "openclip_vit")
    model = entry.create(**entry.meta["test_kwargs"])
    assert model.output_fmt == "NC" and model.num_features == 64
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 64)
