"""Protection of a run folder: a finished or interrupted run is never overwritten or resumed by mistake.

* A new run into a folder that already holds one refuses (``--resume`` continues it, another
  ``--out`` keeps it, ``--overwrite`` deletes its files and starts again).
* ``--resume`` needs the run's checkpoint, and the resolved configuration must equal the run's
  ``config.json`` except in keys that cannot change the results (:data:`NEUTRAL_KEYS`).

Nothing here writes: :func:`clear_run` is called by the trainer only once the recipe is validated and
the first stage's model built, so a failing start leaves an existing run untouched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

from zoo.train.checkpoint import RESUME_FILE
from zoo.train.selection import LAST_FILE, SELECTION_FILE
from zoo.train.errors import ResumeConfigError, RunExistsError, RunNotFoundError, TrainError

#: files whose presence means the folder holds a run
RUN_MARKERS = (RESUME_FILE, "model.safetensors", "config.json", "metrics.jsonl")
#: what a run writes (``--overwrite`` deletes these and nothing else)
RUN_FILES = (*RUN_MARKERS, "model_ema.safetensors", LAST_FILE, "last_ema.safetensors", SELECTION_FILE,
             "plan.json", "environment.json", "labels.json", "skipped.json", "curves.png")
RUN_GLOBS = ("stage*-*.safetensors",)
RUN_DIRS = ("tensorboard",)
#: config keys (last path component) that change how a run is watched, never what it computes
NEUTRAL_KEYS = frozenset({"workers", "log_every", "checkpoint_every_steps", "description"})


def holds_run(run_dir: Path) -> bool:
    return any((Path(run_dir) / name).exists() for name in RUN_MARKERS)


def _recipe_of(run_dir: Path) -> str:
    try:
        name = json.loads((Path(run_dir) / "config.json").read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        return ""
    return f" of '{name}'" if name else ""


def check_run_folder(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a start that would overwrite a run, or a resume without a run (see the module docstring)."""
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise TrainError("--resume continues the run in --out and --overwrite deletes it: pass one of them")
    if resume:
        if (run_dir / RESUME_FILE).is_file():
            return
        if holds_run(run_dir):
            raise RunNotFoundError(
                f"--resume: the run{_recipe_of(run_dir)} in {run_dir} stopped before its first checkpoint "
                f"({RESUME_FILE}): start it again with --overwrite"
            )
        raise RunNotFoundError(f"--resume: {run_dir} holds no run to resume (no {RESUME_FILE}): drop --resume to start one")
    if holds_run(run_dir) and not overwrite:
        if not (run_dir / RESUME_FILE).is_file():
            raise RunExistsError(
                f"{run_dir} already holds a run{_recipe_of(run_dir)} that stopped before its first checkpoint: "
                "write to another --out, or pass --overwrite to start again"
            )
        raise RunExistsError(
            f"{run_dir} already holds a run{_recipe_of(run_dir)}: continue it with --resume, write to another "
            "--out, or pass --overwrite to start again"
        )


def clear_run(run_dir: Path) -> list[str]:
    """Delete the files a run wrote into ``run_dir`` (nothing else); returns their names."""
    run_dir = Path(run_dir)
    gone: list[str] = []
    paths = [run_dir / n for n in RUN_FILES] + [p for g in RUN_GLOBS for p in sorted(run_dir.glob(g))]
    for p in paths:
        if p.is_file():
            p.unlink()
            gone.append(p.name)
    for d in RUN_DIRS:
        if (run_dir / d).is_dir():
            shutil.rmtree(run_dir / d)
            gone.append(d + "/")
    return gone


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        if not value and prefix:
            yield prefix, {}
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _last_key(path: str) -> str:
    return path.rsplit(".", 1)[-1].split("[", 1)[0]


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` of every result-changing key that differs (missing = None)."""
    a = dict(_flatten(json.loads(json.dumps(old, default=str))))
    b = dict(_flatten(json.loads(json.dumps(new, default=str))))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and _last_key(k) not in NEUTRAL_KEYS]


def check_resume_config(run_dir: Path, resolved: dict[str, Any], recorded: dict[str, Any] | None = None) -> None:
    """Refuse ``--resume`` with a configuration that differs from the run's: ``recorded`` (the resolved
    recipe its checkpoint holds), else its ``config.json`` (checkpoints written before they held one)."""
    path = Path(run_dir) / "config.json"
    if recorded is None:
        if not path.is_file():
            return
        recorded = json.loads(path.read_text())
    changes = config_changes(recorded, resolved)
    if changes:
        shown = ", ".join(f"{k} ({a!r} -> {b!r})" for k, a, b in changes[:6])
        more = f" and {len(changes) - 6} more" if len(changes) > 6 else ""
        raise ResumeConfigError(
            f"--resume: the configuration differs from the run's ({path}) in {shown}{more}: resume with the "
            "run's settings, or start a new run with another --out"
        )
