"""Per-stage ``world_size`` and ``max_steps_per_epoch`` in the trainer: a run on another number of
processes says how its global batch differs and how to match it, without touching the schedule; the
step cap shortens epochs, the schedule counts the capped steps, and a resumed capped run is exact."""

from __future__ import annotations

import json
import logging

import torch
from safetensors.torch import load_file

from test_train_support import synthetic_images, tiny_cfg, tiny_registry
from zoo.train.data import TensorSource
from zoo.train.engine import Trainer


def _run(cfg, run_dir, images=None, labels=None, **kw):
    if images is None:
        images, labels = synthetic_images()  # 32 images of 4 classes
    return Trainer(cfg, TensorSource({"train": (images, labels)}), run_dir, registry=tiny_registry(), device="cpu",
                   progress=False, **kw).fit()


def _lrs(run_dir):
    return [r["lr"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if r["kind"] == "train"]


def test_other_world_size_logs_the_global_batches_and_the_fix(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="zoo.train"):
        _run(tiny_cfg(epochs=1, world_size=4), tmp_path / "ws4")
    text = caplog.text
    assert "global batch is 32 (batch_size 8 x world_size 4 x accumulate 1)" in text
    assert "this run's is 8 (8 x 1 process x 1)" in text and "set train.accumulate=4" in text
    # the schedule is the recipe's: the same steps and learning rates as a run of the recipe's world size
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="zoo.train"):
        _run(tiny_cfg(epochs=1), tmp_path / "ws1")
    assert "global batch" not in caplog.text
    assert _lrs(tmp_path / "ws4") == _lrs(tmp_path / "ws1") and len(_lrs(tmp_path / "ws1")) == 4
    a, b = load_file(str(tmp_path / "ws4" / "model.safetensors")), load_file(str(tmp_path / "ws1" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_world_size_fix_names_the_stage_key(tmp_path, caplog):
    cfg = tiny_cfg(epochs=1, stages=[{"name": "a"}, {"name": "b", "world_size": 3, "accumulate": 2}])
    with caplog.at_level(logging.WARNING, logger="zoo.train"):
        _run(cfg, tmp_path, max_steps=5)
    assert "stage b: the recipe's global batch is 48 (batch_size 8 x world_size 3 x accumulate 2)" in caplog.text
    assert "set train.stages.1.accumulate=6" in caplog.text and "stage a:" not in caplog.text


def test_max_steps_per_epoch_caps_steps_and_the_schedule_counts_them(tmp_path):
    images, labels = synthetic_images()
    capped = _run(tiny_cfg(epochs=2, max_steps_per_epoch=2), tmp_path / "capped")
    assert capped.global_step == 4  # 2 epochs x 2 of the 4 batches
    # an epoch of exactly 2 batches has the same schedule (warm-up + cosine over 2 epochs x 2 steps)
    short = _run(tiny_cfg(epochs=2), tmp_path / "short", images[::2], labels[::2])
    assert short.global_step == 4 and _lrs(tmp_path / "capped") == _lrs(tmp_path / "short")
    uncapped = _run(tiny_cfg(epochs=2), tmp_path / "full")
    assert uncapped.global_step == 8 and _lrs(tmp_path / "full") != _lrs(tmp_path / "capped")


def test_capped_run_resumes_exactly(tmp_path):
    cfg = dict(epochs=2, max_steps_per_epoch=3, checkpoint_every_steps=1)
    _run(tiny_cfg(**cfg), tmp_path / "ref")
    stopped = _run(tiny_cfg(**cfg), tmp_path / "cut", max_steps=4)  # mid epoch 2
    assert stopped.stopped_early and stopped.global_step == 4
    resumed = _run(tiny_cfg(**cfg), tmp_path / "cut", resume=True)
    assert resumed.global_step == 6
    a, b = load_file(str(tmp_path / "ref" / "model.safetensors")), load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_glr2019_recipe_caps_epochs_at_15000_steps(registry):
    import zoo
    from zoo.train.config import resolve_plan

    (stage,) = resolve_plan(zoo.get_recipe("glr2019-xception-cbp", registry=registry)).stages
    assert stage.max_steps_per_epoch == 15000 and stage.batch_size == 16 and stage.accumulate == 1
