"""Fast start: listing and help commands never import torch, timm, open_clip, albumentations or faiss.

Plugins register ``"module:attribute"`` factory references (imported when a component is built), so
``zoo --help``, ``zoo recipes``, ``zoo info``, ``zoo components``, ``zoo plugins`` and every
``zoo COMMAND --help`` run on the standard library, pluggy and omegaconf alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

HEAVY = ("torch", "timm", "open_clip", "albumentations", "faiss")

PROBE = textwrap.dedent("""
    import contextlib, io, json, sys
    from zoo.cli import build_parser, main

    commands = [["--help"], ["recipes"], ["recipes", "--long"], ["info", "default"], ["info", "default-finetune",
                "model.pooling.type=avg", "--keys"], ["components"], ["components", "backbone", "--json"],
                ["plugins"], ["plugins", "--json"], ["weights", "list"]]
    commands += [[name, "--help"] for name in sorted(build_parser()._subparsers._group_actions[0].choices)]
    report = []
    for argv in commands:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            try:
                rc = main(argv)
            except SystemExit as exc:
                rc = exc.code
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY})
        report.append({"argv": argv, "rc": rc, "heavy": heavy[:5], "printed": len(out.getvalue())})
    print(json.dumps(report))
""").replace("{HEAVY}", repr(set(HEAVY)))


def test_listing_and_help_commands_import_no_heavy_library():
    env = {**os.environ, "ZOO_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(report) >= 20
    for item in report:
        assert item["rc"] in (0, None), item
        assert item["printed"] > 0, f"{item['argv']} printed nothing"
        assert item["heavy"] == [], f"zoo {' '.join(item['argv'])} imported {item['heavy']}"


def test_registering_the_builtin_plugins_imports_no_heavy_library():
    code = ("import sys; from zoo.plugins import load_registry; r = load_registry(strict=True); "
            f"print(len(r.entries()), sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    count, heavy = res.stdout.split(" ", 1)
    assert int(count) > 50 and heavy.strip() == "[]"
