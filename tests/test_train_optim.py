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


# -- Ranger against the released update -----------------------------------------------------------------
def released_ranger_reference(params, grad_fn, *, steps, alpha=0.5, k=6, n_sma_threshold=5.0,
                              betas=(0.95, 0.999), eps=1e-5, weight_decay=0.0):
    """An independent float64 NumPy transcription of the update of the released Ranger
    (lessw2020/Ranger-Deep-Learning-Optimizer ``ranger/ranger.py``, the class the package exports and
    GLR2021 top-100's ``custom/optimizer.py`` reproduces), per parameter and step ``t``:

    * gradient centralisation: ``g -= mean(g over all dims but the first)`` when ``g.ndim > 1``;
    * ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``;
    * ``N_max = 2 / (1 - b2) - 1``, ``N_t = N_max - 2 t b2^t / (1 - b2^t)``;
      rectified (``N_t > 5``): ``step = sqrt((1 - b2^t) (N_t - 4) / (N_max - 4) (N_t - 2) / N_t
      N_max / (N_max - 2)) / (1 - b1^t)``, else ``step = 1 / (1 - b1^t)``;
    * weight decay first, ``p -= wd lr p``; then ``p -= step lr m / (sqrt(v) + eps)`` (rectified) or
      ``p -= step lr m``;
    * Lookahead every ``k`` steps: ``slow += alpha (p - slow)``, ``p = slow`` (``slow`` starts as ``p``
      before the first update).

    ``params``: (array, lr) pairs; ``grad_fn(list of arrays) -> gradients``; returns the parameters
    after each step."""
    import numpy as np

    b1, b2 = betas
    p = [np.array(a, dtype=np.float64) for a, _ in params]
    lrs = [g_lr for _, g_lr in params]
    m = [np.zeros_like(a) for a in p]
    v = [np.zeros_like(a) for a in p]
    slow = [a.copy() for a in p]
    n_max = 2.0 / (1.0 - b2) - 1.0
    out = []
    for t in range(1, steps + 1):
        grads = grad_fn(p)
        for i, g in enumerate(grads):
            g = np.array(g, dtype=np.float64)
            if g.ndim > 1:
                g = g - g.mean(axis=tuple(range(1, g.ndim)), keepdims=True)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            b2t = b2**t
            n_t = n_max - 2 * t * b2t / (1 - b2t)
            if n_t > n_sma_threshold:
                step = math.sqrt((1 - b2t) * (n_t - 4) / (n_max - 4) * (n_t - 2) / n_t * n_max / (n_max - 2)) / (1 - b1**t)
            else:
                step = 1.0 / (1 - b1**t)
            p[i] = p[i] - weight_decay * lrs[i] * p[i]
            if n_t > n_sma_threshold:
                p[i] = p[i] - step * lrs[i] * m[i] / (np.sqrt(v[i]) + eps)
            else:
                p[i] = p[i] - step * lrs[i] * m[i]
            if t % k == 0:
                slow[i] = slow[i] + alpha * (p[i] - slow[i])
                p[i] = slow[i].copy()
        out.append([a.copy() for a in p])
    return out


def test_ranger_matches_the_released_update_on_a_tiny_problem():
    """A linear regression (2-D weight: centralised; 1-D bias: not) and a 4-D conv-like tensor in a
    second param group with its own lr, 25 steps with weight decay: the un-rectified first steps, the
    rectified ones and four Lookahead synchronisations all match the reference."""
    import numpy as np

    from zoo_optim.ranger import Ranger

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)), rng.normal(size=(16, 3))
    target4 = rng.normal(size=(2, 3, 2, 2))
    w0, b0, c0 = rng.normal(size=(3, 4)), rng.normal(size=3), rng.normal(size=(2, 3, 2, 2))

    def grads(p):  # d/dp of mean((x W^T + b - y)^2) + 0.5 * sum((C - T)^2 * scale)
        w, b, c = p
        r = x @ w.T + b - y
        scale = np.arange(1, c.size + 1).reshape(c.shape) / c.size
        return [2.0 / r.size * r.T @ x, 2.0 / r.size * r.sum(0), (c - target4) * scale]

    steps, wd = 25, 0.05
    ref = released_ranger_reference([(w0, 1e-2), (b0, 1e-2), (c0, 3e-3)], grads, steps=steps,
                                    weight_decay=wd)
    w = nn.Parameter(torch.tensor(w0, dtype=torch.float32))
    b = nn.Parameter(torch.tensor(b0, dtype=torch.float32))
    c = nn.Parameter(torch.tensor(c0, dtype=torch.float32))
    opt = Ranger([{"params": [w, b]}, {"params": [c], "lr": 3e-3}], lr=1e-2, weight_decay=wd)
    xt, yt, tt = (torch.tensor(a, dtype=torch.float32) for a in (x, y, target4))
    scale = (torch.arange(1, c.numel() + 1, dtype=torch.float32) / c.numel()).reshape(c.shape)
    worst = 0.0
    for t in range(steps):
        opt.zero_grad()
        loss = ((xt @ w.T + b - yt) ** 2).mean() + 0.5 * (((c - tt) ** 2) * scale).sum()
        loss.backward()
        opt.step()
        for got, want in zip((w, b, c), ref[t]):
            worst = max(worst, float(np.abs(got.detach().double().numpy() - want).max()))
    assert worst < 2e-6, f"max deviation from the released update: {worst}"
    moved = max(float(np.abs(ref[-1][i] - a).max()) for i, a in enumerate((w0, b0, c0)))
    assert moved > 1e-2  # the problem really trains
    # the comparison is sharp: the reference without weight decay or without Lookahead is far away
    for variant in ({"weight_decay": 0.0}, {"weight_decay": wd, "k": 10**6}):
        other = released_ranger_reference([(w0, 1e-2), (b0, 1e-2), (c0, 3e-3)], grads, steps=steps,
                                          **variant)
        gap = max(float(np.abs(o - r).max()) for o, r in zip(other[-1], ref[-1]))
        assert gap > 100 * max(worst, 1e-7), (variant, gap)
