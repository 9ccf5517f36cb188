"""The recipe's validation hold-out in ``zoo train`` (issue 9 "Splits in zoo train"): the trainer holds
the recipe's validation rows out of the stage's data with ``split_from_spec``, logs both sides, validates
on them every epoch; dynamic margins count every row of the step's data (GLR2020 3rd place train.py)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from test_train_support import synthetic_images, tiny_cfg, tiny_registry
from zoo.data.splits import split_from_spec
from zoo.train.data import TensorSource, TrainDataError
from zoo.train.engine import Trainer

SPEC = {"type": "holdout", "test_size": 0.25, "seed": 0xFACED}


def _unbalanced():
    """4 classes with 12, 8, 6 and 10 images (labels 100..103)."""
    images, labels = synthetic_images(n_classes=4, per_class=12, size=16)
    keep = [i for i, lab in enumerate(labels) if (i % 12) < {100: 12, 101: 8, 102: 6, 103: 10}[lab]]
    return images[keep], [labels[i] for i in keep]


def test_source_holds_out_the_recipe_rows_and_counts_all_rows():
    images, labels = _unbalanced()
    src = TensorSource({"train": (images, labels)})
    split = src.train_split("train", image_size=16, augment=None, seed=0, holdout=SPEC)
    val = src.val_split(image_size=16, augment=None, label_names=split.label_names, key="train")
    targets = np.asarray([lab - 100 for lab in labels])
    want = split_from_spec(targets, SPEC)
    assert split.targets.tolist() == targets[want.train].tolist()
    assert val.targets.tolist() == targets[want.val].tolist()
    assert len(split.targets) + len(val.targets) == len(labels) and len(val.targets) == 9
    # margins: every row of the step's data, not only the training side
    assert split.class_counts().tolist() == [12, 8, 6, 10]
    assert np.bincount(split.targets).tolist() != [12, 8, 6, 10]
    # a given validation set and a hold-out rule at once: one clear error
    both = TensorSource({"train": (images, labels)}, val=(images, labels))
    with pytest.raises(TrainDataError, match="train.split=null"):
        both.train_split("train", image_size=16, augment=None, seed=0, holdout=SPEC)


def test_dynamic_margins_use_all_rows(registry):
    from zoo.train.components import build_loss
    from zoo.train.config import resolve_plan

    images, labels = _unbalanced()
    split = TensorSource({"train": (images, labels)}).train_split("train", image_size=16, augment=None, seed=0,
                                                                  holdout=SPEC)
    cfg = tiny_cfg()
    loss = build_loss(registry, cfg.loss, resolve_plan(cfg).stages[0], split)
    want = registry.create("loss", "arcface_dynamic", s=30.0)
    want.set_class_counts(np.array([12, 8, 6, 10]))
    train_side = registry.create("loss", "arcface_dynamic", s=30.0)
    train_side.set_class_counts(np.bincount(split.targets))
    assert torch.equal(loss.margins, want.margins)
    assert not torch.allclose(loss.margins, train_side.margins)


def test_trainer_validates_on_the_held_out_rows_every_epoch(tmp_path, caplog):
    images, labels = _unbalanced()
    cfg = tiny_cfg(epochs=2, split=SPEC)
    with caplog.at_level(logging.INFO, logger="zoo.train"):
        result = Trainer(cfg, TensorSource({"train": (images, labels)}), tmp_path, registry=tiny_registry(),
                         device="cpu", progress=False).fit()
    assert [h["val_images"] for h in result.history] == [9.0, 9.0]
    assert all(0.0 <= h["gap"] <= 1.0 for h in result.history)
    assert "training on 27 rows of 4 classes, validating every epoch on 9 rows of 4 classes" in caplog.text
    assert json.loads((tmp_path / "plan.json").read_text())["split"] == SPEC


@pytest.fixture()
def class_tree(tmp_path, photo_dir):
    import shutil

    root = tmp_path / "tree"
    for cls, names in {"cats": ["chelsea", "coffee", "astronaut", "rocket"],
                       "bikes": ["motorcycle_left", "motorcycle_right", "china", "flower"]}.items():
        (root / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(photo_dir / f"{n}.jpg", root / cls / f"{n}.jpg")
    return root


TINY = ["model.backbone.name=mobilenetv2_035", "train.image_size=32", "train.epochs=1", "train.batch_size=2",
        "train.workers=0", "+train.split={type: holdout, test_size: 0.5, seed: 0}"]


@pytest.mark.slow
def test_zoo_train_holds_out_without_val_and_val_or_no_split_replace_it(tmp_path, class_tree, capsys):
    from zoo.cli import main

    common = [*TINY, "--data", str(class_tree), "--device", "cpu", "--no-pretrained", "--no-progress"]
    assert main(["train", "default-finetune", *common, "--out", str(tmp_path / "split")]) == 0
    val = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines() if '"val"' in x]
    assert val[-1]["val_images"] == 4  # half of the 8 photos, stratified: 2 per class
    assert json.loads((tmp_path / "split" / "config.json").read_text())["train"]["split"]["type"] == "holdout"
    # --val replaces the rule: all 8 rows train, the given set validates
    assert main(["train", "default-finetune", *common, "--val", str(class_tree), "--out", str(tmp_path / "val")]) == 0
    val = [json.loads(x) for x in (tmp_path / "val" / "metrics.jsonl").read_text().splitlines() if '"val"' in x]
    assert val[-1]["val_images"] == 8
    assert json.loads((tmp_path / "val" / "config.json").read_text())["train"]["split"] is None
    # --no-split: every row trains, nothing validates
    assert main(["train", "default-finetune", *common, "--no-split", "--out", str(tmp_path / "all")]) == 0
    val = [json.loads(x) for x in (tmp_path / "all" / "metrics.jsonl").read_text().splitlines() if '"val"' in x]
    assert "val_images" not in val[-1]
