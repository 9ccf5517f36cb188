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
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from cli_workspace import EXTRA, TINY, build_workspace, offline  # noqa: F401 - offline: a fixture

REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, photo_paths) -> Path:
    return build_workspace(tmp_path_factory.mktemp("examples"), photo_paths)


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
