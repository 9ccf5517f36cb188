"""Basic model components: poolings, necks, heads, losses, dynamic margins and timm backbones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoo.registry import ZooError

X64 = (2, 3, 64, 64)


# -- pooling ----------------------------------------------------------------------------------------


def test_gem_matches_formula_and_has_p_parameter(registry):
    gem = registry.create("pooling", "gem")
    assert isinstance(gem.p, torch.nn.Parameter) and gem.p.shape == (1,) and gem.p.requires_grad
    assert float(gem.p.detach()) == 3.0 and gem.eps == 1e-6
    x = torch.rand(2, 5, 4, 3)
    expected = x.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)
    out = gem(x)
    assert out.shape == (2, 5)
    assert torch.allclose(out, expected, atol=1e-6)
    out.sum().backward()
    assert gem.p.grad is not None and torch.isfinite(gem.p.grad).all() and gem.p.grad.abs().item() > 0
    assert "p=3.0000" in repr(gem)


def test_gem_fixed_p_has_working_repr_and_no_grad(registry):
    gem = registry.create("pooling", "gem", p=4.0, p_trainable=False)
    assert not gem.p.requires_grad and "p_trainable=False" in repr(gem) and "p=4.0000" in repr(gem)
    assert "p" in gem.state_dict()


def test_gem_half_input_does_not_overflow():
    from zoo_pooling.gem import GeM

    x = torch.full((1, 2, 3, 3), 100.0, dtype=torch.float16)  # 100**3 overflows fp16
    out = GeM()(x)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert abs(float(out[0, 0].detach()) - 100.0) < 0.5


def test_avg_and_max_pooling(registry):
    x = torch.randn(2, 4, 5, 6)
    assert torch.allclose(registry.create("pooling", "avg")(x), x.mean(dim=(2, 3)))
    assert torch.equal(registry.create("pooling", "max")(x), x.amax(dim=(2, 3)))


# -- necks ------------------------------------------------------------------------------------------


def test_option_d_neck_layout(registry):
    neck = registry.create("neck", "option_d", in_features=32, out_features=8)
    keys = set(neck.state_dict())
    assert {"0.weight", "0.bias", "1.running_mean", "1.num_batches_tracked", "2.weight"} <= keys
    assert isinstance(neck[1], torch.nn.BatchNorm1d) and isinstance(neck[2], torch.nn.PReLU)
    assert neck(torch.randn(4, 32)).shape == (4, 8)
    assert registry.create("neck", "option_d", in_features=32).out_features == 512


def test_linear_swish_neck_is_swish_of_linear(registry):
    neck = registry.create("neck", "linear_swish", in_features=12, out_features=6)
    assert set(neck.state_dict()) == {"0.weight", "0.bias"}
    x = torch.randn(3, 12)
    lin = F.linear(x, neck[0].weight, neck[0].bias)
    assert torch.allclose(neck(x), lin * torch.sigmoid(lin), atol=1e-6)


def test_dropout_linear_neck_defaults(registry):
    neck = registry.create("neck", "dropout_linear", in_features=20)
    assert neck[0].p == 0.2 and neck.out_features == 64
    assert set(neck.state_dict()) == {"1.weight", "1.bias"}
    neck.eval()
    x = torch.randn(2, 20)
    assert torch.allclose(neck(x), neck[1](x))


# -- heads ------------------------------------------------------------------------------------------


def test_subcenter_head_class_major_layout(registry):
    head = registry.create("head", "subcenter_arcface", in_features=4, num_classes=3)
    assert head.k == 3 and head.weight.shape == (9, 4)
    bound = 1 / math.sqrt(4)
    assert head.weight.abs().max() <= bound  # uniform(-1/sqrt(D), 1/sqrt(D))
    with torch.no_grad():
        head.weight.copy_(-torch.eye(4)[[0] * 9])  # every sub-center points away from e0
        head.weight[1 * 3 + 2] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # class 1, sub-center 2
    x = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    cos = head(x)
    assert cos.shape == (1, 3)
    assert torch.allclose(cos, torch.tensor([[-1.0, 1.0, -1.0]]), atol=1e-6)
    allc = head.subcenter_cosines(x)
    assert allc.shape == (1, 3, 3) and float(allc[0, 1, 2].detach()) == pytest.approx(1.0)


def test_subcenter_forward_is_max_over_view(registry):
    head = registry.create("head", "subcenter_arcface", in_features=8, num_classes=5, subcenters=2)
    x = torch.randn(3, 8)
    full = F.normalize(x) @ F.normalize(head.weight).t()
    ref = torch.stack([full[:, 2 * c : 2 * c + 2].max(dim=1).values for c in range(5)], dim=1)
    assert torch.allclose(head(x), ref, atol=1e-6)


def test_plain_arcface_head(registry):
    from zoo_heads.arcmargin import ArcMarginProduct, SubCenterArcMarginProduct

    head = registry.create("head", "arcface", in_features=16, num_classes=10, subcenters=1)
    assert isinstance(head, ArcMarginProduct) and head.weight.shape == (10, 16)
    assert head.weight.abs().max() <= math.sqrt(6 / (16 + 10))  # xavier bound
    x = torch.randn(2, 16)
    cos = head(x)
    assert torch.allclose(cos, F.normalize(x) @ F.normalize(head.weight).t(), atol=1e-6)
    assert cos.abs().max() <= 1.0 + 1e-6
    sub = registry.create("head", "arcface", in_features=16, num_classes=10, subcenters=2)
    assert isinstance(sub, SubCenterArcMarginProduct) and sub.init == "xavier"


def test_linear_head_rejects_subcenters(registry):
    head = registry.create("head", "linear", in_features=6, num_classes=4)
    x = torch.randn(2, 6)
    assert torch.allclose(head(x), x @ head.weight.t() + head.bias)
    with pytest.raises(ZooError, match="subcenters"):
        registry.create("head", "linear", in_features=6, num_classes=4, subcenters=3)
    with pytest.raises(ZooError, match="unknown options"):
        registry.create("head", "subcenter_arcface", in_features=6, num_classes=4, margin=0.3)


# -- dynamic margins --------------------------------------------------------------------------------


def test_dynamic_margins_formula():
    from zoo_losses.margins import dynamic_margins

    counts = np.array([1, 4, 16, 81, 1000, 7, 2])
    m = dynamic_margins(counts).numpy()
    t = counts ** -0.25
    ref = (t - t.min()) / (t.max() - t.min()) * 0.45 + 0.05
    assert np.allclose(m, ref, atol=1e-7)
    assert m[0] == pytest.approx(0.5) and m[4] == pytest.approx(0.05)
    # f(n) = a * n^-1/4 + b: margins are affine in n^-1/4
    a, b = np.polyfit(t, m, 1)
    assert np.allclose(a * t + b, m, atol=1e-6) and a > 0
    m2 = dynamic_margins(torch.tensor([1, 16]), lam=0.5, lo=0.1, hi=0.3).numpy()
    assert np.allclose(m2, [0.3, 0.1])


def test_dynamic_margins_edge_cases():
    from zoo_losses.margins import MarginError, dynamic_margins

    m = dynamic_margins([0, 1, 10]).numpy()
    assert m[0] == pytest.approx(0.5) and m[1] == pytest.approx(0.5) and m[2] == pytest.approx(0.05)
    assert np.allclose(dynamic_margins([5, 5, 5]).numpy(), 0.05)
    with pytest.raises(MarginError):
        dynamic_margins([[1, 2]])
    with pytest.raises(MarginError):
        dynamic_margins([0, 0])


# -- losses -----------------------------------------------------------------------------------------


def _ref_arcface(cos: torch.Tensor, labels: torch.Tensor, margins: list[float], s: float) -> float:
    """ArcFaceLossAdaptiveMargin written out with python floats (SEED_SYSTEMS §0.3)."""
    total = 0.0
    for b in range(cos.shape[0]):
        y = int(labels[b])
        m = margins[y]
        row = []
        for c in range(cos.shape[1]):
            ci = float(cos[b, c])
            if c == y:
                phi = ci * math.cos(m) - math.sqrt(1 - ci * ci) * math.sin(m)
                if not ci > math.cos(math.pi - m):
                    phi = ci - math.sin(math.pi - m) * m
                row.append(s * phi)
            else:
                row.append(s * ci)
        mx = max(row)
        lse = mx + math.log(sum(math.exp(v - mx) for v in row))
        total += lse - row[y]
    return total / cos.shape[0]


def test_arcface_dynamic_matches_hand_formula(registry):
    counts = [50, 1, 7, 3, 120, 2]
    loss = registry.create("loss", "arcface_dynamic", s=45.0)
    margins = loss.set_class_counts(counts).tolist()
    cos = torch.tensor([[0.3, -0.2, 0.9, -0.95, 0.1, 0.0], [-0.99, 0.5, 0.2, 0.1, 0.7, -0.3], [0.1, 0.2, 0.3, 0.4, 0.5, -0.97]])
    labels = torch.tensor([2, 0, 5])  # row 1 and 2 hit the cos <= th fallback branch
    got = loss(cos, labels).item()
    assert got == pytest.approx(_ref_arcface(cos, labels, margins, 45.0), rel=1e-5)
    assert registry.create("loss", "arcface_dynamic").s == 80.0


def test_arcface_soft_targets_equal_one_hot(registry):
    loss = registry.create("loss", "arcface_dynamic", class_counts=[3, 9, 1, 27])
    cos = (torch.rand(5, 4) * 2 - 1).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3, 1])
    hard = loss(cos, y)  # sparse path: margin at the label only
    (g_hard,) = torch.autograd.grad(hard, cos)
    soft = loss(cos, F.one_hot(y, 4).float())  # dense path
    (g_soft,) = torch.autograd.grad(soft, cos)
    assert torch.allclose(hard, soft, atol=1e-6) and torch.allclose(g_hard, g_soft, atol=1e-6)
    cos = cos.detach()
    mixed = 0.7 * F.one_hot(y, 4).float() + 0.3 * F.one_hot(y.flip(0), 4).float()
    assert torch.isfinite(loss(cos, mixed))


def test_arcface_no_nan_at_unit_cosine(registry):
    loss = registry.create("loss", "arcface_dynamic", class_counts=[1, 10, 100])
    cos = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 1.0000001]], requires_grad=True)
    out = loss(cos, torch.tensor([0, 1]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(cos.grad).all()
    sched = registry.create("loss", "arcface_scheduled")
    cos2 = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], requires_grad=True)
    out2 = sched(cos2, torch.tensor([1, 1]))
    out2.backward()
    assert torch.isfinite(out2) and torch.isfinite(cos2.grad).all()


def test_arcface_half_logits_give_float_loss(registry):
    loss = registry.create("loss", "arcface_dynamic", class_counts=[2, 4, 8])
    out = loss(torch.tensor([[0.5, 0.1, -0.2]], dtype=torch.float16), torch.tensor([0]))
    assert out.dtype == torch.float32 and torch.isfinite(out)


def test_arcface_dynamic_errors_name_the_fix(registry):
    loss = registry.create("loss", "arcface_dynamic")
    with pytest.raises(ZooError, match="set_class_counts"):
        loss(torch.zeros(2, 3), torch.tensor([0, 1]))
    loss.set_class_counts([1, 2])
    with pytest.raises(ZooError, match="num_classes"):
        loss(torch.zeros(2, 3), torch.tensor([0, 1]))


def test_arcface_scheduled_margins(registry):
    loss = registry.create("loss", "arcface_scheduled")
    assert loss.s == 30.0
    ms = [loss.set_epoch(e) for e in range(1, 11)]
    assert ms == pytest.approx([0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8])
    loss.set_epoch(3)
    cos = torch.tensor([[0.2, 0.6, -0.4], [0.9, 0.1, 0.3]])
    y = torch.tensor([1, 0])
    assert loss(cos, y).item() == pytest.approx(_ref_arcface(cos, y, [0.5] * 3, 30.0), rel=1e-5)
    with pytest.raises(ZooError):
        loss.set_epoch(0)


def test_cross_entropy_label_smoothing(registry):
    logits = torch.randn(4, 6)
    y = torch.tensor([0, 5, 2, 2])
    plain = registry.create("loss", "cross_entropy")
    assert plain(logits, y).item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    smooth = registry.create("loss", "cross_entropy", label_smoothing=0.1)
    target = F.one_hot(y, 6).float() * 0.9 + 0.1 / 6
    ref = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    assert smooth(logits, y).item() == pytest.approx(ref.item(), rel=1e-5)
    assert plain(logits, target).item() == pytest.approx(ref.item(), rel=1e-5)


# -- backbones --------------------------------------------------------------------------------------


def test_timm_backbone_contract(registry):
    bb = registry.create("backbone", "timm", name="mobilenetv2_035")
    assert bb.output_fmt == "NCHW" and bb.num_features == 1280
    out = bb(torch.randn(*X64))
    assert out.shape == (2, 1280, 2, 2)
    assert "classifier.weight" not in bb.net.state_dict()  # num_classes=0
    nc = registry.create("backbone", "timm", name="resnet18", output_fmt="NC")
    assert nc(torch.randn(*X64)).shape == (2, 512)


def test_named_backbones_pin_tags(registry):
    bb = registry.create("backbone", "tf_efficientnet_b0.aa_in1k")
    assert bb.pretrained_tag == "aa_in1k" and bb.num_features == 1280
    assert registry.create("backbone", "timm", name="tf_efficientnet_b0").pretrained_tag == "ns_jft_in1k"
    with pytest.raises(ZooError, match="type: timm"):
        registry.create("backbone", "tf_efficientnet_b0.aa_in1k", name="resnet18")
    with pytest.raises(ZooError, match="no model 'efficientnet_b99'"):
        registry.create("backbone", "timm", name="efficientnet_b99")


NAMED_SMALL = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "mobilenetv2_100",
               "rexnet_200", "legacy_xception", "tf_efficientnet_b0.aa_in1k"]


@pytest.mark.parametrize("name", NAMED_SMALL)
def test_named_backbones_forward_64(registry, name):
    bb = registry.create("backbone", name)
    out = bb(torch.randn(*X64))
    assert out.ndim == 4 and out.shape[:2] == (2, bb.num_features)


def test_complex_backbones_are_lazy(registry):
    from zoo.registry import ComponentImportError, ComponentRegistrar, PluginInfo, RegistrationError, Registry
    from zoo_backbones.plugin import read_test_kwargs

    refs = {"dolg_efficientnet": "zoo_backbones.dolg:create_dolg_efficientnet",
            "hybrid_swin": "zoo_backbones.hybrid_swin:create_hybrid_swin",
            "openclip_vit": "zoo_backbones.openclip_vit:create_openclip_vit"}
    for name, ref in refs.items():
        assert registry.get("backbone", name).ref == ref, "complex backbones are imported only when built"
    assert read_test_kwargs("no_such_module") is None
    registrar = ComponentRegistrar(Registry(), "backbone", PluginInfo("t", "t-dist", "1"))
    with pytest.raises(RegistrationError, match="no module named 'zoo_backbones.no_such_module'"):
        registrar.add("x", "zoo_backbones.no_such_module:create_x", description="x")
    registrar.add("y", "zoo_backbones.dolg:no_such_factory", description="y")
    with pytest.raises(ComponentImportError, match="backbone 'y'.*zoo_backbones.dolg has no 'no_such_factory'"):
        registrar._registry.create("backbone", "y")
    kw = read_test_kwargs("dolg")
    if kw is not None:
        assert registry.get("backbone", "dolg_efficientnet").meta["test_kwargs"] == kw


def test_my_components_build_with_defaults_or_test_kwargs(registry):
    x = torch.randn(*X64)
    for kind, name in [("pooling", "gem"), ("pooling", "avg"), ("pooling", "max")]:
        assert registry.create(kind, name)(x).shape == (2, 3)
    for name in ("option_d", "linear_swish", "dropout_linear"):
        e = registry.get("neck", name)
        kw = e.meta["test_kwargs"]
        assert e.create(**kw)(torch.randn(2, kw["in_features"])).shape == (2, kw["out_features"])
    for name in ("arcface", "subcenter_arcface", "linear"):
        e = registry.get("head", name)
        kw = e.meta["test_kwargs"]
        assert e.create(**kw)(torch.randn(2, kw["in_features"])).shape == (2, kw["num_classes"])
    for name in ("arcface_dynamic", "arcface_scheduled", "cross_entropy"):
        e = registry.get("loss", name)
        c = e.meta.get("test_num_classes", 10)
        val = e.create(**e.meta.get("test_kwargs", {}))(torch.rand(2, c) * 2 - 1, torch.tensor([0, 1]))
        assert val.ndim == 0 and torch.isfinite(val)

