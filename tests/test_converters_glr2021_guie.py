"""Converters ``glr2021-1st`` (DOLG, Hybrid-Swin) and ``guie2022-2nd`` round-tripped through create_model.

Checkpoints are built here in the upstream layouts: a test-only re-implementation of Henkel's DOLG
``Net`` and of GUIE's ``XL_CLIP_Net`` (upstream attribute names, random weights), and the timm-0.4.12
Swin key layout generated from a timm 1.x model by the inverse renames plus the 35 attention buffers.
Each is saved the upstream way (wrapper dict, ``module.`` prefix), converted with
``zoo.weights.convert.convert_checkpoint`` and loaded with ``zoo.create_model(..., checkpoint=...)``.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

DOLG_TINY = ["model.backbone.name=tf_efficientnet_b0", "model.head.num_classes=10", "model.embedding_dim=16"]
HYBRID_TINY = [
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
GUIE_TINY = [
    "model.backbone.vision_cfg={image_size: 64, patch_size: 16, width: 64, layers: 2, head_width: 32}",
    "data.image_size=64",
    "model.head.num_classes=10",
    "model.embedding_dim=16",
]
TOL = 1e-5


# --------------------------------------------------------------------------------------------------
# Upstream reference modules (structure and attribute names as released; SEED_SYSTEMS §2.1, §3.1)
# --------------------------------------------------------------------------------------------------
class RefGeM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * 3)
        self.eps = 1e-6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x.clamp(min=self.eps).pow(self.p), (x.size(-2), x.size(-1))).pow(1.0 / self.p)


class RefMultiAtrousModule(nn.Module):
    def __init__(self, in_chans: int, out_chans: int, dilations: list[int]) -> None:
        super().__init__()
        self.d0 = nn.Conv2d(in_chans, 512, kernel_size=3, dilation=dilations[0], padding="same")
        self.d1 = nn.Conv2d(in_chans, 512, kernel_size=3, dilation=dilations[1], padding="same")
        self.d2 = nn.Conv2d(in_chans, 512, kernel_size=3, dilation=dilations[2], padding="same")
        self.conv1 = nn.Conv2d(512 * 3, out_chans, kernel_size=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv1(torch.cat([self.d0(x), self.d1(x), self.d2(x)], dim=1)))


class RefSpatialAttention2d(nn.Module):
    def __init__(self, in_c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, 1024, 1, 1)
        self.bn = nn.BatchNorm2d(1024)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(1024, 1, 1, 1)
        self.softplus = nn.Softplus(beta=1, threshold=20)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.bn(self.conv1(x))
        feature_map_norm = F.normalize(x, p=2, dim=1)
        att_score = self.softplus(self.conv2(self.act1(x)))
        return att_score.expand_as(feature_map_norm) * feature_map_norm, att_score


class RefOrthogonalFusion(nn.Module):
    def forward(self, fl: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
        bs, c, w, h = fl.shape
        fl_dot_fg = torch.bmm(fg[:, None, :], fl.reshape(bs, c, -1)).reshape(bs, 1, w, h)
        fg_norm = torch.norm(fg, dim=1)
        fl_proj = (fl_dot_fg / fg_norm[:, None, None, None]) * fg[:, :, None, None]
        fl_orth = fl - fl_proj
        return torch.cat([fl_orth, fg[:, :, None, None].repeat(1, 1, w, h)], dim=1)


class RefSubcenterHead(nn.Module):
    def __init__(self, in_features: int, out_features: int, k: int = 3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features * k, in_features) * 0.1)
        self.out_features, self.k = out_features, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cos = F.linear(F.normalize(x), F.normalize(self.weight)).view(-1, self.out_features, self.k)
        return cos.max(dim=2)[0]


class RefDolgNet(nn.Module):
    """Henkel's ``ch_mdl_dolg_efficientnet.Net`` (inference path)."""

    def __init__(self, backbone: str, dilations: list[int], stride, n_classes: int, emb: int) -> None:
        super().__init__()
        import timm

        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0, global_pool="",
                                          in_chans=3, features_only=True)
        if stride is not None:
            self.backbone.conv_stem.stride = tuple(stride)
        backbone_out = self.backbone.feature_info[-1]["num_chs"]
        backbone_out_1 = self.backbone.feature_info[-2]["num_chs"]
        self.global_pool = RefGeM()
        self.fusion_pool = nn.AdaptiveAvgPool2d(1)
        self.neck = nn.Sequential(nn.Linear(2048, emb, bias=True), nn.BatchNorm1d(emb), nn.PReLU())
        self.head = RefSubcenterHead(emb, n_classes)
        self.mam = RefMultiAtrousModule(backbone_out_1, 1024, dilations)
        self.conv_g = nn.Conv2d(backbone_out, 1024, kernel_size=1)
        self.bn_g = nn.BatchNorm2d(1024, eps=0.001, momentum=0.1)
        self.act_g = nn.SiLU(inplace=True)
        self.attention2d = RefSpatialAttention2d(1024)
        self.fusion = RefOrthogonalFusion()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.backbone(x)
        x_l, x_g = x[-2], x[-1]
        x_l, _ = self.attention2d(self.mam(x_l))
        x_g = self.global_pool(self.act_g(self.bn_g(self.conv_g(x_g))))[:, :, 0, 0]
        x_fused = self.fusion_pool(self.fusion(x_l, x_g))[:, :, 0, 0]
        x_emb = self.neck(x_fused)
        return x_emb, self.head(x_emb)


