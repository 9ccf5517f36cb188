"""What the commands print: whole descriptions, --json everywhere, metrics, the index folder, the version."""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import shutil
from pathlib import Path

import pytest

import zoo
from zoo.cli import build_parser, main

TINY = ["--no-pretrained", "--allow-random-weights", "model.backbone.name=mobilenetv2_035", "data.image_size=64", "--device", "cpu",
        "--workers", "0", "--no-progress"]
#: listing and reporting commands: each has --json
JSON_COMMANDS = [["recipes"], ["components"], ["info"], ["plugins"], ["evaluate"], ["embed"], ["index"], ["search"],
                 ["retrieve"], ["recognize"], ["demo"], ["export"], ["train"], ["weights", "list"],
                 ["weights", "verify"]]


def test_components_show_whole_descriptions(registry, capsys):
    assert main(["components", "postprocessor"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for entry in registry.entries("postprocessor"):
        assert " ".join(entry.description.split()) in out, f"{entry.name}: description cut"
    assert any(len(e.description) > 70 for e in registry.entries("postprocessor"))


@pytest.mark.parametrize("argv", JSON_COMMANDS, ids=" ".join)
def test_every_listing_and_reporting_command_has_json(argv):
    parser = build_parser()
    sub = parser
    for name in argv:
        sub = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction").choices[name]
    assert "--json" in sub.format_help()


def test_recipes_and_info_json(capsys):
    assert main(["recipes", "default*", "--json"]) == 0
    recipes = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert recipes["default"]["plugin"] == "recipes" and "EfficientNet-Lite2" in recipes["default"]["description"]
    assert main(["info", "default", "model.pooling.type=avg", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["model"]["pooling"] == {"type": "avg"} and "model.pooling.type" in info["keys"]


def test_index_output_is_a_folder_and_a_file_name_is_refused(capsys):
    assert main(["index", "emb/", "--out", "gallery.faiss"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "a zoo index is a folder" in err and "--out gallery/" in err
    help_text = " ".join(_help("index").split())
    assert "--out DIR" in help_text and "not a single .faiss file" in help_text


def test_search_writes_neighbours_csv_by_default():
    assert build_parser().parse_args(["search", "index/", "--query", "emb/"]).out == "neighbours.csv"


def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[command]
    return sub.format_help()


@pytest.fixture(scope="module")
def labelled_embeddings(tmp_path_factory, photo_paths):
    """``zoo embed`` of an image-folder tree (labels = sub-folders): 4 instances x 2 views."""
    from PIL import Image, ImageOps

    root = tmp_path_factory.mktemp("labelled")
    for name in ("chelsea", "coffee", "rocket", "china"):
        img = Image.open(photo_paths[name]).convert("RGB")
        img.thumbnail((128, 128))
        (root / "tree" / name).mkdir(parents=True)
        img.save(root / "tree" / name / "a.jpg")
        ImageOps.mirror(img).save(root / "tree" / name / "b.jpg")
    assert main(["embed", "default", "--images", str(root / "tree"), "--out", str(root / "emb"), *TINY]) == 0
    return root


def test_retrieve_on_a_labelled_embeddings_folder_prints_metrics(labelled_embeddings, capsys):
    emb = labelled_embeddings / "emb"
    capsys.readouterr()
    assert main(["retrieve", "default", "--index", str(emb), "--query", str(emb),
                 "--out", str(labelled_embeddings / "r.csv")]) == 0
    out = capsys.readouterr().out
    assert "each query itself left out" in out and re.search(r"^mAP@100\s+\d\.\d{4}$", out, re.MULTILINE), out
    assert main(["retrieve", "default", "--index", str(emb), "--query", str(emb), "--json",
                 "--out", str(labelled_embeddings / "r.csv")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["queries"] == 8 and set(summary["metrics"]) >= {"mAP@100", "R@1"}


def test_labels_are_not_guessed_when_the_images_are_gone(labelled_embeddings, tmp_path, capsys):
    emb = tmp_path / "emb"
    shutil.copytree(labelled_embeddings / "emb", emb)
    manifest = json.loads((emb / "manifest.json").read_text())
    manifest["images"] = str(tmp_path / "moved-away")
    (emb / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["retrieve", "default", "--index", str(emb), "--query", str(emb), "--out", str(tmp_path / "r.csv")]) == 0
    assert "no metrics: query and index images need labels" in capsys.readouterr().out


def test_version_comes_from_package_metadata(monkeypatch):
    from zoo import _read_version

    assert zoo.__version__ == md.version("instance-zoo")

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "version", missing)
    pyproject = (Path(zoo.__file__).resolve().parents[1] / "pyproject.toml").read_text()
    expected = re.search(r'^version\s*=\s*"([^"]+)"', pyproject, re.MULTILINE).group(1)
    assert _read_version() == f"{expected}+source"
