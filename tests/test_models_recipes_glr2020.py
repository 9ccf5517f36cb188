"""GLR2020 3rd-place and GLR2021 top-100 recipes: tiny CPU builds, full-size meta builds, the ensemble."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.assembly import build_model
from zoo.recipes import get_recipe

#: member recipe -> (timm architecture, image size, backbone params reported by timm
#: (num_classes=0), feature channels)
MEMBERS = {
    "glr2020-3rd-effnet-b3": ("tf_efficientnet_b3.ns_jft_in1k", 768, 10_696_232, 1536),
    "glr2020-3rd-effnet-b4": ("tf_efficientnet_b4.ns_jft_in1k", 768, 17_548_616, 1792),
    "glr2020-3rd-effnet-b5": ("tf_efficientnet_b5.ns_jft_in1k", 768, 28_340_784, 2048),
    "glr2020-3rd-effnet-b5b": ("tf_efficientnet_b5.ns_jft_in1k", 768, 28_340_784, 2048),
    "glr2020-3rd-effnet-b6": ("tf_efficientnet_b6.ns_jft_in1k", 768, 40_735_704, 2304),
    "glr2020-3rd-effnet-b6b": ("tf_efficientnet_b6.ns_jft_in1k", 512, 40_735_704, 2304),
    "glr2020-3rd-effnet-b7": ("tf_efficientnet_b7.ns_jft_in1k", 672, 63_786_960, 2560),
    "glr2020-3rd-resnest101": ("resnest101e", 768, 46_226_016, 2048),
    "glr2020-3rd-rexnet200": ("rexnet_200", 768, 13_805_620, 2560),
}
TOP100 = {"glr2021-top100-effnet-b0": ("tf_efficientnet_b0.aa_in1k", 640, 4_007_548, 1280)}
ALL = {**MEMBERS, **TOP100}
ENSEMBLE_ORDER = [  # the submission notebook's model list
    ("glr2020-3rd-effnet-b7", 672), ("glr2020-3rd-effnet-b6", 768), ("glr2020-3rd-effnet-b5", 768),
    ("glr2020-3rd-effnet-b4", 768), ("glr2020-3rd-effnet-b3", 768), ("glr2020-3rd-resnest101", 768),
    ("glr2020-3rd-rexnet200", 768), ("glr2020-3rd-effnet-b6b", 512), ("glr2020-3rd-effnet-b5b", 768),
]
TINY = ["model.backbone.name={}", "model.head.num_classes=7", "model.head.subcenters=2", "model.embedding_dim=16"]
TINY_BACKBONES = {
    "glr2020-3rd-resnest101": "resnest14d",
    "glr2020-3rd-rexnet200": "rexnet_100",
    "glr2021-top100-effnet-b0": "tf_efficientnet_b0",
}


def tiny(recipe: str) -> list[str]:
    name = TINY_BACKBONES.get(recipe, "mobilenetv2_035")
    return [TINY[0].format(name), *TINY[1:]]


def test_recipes_are_registered(registry):
    names = set(zoo.list_recipes("glr202*", registry=registry))
    assert set(ALL) | {"glr2020-3rd-ensemble"} <= names
    assert "_glr2020-3rd" not in names and "_glr2020-3rd" in zoo.list_recipes("_*", registry=registry)


@pytest.mark.parametrize("recipe", sorted(ALL))
def test_recipe_tiny_forward_backward(registry, recipe):
    torch.manual_seed(0)
    model = zoo.create_model(recipe, overrides=tiny(recipe), registry=registry).train()
    cfg = get_recipe(recipe, tiny(recipe), registry=registry)
    loss_cfg = {k: v for k, v in cfg.loss.items() if k != "type"}
    loss_fn = registry.create("loss", str(cfg.loss.type), **loss_cfg)
    loss_fn.set_class_counts([5, 1, 9, 30, 2, 2, 11])
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out["embedding"].shape == (2, 16) and out["logits"].shape == (2, 7)
    assert out["logits"].abs().max() <= 1.0 + 1e-5  # cosines, no margin
    loss = loss_fn(out["logits"], torch.tensor([1, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    assert model.head.weight.shape == (7 * 2, 16)
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("recipe", sorted(ALL))
def test_full_size_on_meta(registry, recipe):
    arch, size, params, channels = ALL[recipe]
    cfg = get_recipe(recipe, registry=registry)
    assert cfg.model.backbone.name == arch and cfg.model.backbone.pretrained is False
    assert cfg.data.image_size == size
    with torch.device("meta"):
        model = build_model(cfg, registry)
    assert sum(p.numel() for p in model.backbone.parameters()) == params
    assert model.backbone.num_features == channels
    assert model.neck[0].weight.shape == (512, channels)
    assert model.head.weight.shape == (81313 * 3, 512)
    assert model.data_config.input_size == size


def test_recipe_structure_follows_the_released_code(registry):
    for recipe in MEMBERS:
        cfg = get_recipe(recipe, registry=registry)
        assert cfg.model.pooling.type == "avg" and cfg.model.neck.type == "linear_swish"
        assert cfg.loss.type == "arcface_dynamic" and cfg.loss.s == 80.0 and cfg.loss.lam == 0.25
        assert cfg.seed == "000_6df0a360bef8463b"
    top = get_recipe("glr2021-top100-effnet-b0", registry=registry)
    assert top.model.pooling.type == "gem" and top.model.pooling.p_trainable is True
    assert top.model.neck.type == "option_d" and top.model.head.subcenters == 3
    assert top.seed == "002_c79a1bd7b5279557"


def test_ensemble_recipe_members(registry):
    cfg = get_recipe("glr2020-3rd-ensemble", registry=registry)
    members = [(m.recipe, m.image_size) for m in cfg.ensemble.members]
    assert members == ENSEMBLE_ORDER
    assert cfg.ensemble.combiner.type == "concat"
    # without overrides every member keeps its own backbone; model.* overrides reach every member
    first = list(cfg.ensemble.members[0].overrides)
    assert "model.backbone.name=tf_efficientnet_b7.ns_jft_in1k" in first
    small = get_recipe("glr2020-3rd-ensemble", tiny("x"), registry=registry)
    assert all("model.backbone.name=mobilenetv2_035" in list(m.overrides) for m in small.ensemble.members)
    assert all("model.head.num_classes=7" in list(m.overrides) for m in small.ensemble.members)


class _ConcatForTest:
    """Inline plugin: a plain concat combiner, so this test does not depend on the inference plugin."""

    @staticmethod
    @zoo.hookimpl
    def zoo_register_ensembles(registrar):
        def factory(**_):
            return lambda embs, members: torch.cat([torch.nn.functional.normalize(e, dim=1) for e in embs], dim=1)

        registrar.add("glr2020_test_concat", factory)


def test_ensemble_tiny_build():
    from zoo.plugins import load_registry

    reg = load_registry([("glr2020_test_concat", _ConcatForTest)], strict=False, disable=(), only=())
    overrides = ["model.backbone.name=mobilenetv2_035", *TINY[1:], "ensemble.combiner.type=glr2020_test_concat"]
    cfg = get_recipe("glr2020-3rd-ensemble", overrides, registry=reg)
    for i, member in enumerate(cfg.ensemble.members):
        member.image_size = 64 + 8 * (i % 2)  # CPU-sized inputs
    ens = zoo.create_model(cfg, registry=reg).eval()
    assert len(ens.members) == 9 and ens.embedding_dim == 9 * 16
    assert [c["image_size"] for c in ens.member_cfgs] == [64 + 8 * (i % 2) for i in range(9)]
    assert [c["family"] for c in ens.member_cfgs].count("effnet") == 7
    with torch.no_grad():
        out = ens(torch.randn(2, 3, 64, 64))
        emb = ens.embed(torch.randn(2, 3, 64, 64))
    assert out["logits"].shape == (2, 7) and out["embedding"].shape == (2, 144)
    assert emb.shape == (2, 144) and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
