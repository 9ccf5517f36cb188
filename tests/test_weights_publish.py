"""Publishing trained weights (issue 10): a tiny real run -> ``zoo weights publish`` -> loaded by name.

One tiny ``zoo train`` run on real photos (CPU, seconds) is published into a folder that is at once a
mirror (``ZOO_WEIGHTS_MIRROR``) with its manifest (``ZOO_WEIGHTS_MANIFEST``) and a Hugging Face
hub-style repository. Fresh processes with empty caches, offline, behind a guard that refuses every
socket connection, rebuild the trained model by name bit-exactly, from the mirror and from
huggingface_hub's own cache (filled through its own download from a local stand-in of the Hub,
:mod:`hub_server`). Tampered or truncated published files are refused; every bad input is one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

import zoo
from zoo.cli import main
from zoo.cli._errors import EXIT_USER_ERROR
from zoo.weights.errors import IntegrityError, UnknownWeightsError, WeightsNotFoundError
from zoo.weights.integrity import sha256_of

from hub_server import HubServer

TINY = ["model.backbone.name=mobilenetv2_035", "train.image_size=32", "train.epochs=1", "train.batch_size=4",
        "train.workers=0", "train.log_every=1"]
GROUPS = {"cat_and_co": ["chelsea", "coffee", "astronaut", "rocket"],
          "bikes": ["motorcycle_left", "motorcycle_right", "china", "flower"]}
NAME = "mobilenetv2_035.tinyshop"
HUB_REPO = f"zoo-test/{NAME}"

#: refuses and records every connection and name lookup of a fresh process (sitecustomize)
GUARD = """
import json, os, socket

def _refuse(what):
    def guard(*args, **kwargs):
        with open(os.environ["NET_GUARD_LOG"], "a") as f:
            f.write(json.dumps([what, repr(args[:2])]) + "\\n")
        raise OSError(f"network guard: {what} refused")
    return guard

socket.socket.connect = _refuse("connect")
socket.getaddrinfo = _refuse("getaddrinfo")
socket.create_connection = _refuse("create_connection")
"""

#: run in a fresh process: build NAME with pretrained=True; save its embeddings and logits of a fixed
#: input (with the test process's thread count: the same arithmetic), hash its tensors
LOAD = """
import hashlib, json, sys
import numpy as np, torch, zoo
from zoo.weights.env import cache_dir
torch.set_num_threads(int(sys.argv[4]))
model = zoo.create_model(sys.argv[1], pretrained=True).eval()
x = torch.linspace(-1, 1, 2 * 3 * 48 * 64).view(2, 3, 48, 64)
with torch.no_grad():
    out = model(x)
