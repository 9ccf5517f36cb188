"""Converters ``glr2020-3rd`` and ``glr2021-top100`` on synthetic upstream-layout checkpoints.

Each test builds an nn.Module with the upstream attribute names (``enet``/``feat``/``metric_classify``
for GLR2020 3rd place; ``backbone.net``/``global_pool``/``neck``/``head`` for GLR2021 top-100) and an
upstream-faithful forward, fills random weights (BN statistics included), saves it with the
upstream wrapper, converts it, loads it through ``zoo.create_model(..., checkpoint=...)`` and
compares embeddings and head cosines (max abs diff <= 1e-5, fp32).
"""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo.weights.convert import ConversionError, convert_checkpoint

TOL = 1e-5
NUM_CLASSES = 10
K = 3
EMB = 16


# -- upstream reference pieces (written from SEED_SYSTEMS.md, not imported from zoo) --------------


class RefSubcenter(nn.Module):
    """ArcMarginProduct_subcenter as released: weight (C*k, D), view(-1, C, k).max(dim=2)."""

    def __init__(self, in_features: int, out_features: int, k: int = K) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features * k, in_features))
        self.out_features, self.k = out_features, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cos_all = F.linear(F.normalize(x), F.normalize(self.weight))
        return cos_all.view(-1, self.out_features, self.k).max(dim=2)[0]


class RefSwish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class RefGeM(nn.Module):
    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x.clamp(min=self.eps).pow(self.p), (x.size(-2), x.size(-1))).pow(1.0 / self.p)


# clovaai ReXNetV1 (rexnetv1.py), rebuilt from the published architecture with its module names.
def _conv_bn_act(out: list, cin: int, cout: int, kernel=1, stride=1, pad=0, groups=1, act: str | None = "relu"):
    out.append(nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False))
    out.append(nn.BatchNorm2d(cout))
    if act == "swish":
        out.append(RefSwish())
    elif act == "relu":
        out.append(nn.ReLU(inplace=True))


