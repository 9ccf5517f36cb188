"""The user journeys, end to end on real photos, each step driven through the CLI as a user types it.

Each journey feeds every step's output to the next one unchanged (the run folder to ``zoo embed``,
the embeddings to ``zoo index``, the index to ``zoo search`` ...) and checks real things: metrics in
range and equal wherever two commands compute the same figure, ids, exported descriptors equal to
``zoo embed``'s, and refusals where vectors of different models would be mixed. Only tiny settings
are added (small images, one epoch, a few products); the commands are the README's.

* fine-tune journey (``../shared/data/grocery-store``): ``zoo train default-finetune`` on 4 products ->
  ``zoo embed runs/ft`` on 5 other products -> ``zoo index`` -> ``zoo search`` -> ``zoo retrieve`` ->
  ``zoo evaluate`` -> ``zoo export`` -> the TorchScript file gives ``zoo embed``'s descriptors;
* retrieval journey (``../shared/data/instance-eval``): ``zoo embed default`` -> ``zoo index`` ->
  ``zoo search`` -> ``zoo retrieve`` (embeddings and index folder) -> ``zoo evaluate``;
* recognition journey (grocery-store): ``zoo recognize default`` from images and from ``zoo embed``
  folders -> ``zoo evaluate``.

Marked ``realdata`` (skipped only when the data set is absent) and ``slow``.
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from zoo.cli import main

REPO = Path(__file__).resolve().parents[1]
GROCERY = Path(os.environ.get("ZOO_GROCERY_STORE", REPO.parent / "shared" / "data" / "grocery-store"))
#: the tiny settings the journeys add (the commands are otherwise the README's)
FAST = ["--device", "cpu", "--workers", "0", "--no-progress"]
SMALL = "data.image_size=160"

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.fixture(scope="module")
def grocery() -> Path:
    if not (GROCERY / "labels.csv").is_file():
        pytest.skip(f"grocery-store data set not found at {GROCERY}")
    return GROCERY


def products(grocery: Path, skus: str, split: str, n_products: int, per_product: int) -> list[tuple[str, str]]:
    """``(path, product)`` rows: the first ``n_products`` products of ``protocol/<skus>.txt`` (sorted),
    the first ``per_product`` photos of ``split`` of each (sorted by path)."""
    names = sorted((grocery / "protocol" / f"{skus}.txt").read_text().split())[:n_products]
    by: dict[str, list[str]] = defaultdict(list)
    with open(grocery / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["instance"] in names and row["split"] == split:
                by[row["instance"]].append(row["path"])
    return [(p, name) for name in names for p in sorted(by[name])[:per_product]]


def write_labels(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "instance"])
        w.writerows(rows)
    return path


def zoo(capsys, *argv: str) -> str:
    """Run ``zoo ARGV`` (exit 0 required); returns what it printed."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, f"zoo {' '.join(map(str, argv))} -> exit {rc}\n{out}\n{err[-3000:]}"
    return out


