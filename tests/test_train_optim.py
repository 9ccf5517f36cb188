"""zoo_optim: optimizers (Ranger), param-group policies (GUIE stratified LR) and schedules checked
against the upstream constants and torch's own schedulers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn


def _opt(lr=1e-4):
    p = nn.Parameter(torch.ones(2))
    return torch.optim.Adam([p], lr=lr)


def _lrs(sched, opt, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        sched.step()
    return out


def test_gradual_warmup_v2_matches_upstream_epochs(registry):
    # GLR2020 3rd place: epoch 1 lr, epoch 2 10x, epoch 3 10x (T_cur=0), then
    # CosineAnnealingWarmRestarts(T_0=n-1) stepped with epoch-2 on base 10x lr
    n, spe, lr = 10, 3, 1e-4
    opt = _opt(lr)
    sched = registry.create("scheduler", "gradual_warmup_v2", opt, epochs=n, steps_per_epoch=spe)
    per_epoch = _lrs(sched, opt, n * spe)[::spe]
    ref_opt = _opt(10 * lr)
    cos = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(ref_opt, T_0=n - 1)
    expected = [lr, 10 * lr, 10 * lr]
    for e in range(4, n + 1):
        cos.step(e - 2)
        expected.append(ref_opt.param_groups[0]["lr"])
    assert per_epoch == pytest.approx(expected, rel=1e-9)


def test_gradual_warmup_v2_constant_within_epoch(registry):
    opt = _opt()
    sched = registry.create("scheduler", "gradual_warmup_v2", opt, epochs=5, steps_per_epoch=4)
    lrs = _lrs(sched, opt, 20)
    for e in range(5):
        assert len(set(lrs[4 * e: 4 * e + 4])) == 1


def test_guie_cosine_warmup_and_horizon(registry):
    lr, n, spe = 1e-4, 3, 4
    opt = _opt(lr)
    sched = registry.create("scheduler", "guie_cosine", opt, epochs=n, steps_per_epoch=spe)
    lrs = _lrs(sched, opt, n * spe)
    assert lrs[0] == pytest.approx(0.01 * lr)  # per-step warm-up from 0.01
    assert lrs[2] == pytest.approx(lr * (0.01 * 0.5 + 0.5))
    assert lrs[spe] == pytest.approx(0.5 * lr * (1 + math.cos(math.pi * 2 / (n + 1))))  # E = n + 1
    assert lrs[2 * spe] == pytest.approx(0.5 * lr * (1 + math.cos(math.pi * 3 / (n + 1))))
    assert lrs[-1] > 0


def test_cosine_matches_torch_cosine_annealing(registry):
    # GLR2021 top-100: CosineAnnealingLR(T_max=12, eta_min=1e-7) stepped per epoch, run 15 epochs
    opt = _opt(1e-4)
    sched = registry.create("scheduler", "cosine", opt, epochs=15, steps_per_epoch=2, t_max=12, eta_min=1e-7)
    ours = _lrs(sched, opt, 30)[::2]
    ref_opt = _opt(1e-4)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=12, eta_min=1e-7)
    expected = []
    for _ in range(15):
        expected.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    assert ours == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_cosine_restarts_per_step_matches_torch(registry):
    opt = _opt(1e-3)
    sched = registry.create("scheduler", "cosine_restarts", opt, epochs=1, steps_per_epoch=20,
                            t_0=5, t_mult=2, interval="step")
    ours = _lrs(sched, opt, 20)
    ref_opt = _opt(1e-3)
    ref = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(ref_opt, T_0=5, T_mult=2)
    expected = []
    for _ in range(20):
        expected.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    assert ours == pytest.approx(expected, rel=1e-6)


def test_warmup_cosine_and_schedule_state_roundtrip(registry):
    opt = _opt(1.0)
    sched = registry.create("scheduler", "warmup_cosine", opt, epochs=4, steps_per_epoch=5, warmup_epochs=1)
    lrs = _lrs(sched, opt, 20)
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(1.0) and lrs[-1] < 0.05
    assert max(lrs) == pytest.approx(1.0)
    state = sched.state_dict()
    opt2 = _opt(1.0)
    other = registry.create("scheduler", "warmup_cosine", opt2, epochs=4, steps_per_epoch=5, warmup_epochs=1)
    other.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_stratified_groups_guie(registry):
    model = nn.ModuleDict({"backbone": nn.Linear(4, 4), "neck": nn.Linear(4, 2), "head": nn.Linear(2, 3)})
    groups = registry.create("param_groups", "stratified", model, lr=1e-4)
    assert [g["name"] for g in groups] == ["backbone", "neck", "head"]
    assert groups[0]["lr"] == pytest.approx(1e-7)  # c = 1e-3
    assert groups[1]["lr"] == groups[2]["lr"] == 1e-4
    assert all(g["weight_decay"] == 1e-5 for g in groups)
    opt = registry.create("optimizer", "adamw", groups, lr=1e-4)
    sched = registry.create("scheduler", "guie_cosine", opt, epochs=2, steps_per_epoch=1)
    sched.step()  # epoch 2: same cosine factor scales both groups (upstream set_lr: group 0 gets c*lr)
    ratio = opt.param_groups[0]["lr"] / opt.param_groups[1]["lr"]
    assert ratio == pytest.approx(1e-3)


def test_no_decay_excludes_bias_and_norm(registry):
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    groups = registry.create("param_groups", "no_decay", model, lr=0.1, weight_decay=0.01)
    by = {g["name"]: g for g in groups}
    assert len(by["decay"]["params"]) == 1 and by["no_decay"]["weight_decay"] == 0.0
    assert len(by["no_decay"]["params"]) == 3


def test_frozen_params_stay_out_of_groups(registry):
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)
    for name in ("all", "no_decay"):
        groups = registry.create("param_groups", name, model, lr=0.1)
        assert all(p is not model[0].weight for g in groups for p in g["params"])


def test_ranger_lookahead_and_gc():
    from zoo_optim.ranger import Ranger

    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3))
    opt = Ranger([w], lr=1e-2, k=6, alpha=0.5)
    assert opt.defaults["betas"] == (0.95, 0.999) and opt.defaults["eps"] == 1e-5
    start = w.detach().clone()
    target = torch.randn(4, 3)
    history = []
    for _ in range(12):
        opt.zero_grad()
        ((w - target) ** 2).sum().backward()
        opt.step()
        history.append(w.detach().clone())
    slow = opt.state[w]["slow_buffer"]
    # after k=6 and 12 steps the fast weights were pulled back onto the slow weights
    assert torch.allclose(w.detach(), slow)
    assert ((w - target) ** 2).sum() < ((start - target) ** 2).sum()
    # gradient centralisation: with a gradient constant along dim 1 the update vanishes (mean removed)
    v = nn.Parameter(torch.zeros(2, 3))
    opt2 = Ranger([v], lr=1e-1)
    v.grad = torch.ones(2, 3)
    opt2.step()
    assert torch.count_nonzero(v.detach()) == 0


def test_ranger_state_is_serialisable_and_resumes_identically():
    from zoo.train.checkpoint import optimizer_from_flat, optimizer_to_flat
    from zoo_optim.ranger import Ranger

    torch.manual_seed(0)
    data = torch.randn(8, 3)
    model_a = nn.Linear(3, 2)
    model_b = nn.Linear(3, 2)
    model_b.load_state_dict(model_a.state_dict())
    opt_a = Ranger(model_a.parameters(), lr=1e-2)
    for _ in range(4):
        opt_a.zero_grad()
        model_a(data).pow(2).sum().backward()
        opt_a.step()
    tensors, meta = optimizer_to_flat(opt_a)
    tensors = {k: v.clone() for k, v in tensors.items()}  # as read back from a file: no shared storage
    assert meta["scalars"]["0"]["step"] == 4
    model_b.load_state_dict(model_a.state_dict())
    opt_b = Ranger(model_b.parameters(), lr=1e-2)
    optimizer_from_flat(opt_b, tensors, meta)
    for opt, model in ((opt_a, model_a), (opt_b, model_b)):
        for _ in range(5):
            opt.zero_grad()
            model(data).pow(2).sum().backward()
            opt.step()
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)
