"""Vectors of different models are never mixed silently; random layers are seeded, recorded and refused.

Regression tests of issue 11.4 (``zoo retrieve default --index EMB_A --query EMB_B`` with B from
another model gave mAP 0.035 without a word) and 11.5 (a resumed ``zoo embed`` with randomly
initialised layers embedded the remaining shards with a new random model: an image and its copy
had cos 0.08).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.cli import main
from zoo.factory import create_model
from zoo.inference.identity import MixedModelsError, ModelIdentity, check_same_model
from zoo.inference.shards import EmbeddingStore
from zoo.weights.origin import find_random_tensors, track_loaded

TINY = ["model.backbone.name=mobilenetv2_035", "data.image_size=64"]
FAST = ["--device", "cpu", "--workers", "0", "--no-progress"]
#: the default recipe's real ImageNet weights at a tiny input size (Lite2 vs Lite0: two real models)
LITE2 = ["data.image_size=64"]
LITE0 = ["data.image_size=64", "model.backbone.name=tf_efficientnet_lite0"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory, photo_paths) -> Path:
    """Six real photos, each twice (``x.jpg`` and ``x_copy.jpg``, byte-identical)."""
    out = tmp_path_factory.mktemp("identity") / "photos"
    out.mkdir()
    from PIL import Image

    for name in ("chelsea", "coffee", "astronaut", "rocket", "china", "flower"):
        Image.open(photo_paths[name]).convert("RGB").save(out / f"{name}.jpg", quality=90)
        shutil.copy(out / f"{name}.jpg", out / f"{name}_copy.jpg")
    return out


def embed(photos: Path, out: Path, *extra: str) -> int:
    return main(["embed", "default", "--images", str(photos), "--out", str(out), *FAST, *extra])


# --- where weights come from -------------------------------------------------------------------


def test_manifest_weights_are_files_and_gem_p_is_not_random():
    model = create_model("default", pretrained=True, overrides=LITE2)
    origin = model.weights_origin
    from zoo.weights.catalog import get_weights

    (wf,) = get_weights("tf_efficientnet_lite2.in1k").files
    assert origin.files == (f"sha256:{wf.sha256}",)
    assert origin.random == () and origin.random_head == () and origin.random_marker() is None
    assert ModelIdentity.of_model(model, [model.data_config], flip_tta=False).weights == f"sha256:{wf.sha256}"


def test_random_layers_are_found_seeded_and_told_apart(caplog):
    with caplog.at_level("WARNING", logger="zoo.factory"):
        a = create_model("default", overrides=TINY)
    assert "weights are RANDOM" in caplog.text and "seeded with 0" in caplog.text
    b = create_model("default", overrides=TINY)
    c = create_model("default", overrides=TINY, seed=1)
    oa, ob, oc = a.weights_origin, b.weights_origin, c.weights_origin
    assert "backbone.net.conv_stem.weight" in oa.random
    assert all(not k.endswith(("running_mean", "running_var", "num_batches_tracked", "global_pool.p")) for k in oa.random)
    # the same seed gives the same model (a resume is identical); another seed another one, told apart
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert not torch.equal(a.state_dict()["backbone.net.conv_stem.weight"], c.state_dict()["backbone.net.conv_stem.weight"])
    assert oa.random_marker() == ob.random_marker() != oc.random_marker()
    assert oa.random_marker().startswith("random:0/") and oc.random_marker().startswith("random:1/")


def test_random_head_does_not_shape_the_descriptor():
    model = create_model("default-finetune", pretrained=True, overrides=LITE2)
    assert model.weights_origin.random == () and model.weights_origin.random_head == ("head.weight",)


def test_checkpoint_loads_every_tensor_without_a_second_build(tmp_path):
    from zoo.runs import save_run_weights

    src = create_model("default-finetune", overrides=[*TINY, "model.head.num_classes=3"], seed=5)
    save_run_weights(tmp_path / "model.safetensors", src.state_dict(), src.recipe_cfg, ["a", "b", "c"])
    model = create_model(tmp_path)
    from zoo.weights.integrity import sha256_of

    assert model.weights_origin.files == (f"sha256:{sha256_of(tmp_path / 'model.safetensors')}",)
    assert model.weights_origin.random == () and model.weights_origin.random_head == ()
    with track_loaded(model) as loaded:
        model.load_state_dict(src.state_dict())
    assert loaded.keys == set(model.state_dict())
    assert find_random_tensors(model, loaded.keys, lambda s: pytest.fail("rebuilt although all was loaded"), 0) == []


# --- identities compared -----------------------------------------------------------------------


def ident(**kw) -> ModelIdentity:
    base = dict(recipe="default", weights="sha256:" + "a" * 64, config="c" * 64, preprocess=('{"input_size": 64}',),
                dim=8, flip_tta=False)
    return ModelIdentity(**{**base, **kw})


def test_check_same_model_names_both_and_the_flag(caplog):
    check_same_model([("A", ident()), ("B", ident()), ("C", None)])
    with pytest.raises(MixedModelsError) as err:
        check_same_model([("--index A", ident()), ("--query B", ident(weights="sha256:" + "b" * 64))])
    msg = str(err.value)
    assert "\n" not in msg and "--index A" in msg and "--query B" in msg and "--allow-mixed-models" in msg
    assert "sha256:aaaaaaaaaaaa" in msg and "sha256:bbbbbbbbbbbb" in msg and "weights differ" in msg
    with caplog.at_level("WARNING"):
        check_same_model([("A", ident()), ("B", ident(flip_tta=True))], allow=True)
    assert "flip_tta differ" in caplog.text
    with pytest.raises(MixedModelsError, match="different sizes"):  # never comparable, whatever the flag
        check_same_model([("A", ident()), ("B", ident(dim=16))], allow=True)


def test_folders_without_identity_compare_what_they_record():
    old = ModelIdentity.from_manifest({"recipe": "default", "checkpoint": None, "dim": 8, "flip_tta": False,
                                       "preprocess": [{"input_size": 64}]})
    assert old.weights is None and old.differences(ident()) == []
    other = ModelIdentity.from_manifest({"recipe": "default", "checkpoint": "runs/ft/model.safetensors", "dim": 8})
    assert other.differences(ident()) == ["checkpoint"]
    assert ModelIdentity.from_manifest({"recipe": "glr", "dim": 8}).differences(ident()) == ["recipe"]


# --- the commands ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, photos):
    """The same photos embedded by the default recipe's Lite2 and by its Lite0 (real ImageNet weights)."""
    root = tmp_path_factory.mktemp("two")
    assert embed(photos, root / "lite2", *LITE2) == 0
    assert embed(photos, root / "lite0", *LITE0) == 0
    return root