def refused(capsys, *argv: str) -> str:
    """Run ``zoo ARGV``, which must fail as a user error (exit 1) with one line; returns the line."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err, f"zoo {' '.join(map(str, argv))} -> exit {rc}, expected a refusal"
    return err[-1]


def metric(text: str, name: str) -> float:
    """A value of a printed ``metric  value`` table."""
    return float(next(line.split()[1] for line in text.splitlines() if line.split()[:1] == [name]))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_finetune_journey(grocery, tmp_path, monkeypatch, capsys):
    """train -> embed with the run -> index -> search -> retrieve -> evaluate -> export -> load the export."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    train_csv = write_labels(tmp_path / "train.csv", products(grocery, "train_skus", "train", 4, 6))
    test_rows = products(grocery, "heldout_skus", "test", 5, 4)
    test_csv = write_labels(tmp_path / "test.csv", test_rows)

    out = zoo(capsys, "train", "default-finetune", "--data", train_csv, "--images", grocery, "--out", "runs/ft",
              "train.epochs=1", "train.batch_size=8", "train.image_size=64", *FAST)
    assert "trained default-finetune" in out
    assert json.loads(Path("runs/ft/labels.json").read_text())["labels"] == sorted({p for _, p in read_csv_rows(train_csv)})

    zoo(capsys, "embed", "runs/ft", "--images", test_csv, "--image-root", grocery, "--out", "emb/", SMALL, *FAST)
    manifest = json.loads(Path("emb/manifest.json").read_text())
    assert manifest["recipe"] == "default-finetune" and manifest["identity"]["weights"].startswith("sha256:")
    zoo(capsys, "index", "emb/", "--out", "index/", "--no-progress")
    zoo(capsys, "search", "index/", "--query", "emb/", "-k", "5", "--out", "neighbours.csv", "--no-progress")
    rows = read_csv(Path("neighbours.csv"))
    ids = [p for p, _ in test_rows]
    assert [r["id"] for r in rows] == ids
    for r in rows:  # query = index: every image finds itself first
        assert r["images"].split()[0] == r["id"] and float(r["scores"].split()[0]) == pytest.approx(1.0, abs=1e-4)

    out = zoo(capsys, "retrieve", "runs/ft", "--index", "emb/", "--query", "emb/", "--out", "retrieval.csv", *FAST)
    m_ap, r1 = metric(out, "mAP@100"), metric(out, "R@1")
    assert 0.2 < m_ap <= 1.0 and 0.2 < r1 <= 1.0  # 5 unseen products, 4 photos each (chance: mAP ~0.2)
    ranked = read_csv(Path("retrieval.csv"))
    assert [r["id"] for r in ranked] == ids and all(r["id"] not in r["images"].split() for r in ranked)
    out = zoo(capsys, "evaluate", "retrieval.csv", test_csv)
    assert metric(out, "map@100") == pytest.approx(m_ap, abs=1e-4)
    assert metric(out, "recall@1") == pytest.approx(r1, abs=1e-4)
    # the index folder built from emb/ answers the same (each query left out) with the same metrics
    out = zoo(capsys, "retrieve", "runs/ft", "--index", "index/", "--query", "emb/", "--out", "r-index.csv", *FAST)
    assert [r["images"].split()[:3] for r in read_csv(Path("r-index.csv"))] == \
        [r["images"].split()[:3] for r in ranked]
    assert metric(out, "mAP@100") == pytest.approx(m_ap, abs=1e-4) and metric(out, "R@1") == pytest.approx(r1, abs=1e-4)

    # vectors of another model (the untrained default) are refused, naming both and the flag
    zoo(capsys, "embed", "default", "--images", test_csv, "--image-root", grocery, "--out", "emb-default/", SMALL, *FAST)
    for argv in (["search", "index/", "--query", "emb-default/", "--out", "x.csv"],
                 ["retrieve", "runs/ft", "--index", "emb/", "--query", "emb-default/", "--out", "x.csv", *FAST]):
        line = refused(capsys, *argv)
        assert "different models" in line and "default-finetune" in line and "--allow-mixed-models" in line
    assert not Path("x.csv").exists()

    photos = [grocery / p for p in ids[:3]]
    out = zoo(capsys, "export", "runs/ft", "--format", "torchscript", "--out", "ft.pt", SMALL, "--photos", *photos)
    assert "against zoo embed" in out
    import torch

    from zoo.data.images import read_image
    from zoo.inference.shards import EmbeddingStore

    exported = torch.jit.load("ft.pt").eval()
    emb_ids, emb = EmbeddingStore("emb").load()
    by_id = dict(zip(emb_ids, emb))
    for p in ids[::3]:
        x = torch.from_numpy(read_image(grocery / p).copy()).permute(2, 0, 1).unsqueeze(0).contiguous()
        with torch.no_grad():
            d = exported(x)[0].numpy()
        assert float(d @ by_id[p]) >= 0.999, p


def read_csv_rows(path: Path) -> list[tuple[str, str]]:
    return [(r["path"], r["instance"]) for r in read_csv(path)]


