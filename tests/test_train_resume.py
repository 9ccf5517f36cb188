"""kill -9 during an epoch, then ``resume``, ends with bit-identical weights to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
WORKER = HERE / "test_train_support.py"
# 3 epochs x 4 steps, a checkpoint every step, dropout + seeded flips: every RNG path is exercised
ARGS = ["epochs=3", "checkpoint_every_steps=1", "accumulate=2", "batch_size=4"]


def _run(mode: str, run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    return subprocess.Popen([sys.executable, str(WORKER), mode, str(run_dir), *ARGS], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _step_of(run_dir: Path) -> int:
    import json

    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return max((r.get("global_step", 0) for r in lines), default=0)


@pytest.mark.slow
def test_kill9_mid_epoch_then_resume_is_bit_identical(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    p_ref = _run("run", ref)
    p = _run("run", killed)
    deadline = time.time() + 120
    while _step_of(killed) < 5 and time.time() < deadline and p.poll() is None:  # mid epoch 2
        time.sleep(0.05)
    assert p.poll() is None, "the run ended before it could be killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    killed_at = _step_of(killed)
    assert 0 < killed_at < 12 and (killed / "resume.safetensors").is_file()
    assert not (killed / "curves.png").exists(), "the killed run must not have finished"
    r = _run("resume", killed)
    assert r.wait(timeout=300) == 0, r.stderr.read().decode()[-2000:]
    assert p_ref.wait(timeout=300) == 0, p_ref.stderr.read().decode()[-2000:]
    a, b = load_file(str(ref / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].equal(b[k]), f"{k} differs after resume (killed at step {killed_at})"
    # the resumed metrics log is the uninterrupted one (cut back to the checkpoint, then re-appended)
    assert (ref / "metrics.jsonl").read_text().count("\n") == (killed / "metrics.jsonl").read_text().count("\n")