class RefResidualAttentionBlock(nn.Module):
    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, d_model * 4)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(d_model * 4, d_model)),
        ]))
        self.ln_2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # L x N x D
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class RefTransformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[RefResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class RefVisionTransformer(nn.Module):
    """GUIE ``clip_vit.VisionTransformer`` (a copy of the CLIP ViT); ``forward_features`` skips ``proj``."""

    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((image_size // patch_size) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = RefTransformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x).permute(1, 0, 2)
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :])


class RefBackbone(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net


class RefNeck(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.neck = nn.Sequential(nn.Dropout(0.2), nn.Linear(in_features, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(x)


class RefArcMarginProduct(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x), F.normalize(self.weight))


class RefClipNet(nn.Module):
    """GUIE ``build_model.XL_CLIP_Net``: ``backbone.net`` ViT, ``Neck``, ``head``."""

    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int,
                 emb: int, n_classes: int) -> None:
        super().__init__()
        self.backbone = RefBackbone(RefVisionTransformer(image_size, patch_size, width, layers, heads, output_dim))
        self.Neck = RefNeck(width, emb)
        self.head = RefArcMarginProduct(emb, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.Neck(self.backbone.net.forward_features(x))
        return emb, self.head(emb)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def perturb(module: nn.Module, seed: int = 0) -> None:
    """Random BN statistics and small noise on every float tensor, so a wrong mapping shows up."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=gen)
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("running_mean"):
                t.copy_(0.1 * noise)
            elif name.endswith(".p") and t.numel() == 1:
                t.fill_(2.5)
            else:
                t.add_(0.02 * noise)


def save_upstream(path, state: dict, wrapper: str, **extra) -> None:
    torch.save({wrapper: {f"module.{k}": v for k, v in state.items()}, **extra}, path)


def to_timm0412_swin_layout(model: nn.Module) -> dict[str, torch.Tensor]:
    """A zoo Hybrid-Swin ZooModel's weights in Henkel's timm-0.4.12 layout (inverse of the converter)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith("backbone.swin."):
            rest = key[len("backbone.swin."):]
            rest = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", rest)
            out["backbone." + rest] = value
        else:
            out[key] = value
    for name, buf in model.backbone.swin.named_buffers():
        if "relative_position_index" in name or "attn_mask" in name:
            out["backbone." + name] = buf
    out["global_pool.p"] = torch.ones(1, device=next(iter(out.values())).device) * 3
    return out


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# --------------------------------------------------------------------------------------------------
# round trips (tiny, CPU, numerical parity)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe,dilations,stride", [
    ("glr2021-1st-dolg-b5", [6, 12, 18], None),
    ("glr2021-1st-dolg-b7", [3, 6, 9], [1, 1]),
])
def test_dolg_round_trip(registry, tmp_path, recipe, dilations, stride):
    from zoo.factory import create_model
    from zoo.weights.convert import convert_checkpoint

    torch.manual_seed(0)
    ref = RefDolgNet("tf_efficientnet_b0", dilations, stride, n_classes=10, emb=16).eval()
    perturb(ref)
    src = tmp_path / "checkpoint_last_seed0.pth"
    save_upstream(src, ref.state_dict(), "model", epoch=3)
    dst = convert_checkpoint(src, "glr2021-1st", recipe, tmp_path / "dolg.safetensors", overrides=DOLG_TINY,
                             registry=registry)
    model = create_model(recipe, checkpoint=dst, overrides=DOLG_TINY, registry=registry).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref_emb, ref_cos = ref(x)
        out = model(x)
    assert _max_diff(out["embedding"], ref_emb) <= TOL
    assert _max_diff(out["logits"], ref_cos) <= TOL
    assert float(model.backbone.global_pool.p.detach()) == pytest.approx(2.5)


@pytest.mark.parametrize("recipe", ["glr2021-1st-hybrid-b5-swin224", "glr2021-1st-hybrid-b6-swin384"])
def test_hybrid_round_trip_from_timm0412_layout(registry, tmp_path, recipe):
    from timm.models.swin_transformer import checkpoint_filter_fn

    from zoo.factory import create_model
    from zoo.weights.convert import convert_checkpoint
    from zoo_converters.glr2021_1st import convert

    torch.manual_seed(0)
    source = create_model(recipe, overrides=HYBRID_TINY, registry=registry).eval()
    perturb(source)
    upstream = to_timm0412_swin_layout(source)
    assert "backbone.layers.0.downsample.reduction.weight" in upstream
    assert not any(k.startswith("backbone.layers.0.downsample") for k in source.state_dict())
    # our renames agree with timm's own Swin checkpoint filter
    swin_part = {k[len("backbone."):]: v for k, v in upstream.items() if k.startswith("backbone.")}
    filtered = checkpoint_filter_fn(swin_part, source.backbone.swin)
    mapped = convert(upstream, source_cfg(registry, recipe))
    assert {f"backbone.swin.{k}" for k in filtered} == {k for k in mapped if k.startswith("backbone.swin.")}
    src = tmp_path / "checkpoint_last_seed0.pth"
    save_upstream(src, upstream, "model", epoch=5)
    dst = convert_checkpoint(src, "glr2021-1st", recipe, tmp_path / "hybrid.safetensors", overrides=HYBRID_TINY,
                             registry=registry)
    model = create_model(recipe, checkpoint=dst, overrides=HYBRID_TINY, registry=registry).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = source(x)
        out = model(x)
    assert _max_diff(out["embedding"], ref["embedding"]) <= TOL
    assert _max_diff(out["logits"], ref["logits"]) <= TOL


def source_cfg(registry, recipe: str, overrides=HYBRID_TINY):
    from zoo.recipes import get_recipe

    return get_recipe(recipe, overrides, registry=registry)


def test_guie_round_trip(registry, tmp_path):
    from zoo.factory import create_model
    from zoo.weights.convert import convert_checkpoint

    torch.manual_seed(0)
    ref = RefClipNet(64, 16, 64, 2, 2, output_dim=32, emb=16, n_classes=10).eval()
    perturb(ref)
    src = tmp_path / "CLIP_ViT_best.pth"
    save_upstream(src, ref.state_dict(), "state_dict", optimizer={}, epoch={}, config={})
    dst = convert_checkpoint(src, "guie2022-2nd", "guie2022-2nd-vith14-64d", tmp_path / "guie.safetensors",
                             overrides=GUIE_TINY, registry=registry)
    model = create_model("guie2022-2nd-vith14-64d", checkpoint=dst, overrides=GUIE_TINY, registry=registry).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref_emb, ref_cos = ref(x)
        out = model(x)
    assert _max_diff(out["embedding"], ref_emb) <= TOL
    assert _max_diff(out["logits"], ref_cos) <= TOL


# --------------------------------------------------------------------------------------------------
# full-size key layouts (meta device, no numbers)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe,backbone,dilations,stride", [
    ("glr2021-1st-dolg-b5", "tf_efficientnet_b5.ns_jft_in1k", [6, 12, 18], None),
    ("glr2021-1st-dolg-b7", "tf_efficientnet_b7.ns_jft_in1k", [3, 6, 9], [1, 1]),
])
def test_dolg_full_size_layout(registry, recipe, backbone, dilations, stride):
    from zoo.factory import create_model
    from zoo.weights.fit import check_fit

    with torch.device("meta"):
        ref = RefDolgNet(backbone, dilations, stride, n_classes=81313, emb=512)
        model = create_model(recipe, registry=registry)
    upstream = ref.state_dict()
    if recipe.endswith("b5"):
        assert len([k for k in upstream if k.startswith("backbone.")]) == 846  # SEED_SYSTEMS §2.1
    mapped = registry.get("converter", "glr2021-1st").factory(upstream, source_cfg(registry, recipe, ()))
    check_fit(mapped, model.state_dict(), recipe)


