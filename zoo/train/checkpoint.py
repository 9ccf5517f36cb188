"""Training checkpoints without pickle: one safetensors file holding every tensor plus a JSON header.

``resume.safetensors`` in a run folder holds the model weights (``model/...``), the EMA weights
(``ema/...``), the optimizer's tensors (``optim/<param>/<key>``) and the RNG states (``rng/...``); the
safetensors metadata key ``zoo_train_state`` holds JSON with the rest: optimizer hyper-parameters and
scalar state, scheduler / GradScaler / sampler state, Python and NumPy RNG, progress counters. It is
written atomically (temp file + rename, :mod:`zoo.atomic`), so a run killed at any moment resumes from
the last complete file.

Weights for inference are written separately (``model.safetensors``, loadable by
``zoo.create_model(recipe, checkpoint=...)``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.atomic import save_safetensors
from zoo.registry import ZooError

META_KEY = "zoo_train_state"
FORMAT_VERSION = 1


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