def test_embed_records_the_identity_and_index_carries_it(two_models):
    a, b = EmbeddingStore(two_models / "lite2"), EmbeddingStore(two_models / "lite0")
    assert a.identity.weights.startswith("sha256:") and a.identity.differences(b.identity) == ["weights", "config"]
    assert main(["index", str(two_models / "lite2"), "--out", str(two_models / "idx"), "--no-progress"]) == 0
    carried = json.loads((two_models / "idx" / "index.json").read_text())["identity"]
    assert carried == a.manifest["identity"]


def test_search_retrieve_recognize_refuse_other_models(two_models, tmp_path, capsys):
    if not (two_models / "idx").is_dir():
        assert main(["index", str(two_models / "lite2"), "--out", str(two_models / "idx"), "--no-progress"]) == 0
    a, b = str(two_models / "lite2"), str(two_models / "lite0")
    capsys.readouterr()
    for argv in (
        ["search", str(two_models / "idx"), "--query", b, "--out", str(tmp_path / "n.csv"), "--no-progress"],
        ["retrieve", "default", "--index", a, "--query", b, "--out", str(tmp_path / "r.csv"), *FAST],
        ["retrieve", "default", "--index", str(two_models / "idx"), "--query", b, "--out", str(tmp_path / "r.csv"), *FAST],
        ["recognize", "default", "--train", a, "--test", b, "--out", str(tmp_path / "s.csv"), "--no-postprocess", *FAST],
    ):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "embedded by different models" in err and "--allow-mixed-models" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "r.csv").exists() and not (tmp_path / "n.csv").exists()
    # asked for explicitly: a warning, and the command runs
    assert main(["retrieve", "default", "--index", a, "--query", b, "--out", str(tmp_path / "r.csv"),
                 "--allow-mixed-models", *FAST]) == 0
    assert "comparing them anyway" in capsys.readouterr().err
    # the same model on both sides (images embedded by the command's own model) passes without a word
    assert main(["retrieve", "default", "--index", a, "--query", str(two_models / "lite2"), "--out",
                 str(tmp_path / "r2.csv"), *FAST]) == 0
    assert "different models" not in capsys.readouterr().err


def test_images_embedded_by_the_command_are_checked_before_embedding(two_models, photos, tmp_path, capsys):
    work = tmp_path / "work"
    assert main(["retrieve", "default", *LITE0, "--index", str(two_models / "lite2"), "--query", str(photos),
                 "--out", str(tmp_path / "r.csv"), "--work", str(work), *FAST]) == 1
    err = capsys.readouterr().err
    assert "recipe 'default' (embedding the images)" in err and "--allow-mixed-models" in err
    assert not work.exists()  # refused before anything was embedded


# --- random weights and resume ------------------------------------------------------------------


def test_embed_refuses_random_weights_unless_asked(photos, tmp_path, capsys):
    assert embed(photos, tmp_path / "r", *TINY, "--no-pretrained") == 1
    err = capsys.readouterr().err
    assert "randomly initialised tensors" in err and "--allow-random-weights" in err
    assert not (tmp_path / "r" / "manifest.json").exists()


def test_resumed_random_embed_uses_the_same_seeded_model(photos, tmp_path, capsys):
    """Kill after the first shard, rerun: an image and its copy (in different shards) still match."""
    out = tmp_path / "emb"
    args = [*TINY, "--no-pretrained", "--allow-random-weights", "--shard-size", "3"]
    assert embed(photos, out, *args) == 0
    assert "weights are RANDOM" in capsys.readouterr().err
    store = EmbeddingStore(out)
    assert store.identity.weights.startswith("random:0/")
    ids, full = store.load()
    for k in range(1, store.num_shards):  # an interrupted run: only shard 0 finished
        store.shard_files(k)[1].unlink()
    assert embed(photos, out, *args) == 0
    ids2, resumed = EmbeddingStore(out).load()
    assert ids2 == ids
    np.testing.assert_allclose(resumed, full, atol=1e-5)
    by_id = dict(zip(ids, resumed))
    pairs = [(i, i.replace(".jpg", "_copy.jpg")) for i in ids if not i.endswith("_copy.jpg")]
    assert any(ids.index(a) // 3 != ids.index(b) // 3 for a, b in pairs)  # copies across shards
    for a, b in pairs:
        assert float(by_id[a] @ by_id[b]) > 0.9999
    # another seed is another model: the folder refuses to resume with it
    (store.shard_files(1)[1]).unlink()
    assert embed(photos, out, *args[:-2], "--seed", "1", "--shard-size", "3") == 1
    assert "identity" in capsys.readouterr().err
