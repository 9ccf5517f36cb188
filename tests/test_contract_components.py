"""Contract tests parametrized over every registered component (timm-style).

Each entry is built with its defaults (or the ``test_kwargs`` its plugin declares for a tiny CPU
build) and must do what its kind promises on a tiny input.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from torch import nn

from zoo.assembly import build_nested_components
from zoo.plugins import load_registry

_REGISTRY = load_registry(strict=False, disable=(), only=())
ENTRIES = sorted(_REGISTRY.entries(), key=lambda e: (e.kind, e.name))


def _kw(entry) -> dict:
    """The entry's tiny test arguments, nested ``{component: KIND, ...}`` parts built as build_model does."""
    return build_nested_components(entry.meta.get("test_kwargs") or {}, _REGISTRY, f"{entry.kind}:{entry.name}")


def _id(entry) -> str:
    return f"{entry.kind}:{entry.name}"


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_component_is_documented_and_owned(entry):
    assert entry.description, f"{entry.kind} '{entry.name}' has no description/docstring"
    assert entry.owner.name and entry.owner.dist, "every entry records its plugin and distribution"


def _backbone(entry):
    model = entry.create(**_kw(entry)).eval()
    size = int(entry.meta.get("test_input_size", 64))
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        y = model(x)
    assert hasattr(model, "num_features") and model.num_features > 0
    fmt = getattr(model, "output_fmt", "NCHW")
    if fmt == "NCHW":
        assert y.ndim == 4 and y.shape[:2] == (2, model.num_features)
    else:
        assert y.shape == (2, model.num_features)
    assert torch.isfinite(y).all()


def _pooling(entry):
    pool = entry.create(**_kw(entry))
    x = torch.rand(2, 8, 5, 5) + 0.1
    y = pool(x)
    assert y.reshape(2, -1).shape == (2, 8)
    assert torch.isfinite(y).all()
    # pooling a constant map returns the constant
    c = torch.full((1, 4, 3, 3), 0.7)
    assert torch.allclose(pool(c).reshape(-1), torch.full((4,), 0.7), atol=1e-4)


def _neck(entry):
    kw = {"in_features": 16, "out_features": 8, **_kw(entry)}
    neck = entry.create(**kw).train()
    x = torch.randn(4, kw["in_features"], requires_grad=True)
    y = neck(x)
    assert y.shape == (4, kw["out_features"]) and torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def _head(entry):
    kw = {"in_features": 8, "num_classes": 5, **_kw(entry)}
    head = entry.create(**kw)
    out = head(torch.randn(3, kw["in_features"]))
    assert out.shape == (3, kw["num_classes"]) and torch.isfinite(out).all()
    if entry.meta.get("output", "cosine") == "cosine":
        assert out.abs().max() <= 1.0 + 1e-5, "cosine heads return cosines (set meta output='logits' otherwise)"


def _loss(entry):
    loss = entry.create(**_kw(entry))
    if hasattr(loss, "set_class_counts"):
        loss.set_class_counts(np.array([5, 1, 3, 2, 8]))
    if hasattr(loss, "set_epoch"):
        loss.set_epoch(1)
    logits = (torch.rand(4, 5) * 2 - 1).requires_grad_()
    value = loss(logits, torch.tensor([0, 1, 4, 2]))
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(logits.grad).all()


def _sampler(entry):
    role = entry.meta.get("role", "sampler")
    if role == "sampler":
        labels = np.repeat(np.arange(5), 4)
        sampler = entry.create(labels, **_kw(entry))
        idx = list(iter(sampler))
        assert len(idx) == len(sampler) and all(0 <= i < len(labels) for i in idx)
    elif role == "resample":
        from zoo.data.images import ImageRecord

        records = [ImageRecord(f"i{i}", f"i{i}.jpg", str(i % 4)) for i in range(40)]
        out = entry.create(**_kw(entry))(records, seed=0)
        assert out and all(isinstance(r, ImageRecord) for r in out)
    else:
        assert callable(entry.create(**_kw(entry)))


def _augmentation(entry):
    role = entry.meta.get("role", "pipeline")
    if role == "batch":
        mixer = entry.create(**_kw(entry))
        images, targets = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
        out_images, soft = mixer(images, targets, 3, torch.Generator().manual_seed(0))
        assert out_images.shape == images.shape and soft.shape == (4, 3)
        assert torch.allclose(soft.sum(1), torch.ones(4), atol=1e-5)
        return
    pipe = entry.create(image_size=32, **_kw(entry))
    image = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    out = pipe(image=image)["image"]
    assert tuple(out.shape[-2:]) == (32, 32) and out.shape[0] == 3


def _optimizer(entry):
    p = nn.Parameter(torch.ones(3))
    opt = entry.create([{"params": [p]}], lr=0.1, **_kw(entry))
    (p ** 2).sum().backward()
    opt.step()
    assert not torch.equal(p.detach(), torch.ones(3))


def _param_groups(entry):
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    groups = entry.create(model, lr=0.1, **_kw(entry))
    got = {id(p) for g in groups for p in g["params"]}
    assert got == {id(p) for p in model.parameters() if p.requires_grad}


def _scheduler(entry):
    p = nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = entry.create(opt, **_kw(entry))
    lrs = []
    for _ in range(4):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert all(np.isfinite(lrs)) and len(set(lrs)) > 1


def _ensemble(entry):
    combine = entry.create(**_kw(entry))
    a, b = torch.randn(2, 4), torch.randn(2, 6)
    out = combine([a, b], [{"family": "x"}, {"family": "y"}])
    assert out.shape[0] == 2 and out.shape[1] in (10, 4, 6)


def _command(entry):
    parser = argparse.ArgumentParser(prog=f"zoo {entry.name}")
    entry.create(parser)
    assert callable(parser.get_default("func"))


def _callable(entry):
    obj = entry.create(**_kw(entry)) if entry.kind != "converter" else entry.factory
    assert callable(obj)


CHECKS = {
    "backbone": _backbone,
    "pooling": _pooling,
    "neck": _neck,
    "head": _head,
    "loss": _loss,
    "sampler": _sampler,
    "augmentation": _augmentation,
    "optimizer": _optimizer,
    "param_groups": _param_groups,
    "scheduler": _scheduler,
    "ensemble": _ensemble,
    "command": _command,
}


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_component_contract(entry):
    torch.manual_seed(0)
    CHECKS.get(entry.kind, _callable)(entry)


def test_every_kind_issue_lists_is_filled():
    kinds = {e.kind for e in ENTRIES}
    assert {"backbone", "neck", "head", "loss", "sampler", "postprocessor"} <= kinds