@pytest.mark.parametrize("recipe,upstream_keys", [
    ("glr2021-1st-hybrid-b3-swin224", 936),
    ("glr2021-1st-hybrid-b5-swin224", 1216),
    ("glr2021-1st-hybrid-b6-swin384", 1348),
])
def test_hybrid_full_size_layout(registry, recipe, upstream_keys):
    from zoo.factory import create_model
    from zoo.weights.fit import check_fit

    with torch.device("meta"):
        model = create_model(recipe, registry=registry)
    upstream = to_timm0412_swin_layout(model)
    assert len(upstream) == upstream_keys  # SEED_SYSTEMS §2.2
    buffers = [k for k in upstream if "attn_mask" in k or "relative_position_index" in k]
    assert len(buffers) == 35
    mapped = registry.get("converter", "glr2021-1st").factory(upstream, source_cfg(registry, recipe, ()))
    check_fit(mapped, model.state_dict(), recipe)


def test_guie_full_size_layout(registry):
    import open_clip
    from open_clip.model import _build_vision_tower

    from zoo.factory import create_model
    from zoo.weights.fit import check_fit

    cfg = open_clip.get_model_config("ViT-H-14")
    with torch.device("meta"):
        visual = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"])  # = create_model('ViT-H-14').visual
        model = create_model("guie2022-2nd-vith14-64d", registry=registry)
    upstream = {f"backbone.net.{k}": v for k, v in visual.state_dict().items()}
    assert len(upstream) == 392 and "backbone.net.proj" in upstream
    upstream["Neck.neck.1.weight"] = torch.empty(64, 1280, device="meta")
    upstream["Neck.neck.1.bias"] = torch.empty(64, device="meta")
    upstream["head.weight"] = torch.empty(274330, 64, device="meta")
    recipe_cfg = source_cfg(registry, "guie2022-2nd-vith14-64d", ())
    mapped = registry.get("converter", "guie2022-2nd").factory(upstream, recipe_cfg)
    check_fit(mapped, model.state_dict(), "guie2022-2nd-vith14-64d")


def test_wrong_recipe_or_layout_is_a_clear_error(registry, tmp_path):
    from zoo.weights.convert import ConversionError, convert_checkpoint

    torch.manual_seed(0)
    ref = RefDolgNet("tf_efficientnet_b0", [6, 12, 18], None, n_classes=10, emb=16)
    src = tmp_path / "dolg.pth"
    save_upstream(src, ref.state_dict(), "model")
    with pytest.raises(ConversionError, match="backbone type 'openclip_vit'"):
        convert_checkpoint(src, "glr2021-1st", "guie2022-2nd-vith14-64d", tmp_path / "x.safetensors",
                           overrides=GUIE_TINY, registry=registry)
    with pytest.raises(ConversionError, match="missing keys"):
        convert_checkpoint(src, "glr2021-1st", "glr2021-1st-hybrid-b5-swin224", tmp_path / "y.safetensors",
                           overrides=HYBRID_TINY, registry=registry)
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()
