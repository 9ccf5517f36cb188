"""The separate plugin distribution installs with pip and is discovered through real entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pip_installed_plugin_is_discovered(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(REPO / "plugins" / "zoo-glr2019")],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    assert list(target.glob("zoo_glr2019-0.1.0.dist-info/entry_points.txt"))
    probe = (
        "import json, zoo_glr2019, zoo.plugins as p\n"
        "reg = p.load_registry(only=['glr2019', 'heads', 'pooling'])\n"
        "e = reg.get('neck', 'cbp_attention')\n"
        "print(json.dumps({'file': zoo_glr2019.__file__, 'dist': e.owner.dist, 'version': e.owner.version,"
        " 'recipes': sorted(reg.recipe_files), 'failed': [f.error for f in reg.report.failed]}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["file"].startswith(str(target)), "the plugin came from the pip-installed copy"
    assert (data["dist"], data["version"]) == ("zoo-glr2019", "0.1.0")
    assert data["recipes"] == ["glr2019-xception-cbp"] and data["failed"] == []
