"""Retrieval validation while training (issue 10): a class-disjoint ``--val`` set reports mAP@100, R@1 and
mP@5 every epoch, equal to what ``zoo embed`` + ``zoo retrieve`` + ``zoo evaluate`` give on the run's
weights; the run keeps the best epoch's weights (``model.safetensors``, what ``create_model(run)`` loads)
and the last epoch's (``last.safetensors``) and says which it selected."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from test_train_support import synthetic_images

TINY = ["model.backbone.name=mobilenetv2_035", "data.image_size=32", "train.image_size=32", "train.batch_size=4",
        "train.workers=0", "train.log_every=2", "train.lr=3e-3"]


def write_set(root: Path, name: str, n_classes: int, per_class: int, seed: int, first_label: int) -> Path:
    """JPEG files of class-structured synthetic images (48 x 40, so long-side resizing keeps a shape)
    and ``NAME.csv`` with ``path,instance`` (the instance-eval / grocery labels layout)."""
    images, labels = synthetic_images(n_classes=n_classes, per_class=per_class, size=48, seed=seed)
    rows = []
    for i, (img, lab) in enumerate(zip(images, labels)):
        rel = f"{name}/{first_label + lab - 100}/{i}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[:40]).save(root / rel, quality=95)
        rows.append((rel, f"item{first_label + lab - 100}"))
    csv_path = root / f"{name}.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "instance"])
        w.writerows(rows)
    return csv_path


@pytest.fixture()
def disjoint_sets(tmp_path):
    root = tmp_path / "data"
    train = write_set(root, "train", n_classes=4, per_class=6, seed=0, first_label=0)
    heldout = write_set(root, "heldout", n_classes=3, per_class=5, seed=1, first_label=10)
    return root, train, heldout


def cli_json(capsys, argv: list[str]) -> dict:
    from zoo.cli import main

    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def evaluate_weights(capsys, tmp_path: Path, weights: list[str], root: Path, heldout: Path, tag: str) -> dict:
    """The user's path: zoo embed -> zoo retrieve (plain ranking) -> zoo evaluate."""
    emb, sub = tmp_path / f"emb-{tag}", tmp_path / f"sub-{tag}.csv"
    cli_json(capsys, ["embed", *weights, "--images", str(heldout), "--image-root", str(root), "--out", str(emb),
                      "--device", "cpu", "--no-progress", "--json"])
    # both sides are embeddings folders: the recipe only names the (skipped) post-processing
    cli_json(capsys, ["retrieve", "default-finetune", "--index", str(emb), "--query", str(emb), "--out", str(sub),
                      "--no-postprocess", "--no-progress", "--json"])
    return cli_json(capsys, ["evaluate", str(sub), str(heldout), "--json", "--recall-k", "1"])["metrics"]


