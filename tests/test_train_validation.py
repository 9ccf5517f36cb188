"""Validation during training: GAP comes from the metric registry and equals the formula the trainer
used before (GLR2020 3rd place ``global_average_precision_score``); the validator's GAP on a model's
predictions is the registry's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_train_support import synthetic_images, tiny_cfg, tiny_registry
from zoo.train.data import TensorSource


def old_trainer_gap(pred, conf, target) -> float:
    """The trainer's former ``gap_score`` (train/validation.py before the registry took over), kept
    here as an independent oracle: sort by confidence, precision at each correct prediction, divided
    by the number of queries with a target (``target < 0``: none)."""
    pred, conf, target = np.asarray(pred), np.asarray(conf, dtype=np.float64), np.asarray(target)
    n_with_target = int((target >= 0).sum())
    if n_with_target == 0:
        return float("nan")
    order = np.argsort(-conf, kind="stable")
    correct = (pred[order] == target[order]) & (target[order] >= 0)
    precision = np.cumsum(correct) / np.arange(1, len(correct) + 1)
    return float((precision * correct).sum() / n_with_target)


@pytest.mark.parametrize("seed", range(20))
def test_registry_gap_equals_the_old_trainer_formula(registry, seed):
    rng = np.random.default_rng(seed)
    n, classes = int(rng.integers(1, 300)), int(rng.integers(1, 12))
    pred = rng.integers(0, classes, n)
    # ties in confidence on purpose: both keep the input order
    conf = rng.choice(rng.random(max(1, n // 3)), n).astype(np.float32)
    target = np.where(rng.random(n) < 0.7, pred, rng.integers(0, classes, n))
    target[rng.random(n) < 0.2] = -1  # labels unseen in training
    if (target >= 0).sum() == 0:
        target[0] = pred[0]
    gap = registry.create("metric", "gap")
    assert gap(pred, conf, target) == pytest.approx(old_trainer_gap(pred, conf, target), abs=1e-12)


def test_validator_gap_is_the_registry_gap_of_the_model_predictions(registry):
    from zoo.assembly import build_model
    from zoo.distributed import DistContext
    from zoo.train.callbacks import EpochState
    from zoo.train.config import resolve_plan
    from zoo.train.state import TrainState
    from zoo.train.validation import Validator, accuracy

    images, labels = synthetic_images(n_classes=4, per_class=6, size=16)
    cfg = tiny_cfg()
    reg = tiny_registry()
    torch.manual_seed(0)
    model = build_model(cfg, reg).eval()
    src = TensorSource({"train": (images, labels)}, val=(images, labels[:-3] + [999, 999, 999]))
    split = src.train_split("train", image_size=16, augment=None, seed=0)
    val = src.val_split(image_size=16, augment=None, label_names=split.label_names)
    assert (val.targets == -1).sum() == 3
    from zoo.data.config import DataConfig

    v = Validator(val, ctx=DistContext(), registry=reg, data_config=DataConfig(16, mean=(0.5,) * 3, std=(0.25,) * 3),
                  batch_size=5, amp="off", workers=0)
    ep = EpochState(resolve_plan(cfg).stages[0], 1, 1, record={"kind": "val"})
    v.on_epoch_end(TrainState(model=model), ep)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        conf, pred = model(x)["logits"].max(1)
    want = registry.create("metric", "gap")(pred.numpy(), conf.numpy(), val.targets)
    assert ep.record["gap"] == pytest.approx(want, abs=1e-6)
    assert ep.record["gap"] == pytest.approx(old_trainer_gap(pred.numpy(), conf.numpy(), val.targets), abs=1e-6)
    assert ep.record["accuracy"] == pytest.approx(accuracy(pred.numpy(), val.targets))
    assert ep.record["val_images"] == len(images)
