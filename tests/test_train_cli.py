"""``zoo train`` end to end on real photos in an image-folder tree with a corrupt and a truncated file:
the run finishes, lists the unreadable files, saves the label map and loadable weights; ``--resume``
of a finished run changes nothing."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

TINY = ["model.backbone.name=mobilenetv2_035", "train.image_size=32", "train.epochs=2", "train.batch_size=4",
        "train.workers=0", "train.log_every=1"]


@pytest.fixture()
def class_tree(tmp_path, photo_dir):
    root = tmp_path / "tree"
    groups = {"cat_and_co": ["chelsea", "coffee", "astronaut", "rocket", "corrupt"],
              "bikes": ["motorcycle_left", "motorcycle_right", "china", "flower", "truncated"]}
    for cls, names in groups.items():
        (root / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(photo_dir / f"{n}.jpg", root / cls / f"{n}.jpg")
    return root


def test_help_lists_the_options(capsys):
    from zoo.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--data", "--images", "--val", "--resume", "--no-pretrained", "--device", "torchrun"):
        assert opt in out


@pytest.mark.slow
def test_train_cli_on_real_photos_skips_unreadable(tmp_path, class_tree, capsys):
    import zoo
    from zoo.cli import main

    out = tmp_path / "run"
    argv = ["train", "default-finetune", *TINY, "--data", str(class_tree), "--val", str(class_tree),
            "--out", str(out), "--device", "cpu", "--no-pretrained", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "trained default-finetune" in printed and "skipped" in printed
    skipped = json.loads((out / "skipped.json").read_text())
    paths = {e["path"].rsplit("/", 1)[-1] for e in skipped["skipped"]}
    assert paths == {"corrupt.jpg", "truncated.jpg"}
    labels = json.loads((out / "labels.json").read_text())["labels"]
    assert labels == ["bikes", "cat_and_co"]
    history = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"val"' in x]
    assert len(history) == 2 and 0.0 <= history[-1]["accuracy"] <= 1.0 and history[-1]["val_images"] == 8
    env = json.loads((out / "environment.json").read_text())
    assert any(p["name"] == "optim" for p in env["plugins"])
    assert json.loads((out / "config.json").read_text())["name"] == "default-finetune"
    model = zoo.create_model("default-finetune", checkpoint=out / "model.safetensors",
                             overrides=["model.backbone.name=mobilenetv2_035", "model.head.num_classes=2"]).eval()
    assert model(torch.zeros(1, 3, 32, 32))["logits"].shape == (1, 2)
    before = load_file(str(out / "model.safetensors"))
    assert main([*argv, "--resume"]) == 0  # finished run: nothing left to do
    after = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_unknown_data_key_is_a_clear_error(tmp_path, class_tree, capsys):
    from zoo.cli import main

    rc = main(["train", "default-finetune", *TINY, "train.stages=[{name: s, data: full}]", "--data", str(class_tree),
               "--out", str(tmp_path / "r"), "--device", "cpu", "--no-pretrained", "--no-progress"])
    assert rc == 1  # a user error (exit 2 is for usage errors)
    assert "--data full=PATH" in capsys.readouterr().err