np.save(sys.argv[2], out["embedding"].numpy())
np.save(sys.argv[3], out["logits"].numpy())
h = hashlib.sha256()
for k, v in sorted(model.state_dict().items()):
    h.update(k.encode() + v.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
print(json.dumps({"entry": model.weights_entry, "labels": model.labels, "state": h.hexdigest(),
                  "zoo_cache": sorted(str(p) for p in cache_dir().rglob("*.safetensors"))}))
"""


def _state_hash(model) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode() + v.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _inputs() -> torch.Tensor:
    return torch.linspace(-1, 1, 2 * 3 * 48 * 64).view(2, 3, 48, 64)


def _outputs(model) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        out = model.eval()(_inputs())
    return out["embedding"].numpy(), out["logits"].numpy()


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
    out = tmp_path_factory.mktemp("runs") / "ft"
    argv = ["train", "default-finetune", *TINY, "--data", str(photos), "--val", str(photos), "--out", str(out),
            "--device", "cpu", "--no-pretrained", "--no-progress"]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def published(tmp_path_factory, run):
    to = tmp_path_factory.mktemp("published")
    argv = ["weights", "publish", str(run), "--name", NAME, "--to", str(to), "--license", "MIT",
            "--hub-repo", HUB_REPO, "--source-page", "https://example.org/tinyshop", "--paper", "none (a test)"]
    assert main(argv) == 0
    return to


@pytest.fixture(scope="module")
def trained(run) -> tuple[np.ndarray, np.ndarray, str]:
    """Embeddings, logits and tensor hash of the model the run folder rebuilds (the reference)."""
    model = zoo.create_model(str(run))
    return (*_outputs(model), _state_hash(model))


def _fresh_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    guard = tmp_path / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(GUARD)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ZOO_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(guard), env.get("PYTHONPATH", "")]),
        NET_GUARD_LOG=str(tmp_path / "net.log"),
        ZOO_OFFLINE="1", ZOO_NO_PROGRESS="1", NO_ALBUMENTATIONS_UPDATE="1",
        ZOO_CACHE_DIR=str(tmp_path / "zoo-cache"),  # empty
        HF_HUB_CACHE=str(tmp_path / "hf-cache"),  # empty unless a test fills it
    )
    env.update(extra)
    return env


def _load_fresh(env: dict[str, str], tmp_path: Path, name: str = NAME) -> tuple[np.ndarray, np.ndarray, dict]:
    emb, logits = tmp_path / "emb.npy", tmp_path / "logits.npy"
    argv = [sys.executable, "-c", textwrap.dedent(LOAD), name, str(emb), str(logits), str(torch.get_num_threads())]
    res = subprocess.run(argv, env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    log = Path(env["NET_GUARD_LOG"])
    assert not log.is_file(), f"the network was reached: {log.read_text()}"
    return np.load(emb), np.load(logits), json.loads(res.stdout.strip().splitlines()[-1])


def _entry(published: Path) -> dict:
    return yaml.safe_load((published / "weights_manifest.yaml").read_text())["weights"][NAME]


# -- what publish writes ----------------------------------------------------------------------------------
def test_the_entry_describes_the_trained_model(published, run):
    entry = _entry(published)
    file = published / f"{NAME}.safetensors"
    assert entry["files"] == [{"name": file.name, "sha256": sha256_of(file), "size": file.stat().st_size,
                               "sources": [f"hf-hub:{HUB_REPO}/model.safetensors"]}]
    assert entry["recipe"] == "default-finetune" and entry["load"] == {"into": "model"} and entry["default"] is False
    assert entry["config"]["model"]["head"]["num_classes"] == 2  # the trained head, not the recipe's 1000
    assert entry["config"] == json.loads((run / "config.json").read_text())
    assert entry["labels"] == ["bikes", "cat_and_co"] and entry["num_classes"] == 2
    run_model = zoo.create_model(str(run))
    assert entry["preprocess"] == run_model.data_config.to_dict()
    assert entry["embedding_dim"] == run_model.embedding_dim
    assert (entry["license"], entry["paper"], entry["source_page"]) == ("MIT", "none (a test)", "https://example.org/tinyshop")
    # the run's validation record of the published (last, selected) epoch
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    last_val = [r for r in records if r["kind"] == "val"][-1]
    validation = entry["metrics"]["validation"]
    assert validation["epoch"] == 1 and validation["global_step"] == last_val["global_step"]
    assert all(validation[k] == last_val[k] for k in validation)
    # the file holds exactly the run's tensors, and still describes its model
    assert set(load_file(str(file))) == set(load_file(str(run / "model.safetensors")))
    assert all(torch.equal(a, load_file(str(run / "model.safetensors"))[k]) for k, a in load_file(str(file)).items())
    with safe_open(str(file), framework="pt") as f:
        meta = f.metadata()
    assert meta["zoo_weights"] == NAME and json.loads(meta["zoo_labels"]) == ["bikes", "cat_and_co"]
    assert meta["source_sha256"] == sha256_of(run / "model.safetensors")


def test_the_folder_is_a_hub_style_repository(published):
    from huggingface_hub import ModelCard

    repo = published / NAME
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "config.json", "model.safetensors", "weights_manifest.yaml"]
    assert (repo / "model.safetensors").read_bytes() == (published / f"{NAME}.safetensors").read_bytes()
    config = json.loads((repo / "config.json").read_text())
    entry = _entry(published)
    assert config["library_name"] == "zoo" and config["weights"] == NAME
    assert config["config"] == entry["config"] and config["labels"] == entry["labels"]
    assert config["pretrained_cfg"]["num_features"] == entry["embedding_dim"]
    card = ModelCard.load(repo / "README.md")
    assert card.data.license == "mit" and card.data.library_name == "zoo"
    assert entry["files"][0]["sha256"] in card.text and f'zoo.create_model("{NAME}", pretrained=True)' in card.text
    alone = yaml.safe_load((repo / "weights_manifest.yaml").read_text())
    assert alone == {"schema_version": 1, "weights": {NAME: entry}}


def test_publishing_the_same_run_again_gives_the_same_bytes(published, run, tmp_path):
    assert main(["weights", "publish", str(run), "--name", NAME, "--to", str(tmp_path), "--license", "MIT",
                 "--hub-repo", HUB_REPO, "--source-page", "https://example.org/tinyshop", "--paper", "none (a test)"]) == 0
    assert sha256_of(tmp_path / f"{NAME}.safetensors") == sha256_of(published / f"{NAME}.safetensors")
    assert (tmp_path / "weights_manifest.yaml").read_text() == (published / "weights_manifest.yaml").read_text()


# -- loading by name elsewhere ------------------------------------------------------------------------------
def test_by_name_in_a_fresh_process_offline_from_the_mirror(published, trained, tmp_path):
    env = _fresh_env(tmp_path, ZOO_WEIGHTS_MANIFEST=str(published / "weights_manifest.yaml"),
                     ZOO_WEIGHTS_MIRROR=str(published))
    emb, logits, info = _load_fresh(env, tmp_path)
    assert info.pop("state") == trained[2]  # bit-exact tensors
    assert np.array_equal(emb, trained[0]) and np.array_equal(logits, trained[1])
    assert info == {"entry": NAME, "labels": ["bikes", "cat_and_co"], "zoo_cache": []}  # read in place


def test_hub_layout_through_huggingface_hub_then_offline(published, trained, tmp_path, monkeypatch):
    """huggingface_hub downloads the hub-style folder from a local Hub into its own cache; a fresh
    process then loads it offline (HF_HUB_OFFLINE through ZOO_OFFLINE) from that cache alone."""
    from huggingface_hub import constants

    from zoo.weights.catalog import read_manifest_cached
    from zoo.weights.resolve import fetch_entry

    hf_cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    monkeypatch.delenv("ZOO_WEIGHTS_MIRROR", raising=False)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "zoo-cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    entry = read_manifest_cached(published / "weights_manifest.yaml")[NAME]
    sha = entry.files[0].sha256
    with HubServer(published) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        (path,) = fetch_entry(entry)
        assert hub.requests == [f"/{HUB_REPO}/resolve/main/model.safetensors"]
    # huggingface_hub's own layout: blobs named by the ETag (the sha256), a snapshot per commit
    storage = hf_cache / f"models--{HUB_REPO.replace('/', '--')}"
    assert path.parent.parent == storage / "snapshots" and (storage / "blobs" / sha).is_file()
    assert (storage / "refs" / "main").is_file() and not list((tmp_path / "zoo-cache").rglob("*.safetensors"))

    env = _fresh_env(tmp_path, ZOO_WEIGHTS_MANIFEST=str(published / "weights_manifest.yaml"), HF_HUB_CACHE=str(hf_cache))
    emb, logits, info = _load_fresh(env, tmp_path)  # no server, no mirror, guard on
    assert info["state"] == trained[2]
    assert np.array_equal(emb, trained[0]) and np.array_equal(logits, trained[1])
    assert info["zoo_cache"] == [] and info["entry"] == NAME


def test_tampered_copies_in_the_hugging_face_cache_are_refused_offline_and_fetched_again_online(
    published, tmp_path, monkeypatch
):
    from huggingface_hub import constants

    from zoo.weights.catalog import read_manifest_cached
    from zoo.weights.resolve import fetch_entry

    hf_cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    monkeypatch.delenv("ZOO_WEIGHTS_MIRROR", raising=False)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "zoo-cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    entry = read_manifest_cached(published / "weights_manifest.yaml")[NAME]
    with HubServer(published) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        (path,) = fetch_entry(entry)
        blob = path.resolve()
        data = bytearray(blob.read_bytes())
        data[-1] ^= 0xFF  # same size, other bytes
        blob.write_bytes(bytes(data))
        monkeypatch.setenv("ZOO_OFFLINE", "1")
        with pytest.raises(IntegrityError, match="tampered") as exc:
            fetch_entry(entry)
        assert "ZOO_OFFLINE=1" in str(exc.value) and entry.files[0].sha256 in str(exc.value)
        assert len(hub.requests) == 1  # offline: nothing asked
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("ZOO_OFFLINE", "0")
        (again,) = fetch_entry(entry)  # online: the bad copy is downloaded again, then checked
        assert sha256_of(again) == entry.files[0].sha256 and len(hub.requests) == 2


def test_a_tampered_hub_repository_is_refused(published, tmp_path, monkeypatch):
    import shutil

    from huggingface_hub import constants

    from zoo.weights.catalog import read_manifest_cached
    from zoo.weights.resolve import fetch_entry

    served = tmp_path / "served"
    shutil.copytree(published / NAME, served / NAME)
    data = bytearray((served / NAME / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (served / NAME / "model.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    monkeypatch.delenv("ZOO_WEIGHTS_MIRROR", raising=False)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "zoo-cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    entry = read_manifest_cached(published / "weights_manifest.yaml")[NAME]
    with HubServer(served) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        with pytest.raises(IntegrityError, match="tampered"):
            fetch_entry(entry)
        assert len(hub.requests) == 2  # downloaded, refused, downloaded again, refused


@pytest.mark.parametrize("damage", ["tampered", "truncated"])
def test_damaged_mirror_copies_are_refused(published, tmp_path, monkeypatch, damage):
    import shutil

    mirror = tmp_path / "mirror"
    shutil.copytree(published, mirror)
    target = mirror / f"{NAME}.safetensors"
    data = target.read_bytes()
    target.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]) if damage == "tampered" else data[: len(data) // 2])
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "zoo-cache"))
    monkeypatch.setenv("ZOO_WEIGHTS_MIRROR", str(mirror))
    monkeypatch.setenv("ZOO_WEIGHTS_MANIFEST", str(mirror / "weights_manifest.yaml"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(IntegrityError, match="tampered" if damage == "tampered" else "truncated") as exc:
        zoo.create_model(NAME, pretrained=True)
    assert str(target) in str(exc.value)
    target.unlink()  # no copy at all: not found, naming every place searched
    with pytest.raises(WeightsNotFoundError, match="hf-hub:zoo-test"):
        zoo.create_model(NAME, pretrained=True)


# -- the recipe's default ----------------------------------------------------------------------------------
def test_a_default_entry_is_what_the_recipe_loads(run, trained, tmp_path, monkeypatch):
    """A run of a recipe that pins no weights, published with --default, is what
    zoo.create_model(RECIPE, pretrained=True) builds and loads (its own head and labels)."""
    from zoo.runs import read_checkpoint_info, save_run_weights

    recipe = tmp_path / "tinyft.yaml"
    recipe.write_text("extends: default-finetune\nweights: null\nmodel: {backbone: {name: mobilenetv2_035}}\n")
    info = read_checkpoint_info(run)
    config = json.loads(info.metadata["zoo_config"])
    config.update(name="tinyft", weights=None)
    derived = tmp_path / "tinyft-run"  # the run-folder contract, as zoo train writes it for this recipe
    save_run_weights(derived / "model.safetensors", load_file(str(run / "model.safetensors")), config, info.labels,
                     metadata={"global_step": info.metadata["global_step"]})
    to = tmp_path / "pub"
    assert main(["weights", "publish", str(derived), "--name", "mobilenetv2_035.tinyft", "--to", str(to),
                 "--license", "MIT", "--default"]) == 0
    entry = yaml.safe_load((to / "weights_manifest.yaml").read_text())["weights"]["mobilenetv2_035.tinyft"]
    assert entry["default"] is True and entry["files"][0]["sources"] == [(to / "mobilenetv2_035.tinyft.safetensors").resolve().as_uri()]
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "zoo-cache"))
    monkeypatch.setenv("ZOO_WEIGHTS_MANIFEST", str(to / "weights_manifest.yaml"))
    monkeypatch.delenv("ZOO_WEIGHTS_MIRROR", raising=False)
    model = zoo.create_model(str(recipe), pretrained=True)
    emb, logits = _outputs(model)
    assert _state_hash(model) == trained[2]
    assert np.array_equal(emb, trained[0]) and np.array_equal(logits, trained[1])
    assert model.weights_entry == "mobilenetv2_035.tinyft" and model.labels == ["bikes", "cat_and_co"]
    assert model.recipe_cfg.model.head.num_classes == 2


# -- one clear line for each bad input ---------------------------------------------------------------------
def _publish_error(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(["weights", "publish", *argv]) == EXIT_USER_ERROR
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo weights: error: "), lines
    return lines[0]


def test_bad_inputs_are_one_line_each(published, run, tmp_path, capsys):
    ok = ["--to", str(tmp_path / "out"), "--license", "MIT"]
    assert "run folder" in _publish_error(capsys, str(tmp_path / "nowhere"), "--name", "a.b", *ok)
    assert "does not exist" in _publish_error(capsys, str(tmp_path / "nowhere"), "--name", "a.b", *ok)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "has no model.safetensors" in _publish_error(capsys, str(empty), "--name", "a.b", *ok)
    assert "ARCH.TAG" in _publish_error(capsys, str(run), "--name", "nodot", *ok)
    assert "ARCH.TAG" in _publish_error(capsys, str(run), "--name", "a/b.c", *ok)
    err = _publish_error(capsys, str(run), "--name", NAME, "--to", str(published), "--license", "MIT")
    assert "already published" in err and "--overwrite" in err
    err = _publish_error(capsys, str(run), "--name", "tf_efficientnet_lite0.in1k", *ok)
    assert "already listed" in err and "another tag" in err
    err = _publish_error(capsys, str(run), "--name", "a.b", "--weights", "best", *ok)
    assert "--weights best" in err and "selection.json" in err
    assert "no such file" in _publish_error(capsys, str(run), "--name", "a.b", "--weights", "nope.safetensors", *ok)
    assert "--hub-repo" in _publish_error(capsys, str(run), "--name", "a.b", "--hub-repo", "bad--repo/x", *ok)
    assert "ORG/REPO" in _publish_error(capsys, str(run), "--name", "a.b", "--hub-repo", "norepo", *ok)
    assert "--source" in _publish_error(capsys, str(run), "--name", "a.b", "--source", "ftp://x/y", *ok)
    err = _publish_error(capsys, str(run), "--name", "mobilenetv2_035.x", "--default", *ok)
    assert "--default" in err and "tf_efficientnet_lite0.in1k" in err  # default-finetune pins its weights
    assert "is a file" in _publish_error(capsys, str(run), "--name", "a.b", "--to", str(run / "config.json"), "--license", "MIT")
    assert not (tmp_path / "out").exists()  # nothing written by a refused publish


def test_overwrite_replaces_an_entry(published, run, tmp_path):
    import shutil

    to = tmp_path / "again"
    shutil.copytree(published, to)
    assert main(["weights", "publish", str(run), "--name", NAME, "--to", str(to), "--license", "Apache-2.0",
                 "--overwrite"]) == 0
    entry = yaml.safe_load((to / "weights_manifest.yaml").read_text())["weights"][NAME]
    assert entry["license"] == "Apache-2.0" and "hf-hub:" not in str(entry["files"][0]["sources"])


def test_an_unknown_weights_name_names_close_matches():
    with pytest.raises(UnknownWeightsError, match="tf_efficientnet_lite0.in1k"):
        zoo.create_model("tf_efficientnet_lite0.in2k", pretrained=True)