class RefSE(nn.Module):
    def __init__(self, cin: int, channels: int, se_ratio: int = 12) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Conv2d(cin, channels // se_ratio, kernel_size=1, padding=0),
            nn.BatchNorm2d(channels // se_ratio),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // se_ratio, channels, kernel_size=1, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(self.avg_pool(x))


class RefLinearBottleneck(nn.Module):
    def __init__(self, cin: int, channels: int, t: int, stride: int, use_se: bool, se_ratio: int = 12) -> None:
        super().__init__()
        self.use_shortcut = stride == 1 and cin <= channels
        self.in_channels = cin
        out: list = []
        if t != 1:
            dw = cin * t
            _conv_bn_act(out, cin, dw, act="swish")
        else:
            dw = cin
        _conv_bn_act(out, dw, dw, kernel=3, stride=stride, pad=1, groups=dw, act=None)
        if use_se:
            out.append(RefSE(dw, dw, se_ratio))
        out.append(nn.ReLU6())
        _conv_bn_act(out, dw, channels, act=None)
        self.out = nn.Sequential(*out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.out(x)
        if self.use_shortcut:
            out = torch.cat([out[:, : self.in_channels] + x, out[:, self.in_channels :]], dim=1)
        return out


class RefReXNetV1(nn.Module):
    def __init__(self, width_mult: float = 2.0, classes: int = 1000, input_ch=16, final_ch=180, se_ratio=12) -> None:
        super().__init__()
        layers = [1, 2, 2, 3, 3, 5]
        strides = [1, 2, 2, 2, 1, 2]
        use_ses = [False, False, True, True, True, True]
        strides = sum([[s] + [1] * (layers[i] - 1) for i, s in enumerate(strides)], [])
        use_ses = sum([[u] * layers[i] for i, u in enumerate(use_ses)], [])
        ts = [1] * layers[0] + [6] * sum(layers[1:])
        depth = sum(layers) * 3
        stem = 32 / width_mult if width_mult < 1.0 else 32
        inplanes = input_ch / width_mult if width_mult < 1.0 else input_ch
        in_group, ch_group = [], []
        for i in range(depth // 3):
            if i == 0:
                in_group.append(int(round(stem * width_mult)))
                ch_group.append(int(round(inplanes * width_mult)))
            else:
                in_group.append(int(round(inplanes * width_mult)))
                inplanes += final_ch / (depth // 3 * 1.0)
                ch_group.append(int(round(inplanes * width_mult)))
        features: list = []
        _conv_bn_act(features, 3, int(round(stem * width_mult)), kernel=3, stride=2, pad=1, act="swish")
        for cin, c, t, s, se in zip(in_group, ch_group, ts, strides, use_ses):
            features.append(RefLinearBottleneck(cin, c, t, s, se, se_ratio))
        pen = int(1280 * width_mult)
        _conv_bn_act(features, c, pen, act="swish")
        features.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*features)
        self.output = nn.Sequential(nn.Dropout(0.2), nn.Conv2d(pen, classes, 1, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(x)).flatten(1)  # upstream .squeeze(); flatten keeps B=1 2-D


class RefGLR2020(nn.Module):
    """Effnet_Landmark / ResNest101_Landmark / RexNet20_Landmark at inference (notebook forward)."""

    def __init__(self, enet: nn.Module, in_features: int) -> None:
        super().__init__()
        self.enet = enet
        self.feat = nn.Linear(in_features, EMB)
        self.swish = RefSwish()
        self.metric_classify = RefSubcenter(EMB, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.swish(self.feat(self.enet(x)))
        return F.normalize(f), self.metric_classify(f)


class RefTop100(nn.Module):
    """custom/model.py::Net: backbone.net (timm, classifier kept) -> GeM -> option-D -> sub-center head."""

    def __init__(self, name: str) -> None:
        super().__init__()
        import timm

        self.backbone = nn.Module()
        self.backbone.net = timm.create_model(name, pretrained=False)
        c = self.backbone.net.num_features
        self.global_pool = RefGeM()
        self.neck = nn.Sequential(nn.Linear(c, EMB, bias=True), nn.BatchNorm1d(EMB), nn.PReLU())
        self.head = RefSubcenter(EMB, NUM_CLASSES)
        self.dropouts = nn.ModuleList([nn.Dropout(0.2)] * 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.global_pool(self.backbone.net.forward_features(x))[:, :, 0, 0]
        emb = self.neck(x)
        return emb, self.head(emb)


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere, BN statistics included (so a mis-mapped buffer shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            elif name.endswith(".p"):
                t.fill_(2.5)
            elif name.endswith(("bn1.weight", "bn2.weight", "bn.weight", "running_mean")) or t.ndim == 1:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
            else:
                fan_in = t[0].numel() if t.ndim > 1 else 1
                t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5)
    return model.eval()


def tiny(name: str) -> list[str]:
    return [
        f"model.backbone.name={name}",
        f"model.head.num_classes={NUM_CLASSES}",
        f"model.head.subcenters={K}",
        f"model.embedding_dim={EMB}",
    ]


def _save_glr2020(model: nn.Module, path) -> None:
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 5, "model_state_dict": state, "optimizer_state_dict": {}}, path)


def _compare(registry, recipe, overrides, dst, ref_emb, ref_cos, x, normalized: bool) -> None:
    import zoo

    model = zoo.create_model(recipe, checkpoint=dst, overrides=overrides, registry=registry).eval()
    with torch.no_grad():
        out = model(x)
        emb = model.embed(x) if normalized else out["embedding"]
    assert emb.shape == ref_emb.shape
    assert (emb - ref_emb).abs().max().item() <= TOL
    assert (out["logits"] - ref_cos).abs().max().item() <= TOL
    # random init of the zoo model must not match (the check above is not vacuous)
    fresh = zoo.create_model(recipe, overrides=overrides, registry=registry).eval()
    with torch.no_grad():
        assert (fresh(x)["logits"] - ref_cos).abs().max().item() > 1e-3


# -- GLR2020 3rd place ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recipe,name",
    [("glr2020-3rd-effnet-b5", "tf_efficientnet_b0"), ("glr2020-3rd-resnest101", "resnest14d")],
)
def test_glr2020_timm_layout_round_trip(registry, tmp_path, recipe, name):
    import timm

    enet = timm.create_model(name, pretrained=False)
    enet.reset_classifier(0)  # upstream: enet.classifier / enet.fc = Identity (no keys)
    ref = randomize_(RefGLR2020(enet, enet.num_features))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref_emb, ref_cos = ref(x)
    src, dst = tmp_path / "up.pth", tmp_path / "zoo.safetensors"
    _save_glr2020(ref, src)
    convert_checkpoint(src, "glr2020-3rd", recipe, dst, overrides=tiny(name), registry=registry)
    _compare(registry, recipe, tiny(name), dst, ref_emb, ref_cos, x, normalized=True)


def test_glr2020_rexnet_positional_mapping(registry, tmp_path):
    """ReXNetV1 with the upstream key names/order -> timm rexnet, through the converter, output parity.

    Width 1.0 (-> ``rexnet_100``) keeps the CPU cost down; the width-2.0 (``rexnet_200``) mapping
    of the very same code path is checked in :func:`test_rexnetv1_classifier_head_is_flattened`.
    """
    rex = RefReXNetV1(width_mult=1.0)
    rex.output = nn.Identity()  # RexNet20_Landmark: enet.output = Identity
    ref = randomize_(RefGLR2020(rex, 1280))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref_emb, ref_cos = ref(x)
    keys = list(ref.state_dict())
    assert keys[0] == "enet.features.0.weight" and "enet.features.3.out.0.weight" in keys
    src, dst = tmp_path / "rex.pth", tmp_path / "rex.safetensors"
    _save_glr2020(ref, src)
    overrides = tiny("rexnet_100")
    convert_checkpoint(src, "glr2020-3rd", "glr2020-3rd-rexnet200", dst, overrides=overrides, registry=registry)
    _compare(registry, "glr2020-3rd-rexnet200", overrides, dst, ref_emb, ref_cos, x, normalized=True)


def test_rexnetv1_classifier_head_is_flattened():
    """With its 1x1-conv classifier, ReXNetV1 maps onto timm rexnet_200 (head.fc) with equal logits."""
    import timm

    from zoo_converters.glr2020_3rd import rexnetv1_to_timm

    ref = randomize_(RefReXNetV1(width_mult=2.0, classes=7), seed=3)
    net = timm.create_model("rexnet_200", pretrained=False, num_classes=7).eval()
    mapped = rexnetv1_to_timm(ref.state_dict(), net.state_dict())
    assert mapped["head.fc.weight"].shape == (7, 2560)
    net.load_state_dict(mapped, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (net(x) - ref(x)).abs().max().item() <= TOL


def test_rexnet_mapping_refuses_wrong_width():
    import timm

    from zoo_converters.glr2020_3rd import rexnetv1_to_timm

    ref = RefReXNetV1(width_mult=2.0)
    with torch.device("meta"):
        target = timm.create_model("rexnet_150", pretrained=False, num_classes=0).state_dict()
    with pytest.raises(ConversionError, match="rexnet|mismatch"):
        rexnetv1_to_timm(ref.state_dict(), target)


def test_glr2020_refuses_extra_and_missing_keys(registry, tmp_path):
    import timm

    enet = timm.create_model("tf_efficientnet_b0", pretrained=False)
    enet.reset_classifier(0)
    ref = RefGLR2020(enet, enet.num_features)
    state = ref.state_dict()
    extra = dict(state, **{"enet.classifier.weight": torch.zeros(5, 1280)})
    missing = {k: v for k, v in state.items() if k != "metric_classify.weight"}
    for i, bad in enumerate((extra, missing)):
        src = tmp_path / f"bad{i}.pth"
        torch.save({"model_state_dict": bad}, src)
        with pytest.raises(ConversionError, match="missing|unexpected"):
            convert_checkpoint(src, "glr2020-3rd", "glr2020-3rd-effnet-b3", tmp_path / f"o{i}.safetensors",
                               overrides=tiny("tf_efficientnet_b0"), registry=registry)
        assert not (tmp_path / f"o{i}.safetensors").exists()


def test_glr2020_rejects_other_layouts(registry, tmp_path):
    src = tmp_path / "top100.pth"
    torch.save({"model": {"backbone.net.conv_stem.weight": torch.zeros(1)}}, src)
    with pytest.raises(ConversionError, match="enet"):
        convert_checkpoint(src, "glr2020-3rd", "glr2020-3rd-effnet-b3", tmp_path / "o.safetensors",
                           overrides=tiny("tf_efficientnet_b0"), registry=registry)


# -- GLR2021 top-100 ------------------------------------------------------------------------------


def test_top100_round_trip(registry, tmp_path):
    name = "tf_efficientnet_b0"
    ref = randomize_(RefTop100(name), seed=4)
    assert "backbone.net.classifier.weight" in ref.state_dict() and "global_pool.p" in ref.state_dict()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref_emb, ref_cos = ref(x)
    src, dst = tmp_path / "best.pt", tmp_path / "top100.safetensors"
    torch.save({"model": ref.state_dict(), "epoch": 14, "metric": 0.5, "image_size": 640}, src)
    recipe = "glr2021-top100-effnet-b0"
    convert_checkpoint(src, "glr2021-top100", recipe, dst, overrides=tiny(name), registry=registry)
    _compare(registry, recipe, tiny(name), dst, ref_emb, ref_cos, x, normalized=False)
    from safetensors import safe_open

    with safe_open(str(dst), framework="pt") as f:
        assert f.metadata()["source_layout"] == "glr2021-top100"
        assert not any(k.startswith("backbone.net.classifier") for k in f.keys())


def test_top100_refuses_unexpected_keys(registry, tmp_path):
    ref = RefTop100("tf_efficientnet_b0")
    state = dict(ref.state_dict(), **{"neck.3.weight": torch.zeros(3)})
    src = tmp_path / "bad.pt"
    torch.save({"model": state}, src)
    with pytest.raises(ConversionError, match="unexpected"):
        convert_checkpoint(src, "glr2021-top100", "glr2021-top100-effnet-b0", tmp_path / "o.safetensors",
                           overrides=tiny("tf_efficientnet_b0"), registry=registry)
