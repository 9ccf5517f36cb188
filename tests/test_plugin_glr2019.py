"""The zoo-glr2019 plugin distribution: CBP, attention, recipe, meta-device size, converter parity."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.weights.convert import ConversionError, convert_checkpoint
from zoo_glr2019.attention import SelfAttention, SpatialAttention
from zoo_glr2019.cbp import CompactBilinearPooling

TINY = ["model.backbone.name=resnet18", "model.backbone.cnn_finetune_relus=false",
        "model.embedding_dim=512", "model.head.num_classes=10"]


def test_cbp_equals_brute_force_circular_convolution():
    torch.manual_seed(0)
    cbp = CompactBilinearPooling(6, 5, 8)
    x, y = torch.randn(3, 6), torch.randn(3, 5)
    cs1 = torch.zeros(3, 8).index_add_(1, cbp.sketch1.h, x * cbp.sketch1.s)
    cs2 = torch.zeros(3, 8).index_add_(1, cbp.sketch2.h, y * cbp.sketch2.s)
    brute = torch.zeros(3, 8)
    for i in range(8):
        for j in range(8):
            brute[:, (i + j) % 8] += cs1[:, i] * cs2[:, j]
    assert torch.allclose(cbp(x, y), brute, atol=1e-5)
    assert set(cbp.state_dict()) == {"sketch1.h", "sketch1.s", "sketch2.h", "sketch2.s"}
    assert set(cbp.sketch1.s.unique().tolist()) <= {-1.0, 1.0}


def test_spatial_and_self_attention():
    x = torch.randn(2, 32, 4, 4)
    w = torch.softmax(x.sum(1).flatten(1), 1).view(2, 1, 4, 4)
    assert torch.allclose(SpatialAttention()(x), x * w)
    sa = SelfAttention(32)
    assert torch.equal(sa(x), x), "gamma starts at 0: the block is the identity at init"
    with torch.no_grad():
        sa.gamma.fill_(0.5)
    assert not torch.allclose(sa(x), x)


@pytest.mark.parametrize("attention", ["spatial", "self", "none"])
def test_tiny_recipe_forward_backward(attention):
    model = zoo.create_model("glr2019-xception-cbp", overrides=[*TINY, f"model.neck.attention={attention}"])
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out["embedding"].shape == (2, 512) and out["logits"].shape == (2, 10)
    out["logits"].sum().backward()
    assert model.backbone.net.conv1.weight.grad is not None
    assert torch.allclose(model.embed(x).norm(dim=1), torch.ones(2), atol=1e-5)


def test_bad_embedding_dim_is_a_clear_error():
    with pytest.raises(zoo.ZooError, match="32 \\* s \\* s"):
        zoo.create_model("glr2019-xception-cbp", overrides=[*TINY[:2], "model.embedding_dim=500"])


def test_full_recipe_on_meta_matches_timm_parameter_count():
    with torch.device("meta"):
        model = zoo.create_model("glr2019-xception-cbp")
        ref = timm.create_model("legacy_xception", pretrained=False, num_classes=0)
    n = sum(p.numel() for p in model.backbone.parameters())
    assert n == sum(p.numel() for p in ref.parameters()) == 20_806_952
    assert model.head.weight.shape == (6512, 8192)
    assert model.neck.bilinearpool.sketch1.h.shape == (2048,)


class UpstreamClassifier(nn.Module):
    """TylerYep ``CustomClassifier``: CBP(2048, 2048, 8192) -> view 32x16x16 -> SpatialAttn -> Linear."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.bilinearpool = CompactBilinearPooling(2048, 2048, 8192)
        self.linear = nn.Linear(8192, num_classes)

    def forward(self, x):
        z = self.bilinearpool(x, x).view(x.shape[0], 32, 16, 16)
        att = F.softmax(z.sum(1).view(x.shape[0], -1), dim=1).view(x.shape[0], 1, 16, 16)
        return self.linear((z * att).view(x.shape[0], -1))


class UpstreamModel(nn.Module):
    """``cnn_finetune`` layout: ``xception._features`` = Sequential of Xception's children, max pool."""

    def __init__(self, num_classes: int):
        super().__init__()
        src = timm.create_model("legacy_xception", pretrained=False)
        order = ["conv1", "bn1", "act1", "conv2", "bn2"] + [f"block{i}" for i in range(1, 13)] + [
            "conv3", "bn3", "conv4", "bn4"]
        self.xception = nn.Module()
        self.xception._features = nn.Sequential(*[getattr(src, n) for n in order])
        self.xception.pool = nn.AdaptiveMaxPool2d(1)
        self.xception._classifier = UpstreamClassifier(num_classes)

    def forward(self, x):
        f = self.xception.pool(self.xception._features(x)).flatten(1)
        return self.xception._classifier(f)


def test_converter_reproduces_upstream_outputs(tmp_path):
    torch.manual_seed(0)
    upstream = UpstreamModel(num_classes=7).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in upstream.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    sd = upstream.state_dict()
    assert len(sd) == 280, "the upstream layout has 280 entries (SEED_SYSTEMS 5.1)"
    assert any(k.startswith("xception._features.20.") for k in sd) and "xception._classifier.linear.bias" in sd
    src = tmp_path / "weights_1000.pth"
    torch.save(sd, src)
    dst = convert_checkpoint(src, "glr2019-xception", "glr2019-xception-cbp", tmp_path / "glr2019.safetensors",
                             overrides=["model.head.num_classes=7"])
    model = zoo.create_model("glr2019-xception-cbp", checkpoint=dst, overrides=["model.head.num_classes=7"]).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ref = upstream(x)
        out = model(x)["logits"]
    assert (out - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())
    sd.pop("xception._features.19.pointwise.weight")
    torch.save(sd, src)
    with pytest.raises(ConversionError, match="backbone.net.conv4.pointwise.weight"):
        convert_checkpoint(src, "glr2019-xception", "glr2019-xception-cbp", tmp_path / "x.safetensors",
                           overrides=["model.head.num_classes=7"])
