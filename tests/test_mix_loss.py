"""A mixed batch's loss is ``lam * L(x, y_a) + (1 - lam) * L(x, y_b)`` of the margin loss, as GLR2021
top-100's training loop computes it (vadimtimakin/Kaggle-Google-Landmark ``utils.py`` L309-312), not a
soft-target ArcFace; the top-100 recipes (no mixer by default, the write-up's variant), and the options
that reproduce its two upstream bugs (misaligned margins, BGR training input)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.train.config import resolve_plan
from zoo.train.step import MixedTargets, TrainStep, mixed_loss
from zoo_losses.arcface import ArcFaceDynamicMargin
from zoo_losses.margins import dynamic_margins

COUNTS = [50, 1, 7, 3, 120]


def upstream_arcface(logits: torch.Tensor, labels: torch.Tensor, margins: np.ndarray, s: float = 80.0) -> torch.Tensor:
    """``custom/loss.py`` L27-45 (``ArcFaceLossAdaptiveMargin.forward``) on the CPU."""
    ms = margins[labels.numpy()]
    cos_m = torch.from_numpy(np.cos(ms)).float()
    sin_m = torch.from_numpy(np.sin(ms)).float()
    th = torch.from_numpy(np.cos(math.pi - ms)).float()
    mm = torch.from_numpy(np.sin(math.pi - ms) * ms).float()
    onehot = F.one_hot(labels, logits.shape[1]).float()
    cosine = logits.float()
    sine = torch.sqrt(1.0 - cosine ** 2)
    phi = cosine * cos_m.view(-1, 1) - sine * sin_m.view(-1, 1)
    phi = torch.where(cosine > th.view(-1, 1), phi, cosine - mm.view(-1, 1))
    out = (onehot * phi + (1.0 - onehot) * cosine) * s
    return (-(F.log_softmax(out, dim=-1) * onehot).sum(-1)).mean()  # DenseCrossEntropy L9-17


def _batch(seed: int = 0, b: int = 6, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    cos = torch.rand(b, c, generator=g) * 1.6 - 0.8
    y_a = torch.randint(0, c, (b,), generator=g)
    perm = torch.randperm(b, generator=g)
    return cos, y_a, y_a[perm]


def test_mixed_loss_equals_upstream_lambda_weighted_losses():
    loss = ArcFaceDynamicMargin(s=80.0, class_counts=COUNTS)
    margins = dynamic_margins(COUNTS).numpy().astype(np.float64)
    for seed, lam in [(0, 0.3), (1, 0.62), (2, 1.0), (3, 0.0)]:
        cos, y_a, y_b = _batch(seed)
        got = mixed_loss(loss, cos, MixedTargets(y_a, y_b, lam))
        want = lam * upstream_arcface(cos, y_a, margins) + (1 - lam) * upstream_arcface(cos, y_b, margins)
        assert float(got) == pytest.approx(float(want), rel=1e-5)
    # unmixed batches are the plain loss
    cos, y_a, _ = _batch(4)
    assert float(mixed_loss(loss, cos, y_a)) == pytest.approx(float(upstream_arcface(cos, y_a, margins)), rel=1e-5)


def test_soft_target_arcface_is_another_function():
    """What zoo computed before (ArcFace on lam * onehot(y_a) + (1 - lam) * onehot(y_b)) differs."""
    loss = ArcFaceDynamicMargin(s=80.0, class_counts=COUNTS)
    cos, y_a, y_b = _batch(7)
    lam = 0.35
    soft = lam * F.one_hot(y_a, 5).float() + (1 - lam) * F.one_hot(y_b, 5).float()
    mixed = mixed_loss(loss, cos, MixedTargets(y_a, y_b, lam))
    assert abs(float(loss(cos, soft)) - float(mixed)) > 1.0


def test_train_step_takes_mixed_targets_with_the_same_call_shape():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))

    class CosModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return {"logits": torch.tanh(self.net(x))}

    net = CosModel()
    loss = ArcFaceDynamicMargin(s=80.0, class_counts=COUNTS)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)  # lr 0: the step must not change what we compare
    step = TrainStep(net, loss, opt, device=torch.device("cpu"))
    x = torch.rand(6, 3, 2, 2)
    _, y_a, y_b = _batch(9)
    got = step(x, MixedTargets(y_a, y_b, 0.4))
    logits = net(x)["logits"]
    margins = dynamic_margins(COUNTS).numpy().astype(np.float64)
    want = 0.4 * upstream_arcface(logits.detach(), y_a, margins) + 0.6 * upstream_arcface(logits.detach(), y_b, margins)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    # MixedTargets travel like tensors
    moved = MixedTargets(y_a, y_b, 0.4).to("cpu")
    assert torch.equal(moved.targets, y_a) and moved.lam == 0.4


@pytest.mark.parametrize("name", ["fmix", "cutmix", "mixup", "mix_top100"])
def test_registered_mixers_feed_the_lambda_weighted_loss(registry, name):
    mixer = registry.create("augmentation", name)
    loss = ArcFaceDynamicMargin(s=80.0, class_counts=COUNTS)
    margins = dynamic_margins(COUNTS).numpy().astype(np.float64)
    g = torch.Generator().manual_seed(2)
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    for _ in range(4):
        images, mixed = mixer(torch.rand(6, 3, 16, 16), targets, 5, g)
        cos = torch.tanh(images.mean(dim=(2, 3)) @ torch.ones(3, 5) - 1.0)
        got = float(mixed_loss(loss, cos, mixed))
        if isinstance(mixed, MixedTargets):
            want = mixed.lam * upstream_arcface(cos, targets, margins) + \
                (1 - mixed.lam) * upstream_arcface(cos, mixed.shuffled, margins)
        else:
            want = upstream_arcface(cos, targets, margins)
        assert got == pytest.approx(float(want), rel=1e-5)


# -- the top-100 recipes -------------------------------------------------------------------------
def test_top100_default_has_no_mixer_and_the_variant_mixes_stage_4(registry):
    default = resolve_plan(zoo.get_recipe("glr2021-top100-effnet-b0", registry=registry))
    assert [s.mixer for s in default.stages] == [None] * 5  # utils.py: mix flags False in all five stages
    variant = resolve_plan(zoo.get_recipe("glr2021-top100-effnet-b0-mix", registry=registry))
    assert [s.mixer for s in variant.stages] == [None, None, None, {"type": "mix_top100"}, None]  # README L23
    for plan in (default, variant):
        assert [(s.image_size, s.batch_size, s.epochs) for s in plan.stages] == [
            (224, 32, 3), (448, 8, 3), (448, 8, 3), (448, 8, 3), (640, 4, 3)]  # utils.py L521-703
        assert plan.split == {"type": "top100"} and plan.seed == 0xFACED
        assert all(s.accumulate == 2 and s.lr == 1e-4 for s in plan.stages)  # config.py L24, L26-27
        assert all(s.scheduler == {"type": "cosine", "t_max": 12, "eta_min": 1e-7} for s in plan.stages)


def test_top100_bug_options_reproduce_upstream(registry):
    cfg = zoo.get_recipe("glr2021-top100-effnet-b0", registry=registry)
    assert cfg.loss.margin_order == "class"
    bugs = zoo.get_recipe("glr2021-top100-effnet-b0", ["loss.margin_order=first_seen",
                                                       "train.augment.channels=bgr",
                                                       "train.val_augment.channels=bgr"], registry=registry)
    plan = resolve_plan(bugs)
    assert all(s.augment["channels"] == "bgr" and s.val_augment["channels"] == "bgr" for s in plan.stages)
    assert [s.augment["stage"] for s in plan.stages] == [1, 2, 3, 4, 5]
    pipe = registry.create("augmentation", "top100_train", 32, mean=(0.0,) * 3, std=(1.0,) * 3, channels="bgr")
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    out = pipe(image=red)["image"]
    assert float(out[2].mean()) == pytest.approx(1.0) and float(out[0].mean()) == pytest.approx(0.0)


def test_first_seen_margins_equal_upstream_misalignment():
    """utils.py L486-488 margins come from value_counts().sort_index() (sorted landmark_id) while the
    class codes follow first appearance (data.py L145-148); margin_order=first_seen gives the same."""
    raw = np.array([30, 10, 10, 20, 30, 10, 20, 20, 20, 20, 5, 10, 10])
    # upstream
    codes = {}
    for v in raw:
        codes.setdefault(int(v), len(codes))
    ids, counts = np.unique(raw, return_counts=True)  # sort_index() order
    t = np.sqrt(1 / np.sqrt(counts))
    up_margins = (t - t.min()) / (t.max() - t.min()) * 0.45 + 0.05
    upstream = {int(v): up_margins[codes[int(v)]] for v in ids}  # margins[labels] with labels = codes
    # zoo: sorted label map, targets in row order
    zoo_index = {int(v): i for i, v in enumerate(ids)}
    targets = np.array([zoo_index[int(v)] for v in raw])
    loss = ArcFaceDynamicMargin(margin_order="first_seen")
    loss.set_class_order(targets)
    loss.set_class_counts(np.bincount(targets))
    got = {int(v): float(loss.margins[zoo_index[int(v)]]) for v in ids}
    assert got == pytest.approx(upstream, rel=1e-6)
    aligned = ArcFaceDynamicMargin()
    aligned.set_class_order(targets)
    aligned.set_class_counts(np.bincount(targets))
    assert not np.allclose(aligned.margins.numpy(), loss.margins.numpy())
    with pytest.raises(Exception, match="set_class_order"):
        ArcFaceDynamicMargin(margin_order="first_seen").set_class_counts([3, 4])


def test_trainer_runs_a_mixed_first_seen_stage(tmp_path):
    """End to end: the trainer hands the mixer's MixedTargets to the step and the class order to the loss."""
    from test_train_support import synthetic_images, tiny_cfg, tiny_registry
    from zoo.train.data import TensorSource
    from zoo.train.engine import Trainer

    images, labels = synthetic_images(n_classes=4, per_class=8, size=16)
    cfg = tiny_cfg(epochs=2, mixer={"type": "mix_top100"})
    cfg.loss.margin_order = "first_seen"
    result = Trainer(cfg, TensorSource({"train": (images, labels)}), tmp_path, registry=tiny_registry(),
                     device="cpu", progress=False).fit()
    losses = [r["train_loss"] for r in result.history]
    assert len(losses) == 2 and all(np.isfinite(losses))