def test_retrieval_journey_on_instance_eval(instance_eval, tmp_path, monkeypatch, capsys):
    """The off-the-shelf default: embed -> index -> search -> retrieve -> evaluate on instance-eval."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    labels = instance_eval / "labels.csv"
    zoo(capsys, "embed", "default", "--images", labels, "--out", "emb/", SMALL, *FAST)
    n = len(read_csv(labels))
    zoo(capsys, "index", "emb/", "--out", "index/", "--no-progress")
    zoo(capsys, "search", "index/", "--query", "emb/", "-k", "10", "--out", "neighbours.csv", "--no-progress")
    rows = read_csv(Path("neighbours.csv"))
    assert len(rows) == n and all(len(r["images"].split()) == 10 for r in rows)
    out = zoo(capsys, "retrieve", "default", "--index", "emb/", "--query", "emb/", "--out", "retrieval.csv", *FAST)
    m_ap = metric(out, "mAP@100")
    assert 0.5 < m_ap <= 1.0 and 0.5 < metric(out, "R@1") <= 1.0  # real ImageNet weights at 160 px: 0.66, 0.62
    out = zoo(capsys, "evaluate", "retrieval.csv", labels)
    assert metric(out, "map@100") == pytest.approx(m_ap, abs=1e-4)
    # the search and the retrieval agree on every query's best other image
    best = {r["id"]: next(i for i in r["images"].split() if i != r["id"]) for r in rows}
    assert all(r["images"].split()[0] == best[r["id"]] for r in read_csv(Path("retrieval.csv")))


def test_recognition_journey(grocery, tmp_path, monkeypatch, capsys):
    """recognize from images and from zoo embed folders -> the same GAP as zoo evaluate."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    train_csv = write_labels(tmp_path / "train.csv", products(grocery, "heldout_skus", "train", 5, 6))
    test_csv = write_labels(tmp_path / "test.csv", products(grocery, "heldout_skus", "test", 5, 4))
    out = zoo(capsys, "recognize", "default", "--train", train_csv, "--test", test_csv, "--image-root", grocery,
              "--test-labels", test_csv, "--out", "submission.csv", SMALL, *FAST)
    gap = metric(out, "gap")
    assert 0.3 < gap <= 1.0  # 5 products (chance ~0.2 at best)
    sub = read_csv(Path("submission.csv"))
    assert [r["id"] for r in sub] == [p for p, _ in read_csv_rows(test_csv)]
    names = {p for _, p in read_csv_rows(train_csv)}
    assert all(r["landmarks"].split()[0] in names and 0 < float(r["landmarks"].split()[1]) <= 1 for r in sub)
    out = zoo(capsys, "evaluate", "submission.csv", test_csv)
    assert metric(out, "gap") == pytest.approx(gap, abs=1e-4)
    # the same from zoo embed folders (labels read back from the CSVs they record)
    zoo(capsys, "embed", "default", "--images", train_csv, "--image-root", grocery, "--out", "train_emb/", SMALL, *FAST)
    zoo(capsys, "embed", "default", "--images", test_csv, "--image-root", grocery, "--out", "test_emb/", SMALL, *FAST)
    out = zoo(capsys, "recognize", "default", "--train", "train_emb/", "--test", "test_emb/", "--out", "sub-emb.csv")
    assert metric(out, "gap") == pytest.approx(gap, abs=1e-4)
    assert read_csv(Path("sub-emb.csv")) == sub
    # an embeddings folder of another preprocessing is another model's vectors: refused
    zoo(capsys, "embed", "default", "--images", test_csv, "--image-root", grocery, "--out", "test_emb_224/",
        "data.image_size=224", *FAST)
    line = refused(capsys, "recognize", "default", "--train", "train_emb/", "--test", "test_emb_224/", "--out", "x.csv")
    assert "preprocess differ" in line and "224" in line and "160" in line
    np.testing.assert_equal(Path("x.csv").exists(), False)
