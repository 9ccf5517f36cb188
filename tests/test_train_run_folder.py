"""Run folders are protected (issue 11 item 10, and item 11's unknown backbone): a rerun never overwrites
a run by accident, ``--resume`` refuses a changed configuration and a missing run, validation labels
unseen in training explain themselves, and a recipe whose model cannot be built leaves nothing behind."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from test_train_support import synthetic_images, tiny_cfg, tiny_registry
from zoo.train.checkpoint import CheckpointError
from zoo.train.data import TensorSource
from zoo.train.engine import Trainer
from zoo.train.errors import ResumeConfigError, RunExistsError, RunNotFoundError, TrainError, UnseenLabelsError


def _trainer(cfg, run_dir, val=None, **kw):
    images, labels = synthetic_images()
    src = TensorSource({"train": (images, labels)}, val=val)
    return Trainer(cfg, src, run_dir, registry=tiny_registry(), device="cpu", progress=False, **kw)


def _lines(path):
    return (path / "metrics.jsonl").read_text().splitlines()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "done"
    _trainer(tiny_cfg(epochs=1), run).fit()
    return run


def _copy(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def test_rerun_without_resume_refuses_and_leaves_the_run_alone(finished, tmp_path):
    run = _copy(finished, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(RunExistsError) as exc:
        _trainer(tiny_cfg(epochs=1), run).fit()
    msg = str(exc.value)
    assert "already holds a run of 'tiny-test'" in msg and "--resume" in msg and "--out" in msg and "--overwrite" in msg
    assert "\n" not in msg
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_overwrite_starts_again(finished, tmp_path):
    run = _copy(finished, tmp_path)
    (run / "stage1-old.safetensors").write_bytes(b"x")
    (run / "notes.txt").write_text("mine")  # not a run file: kept
    _trainer(tiny_cfg(epochs=2, lr=5e-3), run, overwrite=True).fit()
    fresh = tmp_path / "fresh"
    _trainer(tiny_cfg(epochs=2, lr=5e-3), fresh).fit()
    assert len(_lines(run)) == len(_lines(fresh))  # the old run's metrics are gone, not appended to
    assert not (run / "stage1-old.safetensors").exists() and (run / "notes.txt").read_text() == "mine"
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 5e-3
    a, b = load_file(str(run / "model.safetensors")), load_file(str(fresh / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(TrainError, match="pass one of them"):
        _trainer(tiny_cfg(epochs=2), run, overwrite=True, resume=True).fit()


def test_resume_refuses_a_changed_config_and_names_the_keys(finished, tmp_path):
    run = _copy(finished, tmp_path)
    config = (run / "config.json").read_text()
    with pytest.raises(ResumeConfigError) as exc:
        _trainer(tiny_cfg(epochs=1, lr=2e-2, batch_size=4), run, resume=True).fit()
    msg = str(exc.value)
    assert "train.lr (0.01 -> 0.02)" in msg and "train.batch_size (8 -> 4)" in msg and "another --out" in msg
    assert "train.epochs" not in msg and "\n" not in msg
    assert (run / "config.json").read_text() == config
    with pytest.raises(ResumeConfigError, match=r"model.embedding_dim \(8 -> 16\)"):
        cfg = tiny_cfg(epochs=1)
        cfg.model.embedding_dim = 16
        _trainer(cfg, run, resume=True).fit()
    # keys that cannot change the results may differ; a finished run then has nothing left to do
    lines = _lines(run)
    result = _trainer(tiny_cfg(epochs=1, workers=0, log_every=3, checkpoint_every_steps=2), run, resume=True).fit()
    assert result.global_step == 4 and _lines(run) == lines
    # the comparison is with the configuration the checkpoint recorded, whatever config.json says now
    # (a run-folder writer may rewrite it, e.g. with the trained head's class count)
    cfg_json = json.loads(config)
    cfg_json["model"]["head"]["num_classes"] = 4
    cfg_json["train"]["lr"] = 123.0
    (run / "config.json").write_text(json.dumps(cfg_json))
    assert _trainer(tiny_cfg(epochs=1), run, resume=True).fit().global_step == 4
    with pytest.raises(ResumeConfigError, match=r"train.lr \(0.01 -> 0.02\)"):
        _trainer(tiny_cfg(epochs=1, lr=2e-2), run, resume=True).fit()
    # another recipe's checkpoint
    other = tiny_cfg(epochs=1)
    other.name = "another"
    with pytest.raises(CheckpointError, match="belongs to recipe 'tiny-test'"):
        _trainer(other, run, resume=True).fit()


def test_resume_without_a_run_is_an_error(tmp_path):
    with pytest.raises(RunNotFoundError, match="holds no run to resume .*drop --resume"):
        _trainer(tiny_cfg(epochs=1), tmp_path / "nothing", resume=True).fit()
    assert not (tmp_path / "nothing").exists()
    half = tmp_path / "half"  # a run that stopped before its first checkpoint
    half.mkdir()
    (half / "config.json").write_text(json.dumps({"name": "tiny-test"}))
    with pytest.raises(RunNotFoundError, match="stopped before its first checkpoint .*--overwrite"):
        _trainer(tiny_cfg(epochs=1), half, resume=True).fit()
    with pytest.raises(RunExistsError, match="stopped before its first checkpoint: .*--overwrite"):
        _trainer(tiny_cfg(epochs=1), half).fit()


def test_val_labels_never_seen_in_training_explain_themselves(tmp_path, caplog):
    images, labels = synthetic_images()
    unseen = (images[:6], [7, 7, 8, 8, 9, 9])
    with pytest.raises(UnseenLabelsError) as exc:
        _trainer(tiny_cfg(epochs=1), tmp_path / "a", val=unseen).fit()
    msg = str(exc.value)
    assert "3 labels (7, 8, 9) are none of the 4 training classes" in msg and "GAP and accuracy" in msg
    assert not (tmp_path / "a").exists()  # refused before anything was written
    some = (images[:8], [100, 100, 101, 101, 5, 5, 6, 6])
    with caplog.at_level(logging.WARNING, logger="zoo.train"):
        result = _trainer(tiny_cfg(epochs=1), tmp_path / "b", val=some).fit()
    assert "4 of 8 validation images have 2 labels (5, 6) unseen in training" in caplog.text
    assert np.isfinite(result.history[-1]["gap"]) and np.isfinite(result.history[-1]["accuracy"])


def test_a_model_that_cannot_be_built_leaves_no_run_folder(finished, tmp_path):
    bad = tiny_cfg(epochs=1)
    bad.model.backbone = {"type": "timm", "name": "no_such_net", "pretrained": False}
    with pytest.raises(Exception, match="no_such_net"):
        _trainer(bad, tmp_path / "new").fit()
    assert not (tmp_path / "new").exists()
    # --overwrite with a broken recipe: the previous run stays intact
    run = _copy(finished, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(Exception, match="no_such_net"):
        _trainer(bad, run, overwrite=True).fit()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


TINY = ["model.backbone.name=mobilenetv2_035", "train.image_size=32", "train.epochs=1", "train.batch_size=2",
        "train.workers=0"]


@pytest.fixture()
def class_tree(tmp_path, photo_dir):
    root = tmp_path / "tree"
    for cls, names in {"cats": ["chelsea", "coffee"], "bikes": ["motorcycle_left", "motorcycle_right"]}.items():
        (root / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(photo_dir / f"{n}.jpg", root / cls / f"{n}.jpg")
    return root


def test_cli_errors_are_one_line_and_unknown_backbone_leaves_nothing(tmp_path, class_tree, capsys):
    from zoo.cli import main

    def base(*overrides):
        return ["train", "default-finetune", *TINY, *overrides, "--data", str(class_tree), "--device", "cpu",
                "--no-pretrained", "--no-progress"]

    out = tmp_path / "runs" / "x"
    assert main([*base("model.backbone.name=no_such_net"), "--out", str(out)]) == 1  # a user error (zoo.cli._errors: 2 is for usage errors)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("zoo train: error:") and "no_such_net" in err[-1]
    assert not out.exists() and not (tmp_path / "runs").exists()
    assert main([*base(), "--out", str(out), "--resume"]) == 1  # a user error (zoo.cli._errors: 2 is for usage errors)
    assert "drop --resume" in capsys.readouterr().err
    assert not out.exists()
    assert main([*base(), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main([*base(), "--out", str(out)]) == 1  # a user error (zoo.cli._errors: 2 is for usage errors)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "already holds a run of 'default-finetune'" in err and "--overwrite" in err
    assert main([*base("train.lr=0.5"), "--out", str(out), "--resume"]) == 1  # a user error (zoo.cli._errors: 2 is for usage errors)
    assert "train.lr" in capsys.readouterr().err
    assert main([*base(), "--out", str(out), "--overwrite"]) == 0
