"""Self-describing run folders: a trained checkpoint rebuilds exactly its model, in every way a user can ask.

A tiny real ``zoo train`` run (real photos, CPU) resizes the head to its 2 classes; the run folder, its
``model.safetensors`` with the recipe name, and the same file without any recipe all rebuild the trained
model, and ``zoo embed`` / ``zoo export`` accept it (before, all of these failed on ``head.weight``).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import zoo
from zoo.assembly import ModelBuildError

TINY = ["model.backbone.name=mobilenetv2_035", "train.image_size=32", "train.epochs=1", "train.batch_size=4",
        "train.workers=0", "train.log_every=1"]
GROUPS = {"cat_and_co": ["chelsea", "coffee", "astronaut", "rocket"],
          "bikes": ["motorcycle_left", "motorcycle_right", "china", "flower"]}


@pytest.fixture(scope="module")
def photos(tmp_path_factory, photo_paths):
    from PIL import Image

    root = tmp_path_factory.mktemp("tree")
    for cls, names in GROUPS.items():
        (root / cls).mkdir()
        for n in names:
            Image.open(photo_paths[n]).convert("RGB").save(root / cls / f"{n}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory, photos):
    from zoo.cli import main

    out = tmp_path_factory.mktemp("runs") / "ft"
    argv = ["train", "default-finetune", *TINY, "--data", str(photos), "--out", str(out), "--device", "cpu",
            "--no-pretrained", "--no-progress"]
    assert main(argv) == 0
    return out


def _logits(model) -> torch.Tensor:
    x = torch.linspace(-1, 1, 2 * 3 * 48 * 64).view(2, 3, 48, 64)
    with torch.no_grad():
        return model.eval()(x)["logits"]


def test_the_checkpoint_describes_its_model(run):
    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    config = json.loads(meta["zoo_config"])
    assert config["model"]["head"]["num_classes"] == 2  # the trained head, not the recipe's 1000
    assert config["model"]["backbone"]["name"] == "mobilenetv2_035" and meta["recipe"] == "default-finetune"
    assert json.loads(meta["zoo_labels"]) == ["bikes", "cat_and_co"]
    assert json.loads(meta["zoo_data_config"])["resize"] == "long_side"
    assert json.loads((run / "config.json").read_text())["model"]["head"]["num_classes"] == 2
    assert json.loads((run / "labels.json").read_text())["labels"] == ["bikes", "cat_and_co"]


def test_every_way_to_name_the_run_rebuilds_the_trained_model(run):
    state = load_file(str(run / "model.safetensors"))
    models = [
        zoo.create_model(str(run)),
        zoo.create_model(run),
        zoo.create_model("default-finetune", checkpoint=run / "model.safetensors"),
        zoo.create_model(checkpoint=run / "model.safetensors"),
        zoo.create_model(checkpoint=run),
    ]
    want = _logits(models[0])
    assert want.shape == (2, 2)
    for model in models:
        assert model.labels == ["bikes", "cat_and_co"] and model.recipe == "default-finetune"
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        assert torch.equal(_logits(model), want)
    # inference-time overrides still apply on top of the trained config
    bigger = zoo.create_model(run, overrides=["data.image_size=512"])
    assert bigger.data_config.input_size == 512 and torch.equal(_logits(bigger), want)


def test_a_checkpoint_of_another_recipe_is_refused(run):
    with pytest.raises(ModelBuildError, match="trained from recipe 'default-finetune', not 'default'"):
        zoo.create_model("default", checkpoint=run / "model.safetensors")


def test_checkpoints_written_before_the_contract_still_load(run, tmp_path):
    """Only ``recipe`` and ``zoo_labels`` metadata (and labels.json beside it): the head is sized from the labels."""
    from zoo.atomic import save_safetensors

    old = tmp_path / "old"
    old.mkdir()
    state = load_file(str(run / "model.safetensors"))
    save_safetensors(old / "model.safetensors", state, {"recipe": "default-finetune", "global_step": "2"})
    shutil.copy(run / "labels.json", old / "labels.json")
    model = zoo.create_model("default-finetune", checkpoint=old / "model.safetensors",
                             overrides=["model.backbone.name=mobilenetv2_035"])
    assert torch.equal(_logits(model), _logits(zoo.create_model(run)))
    with pytest.raises(ModelBuildError, match="mobilenetv2_035|shape mismatches|missing keys"):
        zoo.create_model("default-finetune", checkpoint=old / "model.safetensors")  # other backbone: stated clearly


def test_rebuilding_never_downloads_the_backbone(run, tmp_path):
    """A run that started from ImageNet records backbone.pretrained: true; the checkpoint holds the weights."""
    from zoo.factory import resolve_model_config
    from zoo.runs import save_run_weights

    model = zoo.create_model(run)
    cfg = model.recipe_cfg.copy()
    cfg.model.backbone.pretrained = True
    path = save_run_weights(tmp_path / "model.safetensors", model.state_dict(), cfg, model.labels)
    resolved, info = resolve_model_config(None, checkpoint=path)
    assert resolved.model.backbone.pretrained is False and info.labels == ["bikes", "cat_and_co"]


def test_zoo_embed_with_the_checkpoint(run, photos, tmp_path):
    from zoo.cli import main
    from zoo.inference.shards import EmbeddingStore

    common = ["--images", str(photos), "--device", "cpu", "--no-progress", "--workers", "0", "--image-size", "64"]
    assert main(["embed", "default-finetune", "--checkpoint", str(run / "model.safetensors"),
                 "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["embed", "--checkpoint", str(run / "model.safetensors"), "--out", str(tmp_path / "b"), *common]) == 0
    assert main(["embed", str(run), "--out", str(tmp_path / "c"), *common]) == 0
    ids, a = EmbeddingStore(tmp_path / "a").load()
    for other in ("b", "c"):
        ids2, b = EmbeddingStore(tmp_path / other).load()
        assert ids2 == ids and np.array_equal(a, b)
    manifest = EmbeddingStore(tmp_path / "b").manifest
    assert manifest["recipe"] == "default-finetune" and manifest["checkpoint"].endswith("model.safetensors")
    assert len(ids) == 8 and a.shape[1] == 1280


def test_zoo_export_with_the_checkpoint(run, tmp_path, capsys):
    from zoo.cli import main

    out = tmp_path / "ft.pt"
    assert main(["export", "--checkpoint", str(run / "model.safetensors"), "--out", str(out),
                 "--image-size", "64"]) == 0
    printed = capsys.readouterr().out
    assert "against zoo embed" in printed and "long side -> 64 px" in printed
    scripted = torch.jit.load(str(out))
    meta = {"zoo.json": ""}
    torch.jit.load(str(out), _extra_files=meta)
    info = json.loads(meta["zoo.json"])
    assert info["recipe"] == "default-finetune" and info["checkpoint"].endswith("model.safetensors")
    assert scripted(torch.zeros(1, 3, 50, 70, dtype=torch.uint8)).shape == (1, 1280)
