"""Training checkpoints without pickle: one safetensors file holding every tensor plus a JSON header.

``resume.safetensors`` in a run folder holds the model weights (``model/...``), the EMA weights
(``ema/...``), the optimizer's tensors (``optim/<param>/<key>``) and the RNG states (``rng/...``); the
safetensors metadata key ``zoo_train_state`` holds JSON with the rest: optimizer hyper-parameters and
scalar state, scheduler / GradScaler / sampler state, Python and NumPy RNG, progress counters. It is
written atomically (temp file + rename, :mod:`zoo.atomic`), so a run killed at any moment resumes from
the last complete file.

Weights for inference are written separately (``model.safetensors``, loadable by
``zoo.create_model(recipe, checkpoint=...)``).

Checkpointing and resuming a run: :class:`Checkpointer` (the epoch-loop callback writing
``resume.safetensors`` every ``checkpoint_every_steps`` optimizer steps and after every epoch),
:func:`read_resume` (the checkpoint of a run folder) and :meth:`Resume.restore_counters` /
:meth:`Resume.restore_training` (putting it back into a :class:`~zoo.train.state.TrainState`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.atomic import save_safetensors
from zoo.distributed import DistContext
from zoo.registry import ZooError
from zoo.train.callbacks import Callback, EpochState
from zoo.train.state import Position, TrainState

META_KEY = "zoo_train_state"
FORMAT_VERSION = 1
RESUME_FILE = "resume.safetensors"


class CheckpointError(ZooError):
    """A training checkpoint that cannot be read or does not fit the run."""


# -- optimizer --------------------------------------------------------------------------------
def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON-able values."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"optim/{pid}/{key}"] = value.detach().cpu()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = json.loads(json.dumps(sd["param_groups"], default=_json_default))
    return tensors, {"scalars": scalars, "param_groups": groups}


def optimizer_from_flat(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optim/"):
            continue
        _, pid, key = name.split("/", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    groups = meta["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        raise CheckpointError(
            f"the checkpoint's optimizer has {len(groups)} param groups, this run builds "
            f"{len(optimizer.param_groups)}: resume with the same recipe and overrides"
        )
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if torch.is_tensor(obj) and obj.numel() == 1:
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in a JSON checkpoint header")


# -- RNG ----------------------------------------------------------------------------------------
def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Torch (CPU + CUDA) RNG as tensors; Python and NumPy RNG as JSON."""
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng/cuda/"))
    if cuda and torch.cuda.is_available():
        states = [tensors[k] for k in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    if meta.get("python"):
        v, st, g = meta["python"]
        random.setstate((v, tuple(st), g))
    if meta.get("numpy"):
        name, keys, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# -- whole training state -------------------------------------------------------------------------
def save_train_state(
    path: str | Path,
    *,
    model_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    header: dict[str, Any],
    ema_state: dict[str, torch.Tensor] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write the full resumable state atomically (see module docstring)."""
    tensors: dict[str, torch.Tensor] = {f"model/{k}": v.detach().cpu() for k, v in model_state.items()}
    if ema_state is not None:
        tensors.update({f"ema/{k}": v.detach().cpu() for k, v in ema_state.items()})
    opt_tensors, opt_meta = optimizer_to_flat(optimizer)
    tensors.update(opt_tensors)
    rng_tensors, rng_meta = capture_rng()
    tensors.update(rng_tensors)
    tensors.update(extra_tensors or {})
    body = {"format": FORMAT_VERSION, "optimizer": opt_meta, "rng": rng_meta, **header}
    text = json.dumps(body, default=_json_default)
    # safetensors refuses tensors that share memory: give each its own storage
    seen: set[int] = set()
    for k, v in list(tensors.items()):
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        if ptr in seen:
            tensors[k] = v.clone()
        elif ptr != -1:
            seen.add(ptr)
    save_safetensors(path, tensors, metadata={META_KEY: text})


def read_train_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON header of a ``resume.safetensors``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no training checkpoint at {path}; start without --resume")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    if META_KEY not in meta:
        raise CheckpointError(f"{path} is not a zoo training checkpoint (no '{META_KEY}' metadata)")
    header = json.loads(meta[META_KEY])
    if header.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {header.get('format')} != {FORMAT_VERSION}")
    return load_file(str(path)), header


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    n = len(prefix)
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix)}


# -- checkpointing a run ---------------------------------------------------------------------------
def state_header(state: TrainState, pos: Position, recipe: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON part of a run's checkpoint besides optimizer and RNG (see the module docstring);
    ``config``: the resolved recipe the run trains (what ``--resume`` compares against)."""
    return {
        "position": pos.__dict__.copy(),
        "global_step": state.global_step,
        "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
        "scaler": state.scaler.state_dict() if state.scaler is not None else None,
        "meters": dict(state.meters),
        "ema_updates": state.ema.updates if state.ema else None,
        "history": state.history,
        "skipped": state.skips.rows(),
        "label_names_count": len(state.label_names),
        "recipe": recipe,
        "config": config,
    }


def save_checkpoint(run_dir: Path, state: TrainState, pos: Position, recipe: str, ctx: DistContext,
                    config: dict[str, Any] | None = None) -> None:
    """Rank 0 writes ``run_dir/resume.safetensors``; every rank waits for it."""
    assert state.model is not None and state.optimizer is not None
    if ctx.is_main:
        save_train_state(
            Path(run_dir) / RESUME_FILE, model_state=state.model.state_dict(), optimizer=state.optimizer,
            header=state_header(state, pos, recipe, config), ema_state=state.ema.state_dict() if state.ema else None,
        )
    ctx.barrier()


class Checkpointer(Callback):
    """Writes the resumable state every ``stage.checkpoint_every_steps`` optimizer steps (not on an
    epoch's last batch) and after every complete epoch (after the epoch's record is logged, so a
    resume never loses or repeats a metrics line)."""

    def __init__(self, run_dir: Path, recipe: str, ctx: DistContext, config: dict[str, Any] | None = None) -> None:
        self.run_dir, self.recipe, self.ctx, self.config = Path(run_dir), recipe, ctx, config

    def on_step_end(self, state: TrainState, epoch: EpochState) -> None:
        every = epoch.stage.checkpoint_every_steps
        if not every or state.global_step % every != 0:
            return
        state.meters = {"loss_sum": float(epoch.loss_sum[0]), "count": float(epoch.loss_sum[1])}
        if not epoch.last_batch:
            save_checkpoint(self.run_dir, state, Position(epoch.stage.index, epoch.epoch, epoch.batch + 1, False),
                            self.recipe, self.ctx, self.config)

    def on_epoch_end(self, state: TrainState, epoch: EpochState) -> None:
        save_checkpoint(self.run_dir, state, Position(epoch.stage.index, epoch.epoch, epoch.num_batches, True),
                        self.recipe, self.ctx, self.config)


@dataclass
class Resume:
    """A run's checkpoint, read back: tensors and header."""

    tensors: dict[str, torch.Tensor]
    header: dict[str, Any]

    @property
    def position(self) -> Position:
        return Position(**self.header["position"])

    def start(self) -> tuple[int, int]:
        """``(epoch, micro-batches to skip)`` the run continues from within its stage."""
        pos = self.position
        return (pos.epoch + 1, 0) if pos.epoch_complete else (pos.epoch, pos.batches_done)

    def restore_counters(self, state: TrainState) -> None:
        """Global step, history and skip report (at the start of the run)."""
        state.global_step = int(self.header["global_step"])
        state.history = list(self.header["history"])
        state.skips.merge(self.header["skipped"])

    def restore_training(self, state: TrainState) -> None:
        """Model, optimizer, schedule, scaler, EMA, epoch meters and RNG (once the stage has built them)."""
        assert state.model is not None and state.optimizer is not None
        header = self.header
        state.model.load_state_dict(prefixed(self.tensors, "model/"))
        optimizer_from_flat(state.optimizer, self.tensors, header["optimizer"])
        if header.get("scheduler") is not None:
            state.scheduler.load_state_dict(header["scheduler"])
        if header.get("scaler"):
            state.scaler.load_state_dict(header["scaler"])
        if state.ema is not None and header.get("ema_updates") is not None:
            state.ema.load_state_dict(prefixed(self.tensors, "ema/"), header["ema_updates"])
        state.meters = dict(header["meters"])
        restore_rng(self.tensors, header["rng"])


def read_resume(run_dir: Path, recipe: str) -> Resume:
    """The checkpoint of the run in ``run_dir``, which must be a run of ``recipe``."""
    path = Path(run_dir) / RESUME_FILE
    tensors, header = read_train_state(path)
    if header.get("recipe") != recipe:
        raise CheckpointError(
            f"{path} belongs to recipe '{header.get('recipe')}', not '{recipe}': pick another --out or drop --resume"
        )
    return Resume(tensors, header)
