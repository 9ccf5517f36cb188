"""Training datasets: label-map alignment, unreadable images skipped and reported through a real
DataLoader with workers, odd colour modes converted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from zoo.data.dataset import ImageDataset, SkipReport, collate
from zoo.data.images import DataError, ImageRecord, list_images
from zoo.data.labels import LabelMap, label_sort_key


# -- label map --------------------------------------------------------------------------------------
def test_label_map_sorts_numeric_labels_numerically_and_counts_align():
    # ids appear out of sorted order (the top-100 misalignment case): 10 first, then 2, then 7
    labels = ["10", "2", "10", "7", "2", "10", "b", "a"]
    lm = LabelMap.from_labels(labels)
    assert lm.names == ["2", "7", "10", "a", "b"]
    assert [lm.index(v) for v in ("2", "7", "10", "a", "b")] == [0, 1, 2, 3, 4]
    counts = lm.counts(labels)
    assert counts.tolist() == [2, 1, 3, 1, 1]
    # counts[i] is the number of images whose target is i, for every i
    targets = lm.encode(labels)
    assert np.array_equal(np.bincount(targets, minlength=len(lm)), counts)
    # order-of-appearance indexing (the upstream bug) would give different counts per index
    appearance = list(dict.fromkeys(labels))
    assert [labels.count(a) for a in appearance] != counts.tolist()


def test_label_map_roundtrip_and_errors(tmp_path):
    lm = LabelMap.from_labels([3, 1, 20, 1])
    path = lm.save(tmp_path / "run" / "labels.json")
    data = json.loads(path.read_text())
    assert data["labels"] == ["1", "3", "20"] and data["num_classes"] == 3
    assert LabelMap.load(path) == lm
    assert not list((tmp_path / "run").glob(".*.tmp")), "atomic write leaves no temp file"
    with pytest.raises(DataError, match="not in the label map"):
        lm.index("99")
    assert lm.encode(["1", "99"], unknown=-1).tolist() == [0, -1]
    with pytest.raises(DataError, match="not found"):
        LabelMap.load(tmp_path / "missing.json")
    with pytest.raises(DataError, match="appears twice"):
        LabelMap(["a", "a"])
    assert label_sort_key("9") < label_sort_key("10") < label_sort_key("abc")


def test_counts_from_records_aligned_with_dataset_targets(photo_paths):
    labels = ["5", "100", "5", "42", "100", "100"]
    recs = [ImageRecord(f"i{i}", photo_paths["rocket"], lab) for i, lab in enumerate(labels)]
    ds = ImageDataset(recs)
    counts = ds.class_counts()
    assert ds.label_map.names == ["5", "42", "100"]
    assert counts.tolist() == [2, 1, 3]
    assert np.array_equal(np.bincount(ds.targets, minlength=3), counts)


# -- unreadable / odd images through a DataLoader ---------------------------------------------------
@pytest.fixture()
def mixed_dir(photo_dir, photo_paths):
    """Real photos plus corrupt, truncated, grayscale, CMYK and RGBA-PNG files."""
    Image.open(photo_paths["coffee"]).convert("L").save(photo_dir / "gray.jpg")
    Image.open(photo_paths["china"]).convert("CMYK").save(photo_dir / "cmyk.jpg")
    rgba = Image.open(photo_paths["astronaut"]).convert("RGBA")
    alpha = np.zeros(rgba.size[::-1], dtype=np.uint8)
    alpha[:, : rgba.size[0] // 2] = 255  # right half fully transparent
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(photo_dir / "alpha.png")
    return photo_dir


def test_unreadable_images_are_skipped_and_reported_through_two_workers(mixed_dir, tmp_path):
    records = list_images(mixed_dir)
    records = [ImageRecord(r.id, r.path, "x" if i % 2 else "y") for i, r in enumerate(records)]
    records.append(ImageRecord("gone", mixed_dir / "missing.jpg", "x"))
    from zoo.plugins import load_registry

    pipe = load_registry(strict=True, only=("augment",)).create("augmentation", "glr2020_train", 32)
    ds = ImageDataset(records, transform=pipe, max_side=64)
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate, shuffle=False)
    report = SkipReport()
    seen: list[int] = []
    for batch in loader:
        report.add_batch(batch["skipped"])
        if batch["image"] is not None:
            assert batch["image"].shape[1:] == (3, 32, 32) and batch["image"].dtype == torch.float32
            assert torch.isfinite(batch["image"]).all()
            assert batch["target"].dtype == torch.int64
            seen += batch["index"].tolist()
    bad = {"corrupt.jpg", "truncated.jpg", "missing.jpg"}
    assert {p.split("/")[-1] for p in (r["path"] for r in report.rows())} == bad
    good_names = {r.path.name for i, r in enumerate(records) if i in seen}
    assert good_names == {r.path.name for r in records} - bad
    assert {"gray.jpg", "cmyk.jpg", "alpha.png"} <= good_names  # converted, not skipped
    out = report.write(tmp_path / "skipped.json")
    data = json.loads(out.read_text())
    assert data["count"] == 3 and all(r["error"] for r in data["skipped"])
    csv_path = report.write(tmp_path / "skipped.csv")
    assert len(SkipReport.read(csv_path)) == 3
    assert "3 unreadable" in report.summary()


def test_odd_colour_modes_become_rgb(mixed_dir):
    recs = [ImageRecord(n, mixed_dir / n, "a") for n in ("gray.jpg", "cmyk.jpg", "alpha.png")]
    ds = ImageDataset(recs)
    for i in range(3):
        item = ds[i]
        x = item["image"]
        assert x.ndim == 3 and x.shape[0] == 3 and 0 <= float(x.min()) and float(x.max()) <= 1
    gray = ds[0]["image"]
    assert torch.allclose(gray[0], gray[1]) and torch.allclose(gray[1], gray[2])
    alpha = ds[2]["image"]
    w = alpha.shape[2]
    assert torch.all(alpha[:, :, w - 10:] == 1.0), "transparent pixels are composited on white"


def test_collate_all_skipped_and_report_merge():
    batch = collate([{"error": "bad", "index": 3, "path": "a.jpg"}, None])
    assert batch["image"] is None and batch["skipped"] == [{"index": 3, "path": "a.jpg", "error": "bad"}]
    a, b = SkipReport(), SkipReport()
    a.add(3, "a.jpg", "bad")
    b.add(3, "a.jpg", "bad")
    b.add(4, "b.jpg", "worse")
    a.merge(b)
    assert [(r["path"], r["count"]) for r in a.rows()] == [("a.jpg", 2), ("b.jpg", 1)]


def test_unknown_labels_get_minus_one(photo_paths):
    train = LabelMap.from_labels(["1", "2"])
    ds = ImageDataset([ImageRecord("q", photo_paths["rocket"], "3"), ImageRecord("k", photo_paths["rocket"], "2")],
                      label_map=train)
    assert ds.targets.tolist() == [-1, 1]
    assert int(ds[0]["target"]) == -1