def test_retrieval_validation_equals_zoo_evaluate_and_keeps_best_and_last(tmp_path, disjoint_sets, capsys):
    """Each epoch's mAP@100 / R@1 / mP@5 is what zoo evaluate says of that epoch's weights, for the
    selected (model.safetensors, loaded from the run folder) and the last (last.safetensors) epoch."""
    root, train, heldout = disjoint_sets
    out = tmp_path / "run"
    # select the *worst* epoch, so the selected weights are (very likely) not the last ones
    res = cli_json(capsys, ["train", "default-finetune", *TINY, "train.epochs=3", "--select", "min:map@100",
                            "--data", str(train), "--images", str(root), "--val", str(heldout), "--out", str(out),
                            "--device", "cpu", "--no-pretrained", "--no-progress", "--json"])
    history = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"val"' in x]
    assert len(history) == 3
    for rec in history:
        assert {"map@100", "recall@1", "mp@5", "train_loss"} <= set(rec) and "gap" not in rec
        assert rec["val_queries"] == 15
    values = [r["map@100"] for r in history]
    worst = int(np.argmin(values))  # ties keep the earlier epoch
    selection = json.loads((out / "selection.json").read_text())
    assert selection["select"] == "map@100" and selection["mode"] == "min"
    assert selection["selected"]["epoch"] == worst + 1 and selection["selected"]["value"] == values[worst]
    assert selection["last"]["epoch"] == 3 and selection["last"]["file"] == "last.safetensors"
    assert res["selection"] == selection and res["last_weights"] == str(out / "last.safetensors")
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["zoo_selection"])["selected"]["epoch"] == worst + 1

    selected = evaluate_weights(capsys, tmp_path, [str(out)], root, heldout, "selected")  # create_model("runs/x")
    assert selected["map@100"] == pytest.approx(history[worst]["map@100"], abs=1e-9)
    assert selected["recall@1"] == pytest.approx(history[worst]["recall@1"], abs=1e-9)
    assert selected["mp@5"] == pytest.approx(history[worst]["mp@5"], abs=1e-9)
    last = evaluate_weights(capsys, tmp_path, ["--checkpoint", str(out / "last.safetensors")], root, heldout, "last")
    assert last["map@100"] == pytest.approx(history[-1]["map@100"], abs=1e-9)
    assert last["recall@1"] == pytest.approx(history[-1]["recall@1"], abs=1e-9)
    assert (out / "curves.png").stat().st_size > 0


def test_query_gallery_pair_and_classification_stay_for_trained_classes(tmp_path, disjoint_sets, capsys):
    """--val GALLERY --val-query QUERIES ranks the gallery for each query (no self-exclusion); a --val
    of trained classes keeps GAP/accuracy and, by default, selects the last epoch."""
    root, train, heldout = disjoint_sets
    rows = list(csv.reader(open(heldout)))
    header, body = rows[0], rows[1:]
    query, gallery = tmp_path / "q.csv", tmp_path / "g.csv"
    for path, part in ((query, body[::5]), (gallery, [r for i, r in enumerate(body) if i % 5])):
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([header, *part])
    out = tmp_path / "pair"
    cli_json(capsys, ["train", "default-finetune", *TINY, "train.epochs=1", "--data", str(train), "--images", str(root),
                      "--val", str(gallery), "--val-query", str(query), "--out", str(out), "--device", "cpu",
                      "--no-pretrained", "--no-progress", "--json"])
    rec = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"val"' in x][-1]
    assert rec["val_queries"] == 3 and "map@100" in rec and "gap" not in rec
    emb_q, emb_g, sub = tmp_path / "eq", tmp_path / "eg", tmp_path / "sub.csv"
    for src, emb in ((query, emb_q), (gallery, emb_g)):
        cli_json(capsys, ["embed", str(out), "--images", str(src), "--image-root", str(root), "--out", str(emb),
                          "--device", "cpu", "--no-progress", "--json"])
    got = cli_json(capsys, ["retrieve", "default-finetune", "--index", str(emb_g), "--query", str(emb_q), "--out", str(sub),
                            "--no-postprocess", "--no-progress", "--json"])["metrics"]
    assert got["mAP@100"] == pytest.approx(rec["map@100"], abs=1e-9)
    assert got["R@1"] == pytest.approx(rec["recall@1"], abs=1e-9)

    seen = tmp_path / "seen"
    cli_json(capsys, ["train", "default-finetune", *TINY, "train.epochs=1", "--data", str(train), "--images", str(root),
                      "--val", str(train), "--out", str(seen), "--device", "cpu", "--no-pretrained", "--no-progress",
                      "--json"])
    rec = [json.loads(x) for x in (seen / "metrics.jsonl").read_text().splitlines() if '"val"' in x][-1]
    assert 0.0 <= rec["gap"] <= 1.0 and "map@100" not in rec
    assert json.loads((seen / "selection.json").read_text())["select"] == "last"
    assert not (seen / "last.safetensors").exists()
