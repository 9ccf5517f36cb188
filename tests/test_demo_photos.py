"""The photos bundled for ``zoo demo`` (``zoo/demo_photos``): a documented, deterministic subset of
``../shared/data/grocery-store``, byte-identical to it, shipped with its licence and citation.

The subset: for each of the 31 products (``kind=package``), its ``test`` photos sorted by path, and of
those the ones at positions ``i * n // 4`` for ``i = 0..3`` (four photos spread over the product's
sequence of shots, so they show different viewpoints rather than four near-duplicates). Running this
file as a script (``python tests/test_demo_photos.py ../shared/data/grocery-store``) rewrites the
bundle from the data set.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "zoo" / "demo_photos"
GROCERY = REPO.parent / "shared" / "data" / "grocery-store"
PER_PRODUCT = 4


def select_demo_photos(grocery: Path, per_product: int = PER_PRODUCT) -> list[tuple[str, str]]:
    """``(dataset path, instance)`` of the bundled photos, in bundle order (see the module docstring)."""
    by_product: dict[str, list[str]] = defaultdict(list)
    with open(grocery / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["kind"] == "package" and row["split"] == "test":
                by_product[row["instance"]].append(row["path"])
    out = []
    for product in sorted(by_product):
        paths = sorted(by_product[product])
        out += [(paths[i * len(paths) // per_product], product) for i in range(per_product)]
    return out


def bundle_path(dataset_path: str, product: str) -> str:
    return f"images/{product}/{Path(dataset_path).name}"


def write_bundle(grocery: Path, bundle: Path = BUNDLE) -> None:
    """(Re)write the bundle's images and labels.csv from the data set (LICENSE copied, README kept)."""
    if (bundle / "images").exists():
        shutil.rmtree(bundle / "images")
    rows = []
    for src, product in select_demo_photos(grocery):
        dst = bundle / bundle_path(src, product)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(grocery / src, dst)
        rows.append({"path": bundle_path(src, product), "instance": product, "source": src})
    with open(bundle / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "instance", "source"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    shutil.copyfile(grocery / "LICENSE", bundle / "LICENSE")


def read_bundle_labels() -> list[dict[str, str]]:
    with open(BUNDLE / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_bundle_is_small_labelled_and_licensed():
    rows = read_bundle_labels()
    products = {r["instance"] for r in rows}
    assert len(products) == 31 and len(rows) == 31 * PER_PRODUCT
    files = [BUNDLE / r["path"] for r in rows]
    assert all(p.is_file() for p in files)
    assert sorted(p.relative_to(BUNDLE).as_posix() for p in (BUNDLE / "images").rglob("*") if p.is_file()) == \
        sorted(r["path"] for r in rows)  # nothing else is shipped
    assert sum(p.stat().st_size for p in files) < 4_000_000
    assert "MIT License" in (BUNDLE / "LICENSE").read_text() and "Marcus Klasson" in (BUNDLE / "LICENSE").read_text()
    readme = (BUNDLE / "README.md").read_text()
    assert "WACV" in readme and "@inproceedings" in readme and "i * n // 4" in readme


def test_bundle_is_found_as_package_data():
    from zoo.inference.demo import bundled_photos

    source, records = bundled_photos()
    assert len(records) == 31 * PER_PRODUCT and all(r.label and r.path.is_file() for r in records)
    assert "grocery" in source


@pytest.mark.realdata
def test_bundle_is_the_documented_subset_byte_for_byte():
    if not (GROCERY / "labels.csv").is_file():
        pytest.skip(f"grocery-store data set not found at {GROCERY}")
    rows = read_bundle_labels()
    expected = select_demo_photos(GROCERY)
    assert [(r["source"], r["instance"]) for r in rows] == expected
    for r in rows:
        a = hashlib.sha256((BUNDLE / r["path"]).read_bytes()).hexdigest()
        b = hashlib.sha256((GROCERY / r["source"]).read_bytes()).hexdigest()
        assert a == b, r["path"]
    assert (BUNDLE / "LICENSE").read_bytes() == (GROCERY / "LICENSE").read_bytes()


if __name__ == "__main__":
    write_bundle(Path(sys.argv[1]) if len(sys.argv) > 1 else GROCERY)
