"""Stage transitions: freezing/unfreezing, head re-initialisation, loading a stage's start weights.

Seed-system behaviours these reproduce:

* GLR2020 3rd place step 1: ``metric_classify.weight`` deleted before a non-strict load (``init_drop:
  [head.*]``, ``init_strict: false``); later steps load strictly.
* GLR2021 1st place hybrid-Swin: step 2 trains only ``patch_embed`` (``trainable:
  [backbone.patch_embed.*]``); step 4 pops ``patch_embed.proj.weight`` and re-initialises it
  (``reinit: [backbone.patch_embed.proj]``).
* GUIE 2022 2nd place: the last epoch with the backbone frozen (``freeze: [backbone.*]``).
* GLR2019: the first 85 parameter tensors frozen (``freeze_first_n_params: 85``).
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from zoo.registry import ZooError

log = logging.getLogger(__name__)


class StageTransitionError(ZooError):
    """A stage's freeze/re-init/init settings do not fit the model."""


def _match(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or name == p or name.startswith(p.rstrip(".*") + ".")
               for p in patterns)


def apply_trainable(
    model: nn.Module,
    *,
    freeze: list[str] = (),  # type: ignore[assignment]
    trainable: list[str] = (),  # type: ignore[assignment]
    freeze_first_n_params: int = 0,
    first_n_prefix: str = "backbone.",
) -> dict[str, int]:
    """Set ``requires_grad`` for a stage: everything trains unless ``trainable`` names a subset;
    ``freeze`` patterns and the first ``freeze_first_n_params`` tensors under ``first_n_prefix`` are
    frozen. Returns counts of trainable/frozen tensors. Unmatched patterns are an error."""
    named = list(model.named_parameters())
    for patterns, what in ((freeze, "freeze"), (trainable, "trainable")):
        for p in patterns:
            if not any(_match(n, [p]) for n, _ in named):
                raise StageTransitionError(
                    f"train.{what} pattern '{p}' matches no parameter of the model; parameter names "
                    f"look like {', '.join(n for n, _ in named[:3])} ... (list them with zoo info RECIPE)"
                )
    first = [n for n, _ in named if n.startswith(first_n_prefix)][: int(freeze_first_n_params)]
    if freeze_first_n_params and len(first) < freeze_first_n_params:
        raise StageTransitionError(
            f"train.freeze_first_n_params={freeze_first_n_params} but the model has only {len(first)} "
            f"parameter tensors under '{first_n_prefix}'"
        )
    first_set = set(first)
    counts = {"trainable": 0, "frozen": 0}
    for name, param in named:
        on = _match(name, trainable) if trainable else True
        if _match(name, freeze) or name in first_set:
            on = False
        param.requires_grad_(on)
        counts["trainable" if on else "frozen"] += 1
    return counts


def reinit_modules(model: nn.Module, names: Iterable[str], generator_seed: int) -> list[str]:
    """Re-initialise the named sub-modules (``reset_parameters`` on them and their children) under a
    fixed seed; returns the module names that were reset."""
    modules = dict(model.named_modules())
    done: list[str] = []
    state = torch.random.get_rng_state()
    torch.manual_seed(int(generator_seed))
    try:
        for pattern in names:
            hits = [n for n in modules if n and (n == pattern or fnmatch.fnmatchcase(n, pattern))]
            if not hits:
                raise StageTransitionError(
                    f"train.reinit: no module named '{pattern}'; top-level modules: "
                    f"{', '.join(n for n in modules if n and '.' not in n)}"
                )
            for n in hits:
                reset = 0
                for sub in modules[n].modules():
                    fn = getattr(sub, "reset_parameters", None)
                    if callable(fn):
                        fn()
                        reset += 1
                if reset == 0:
                    raise StageTransitionError(
                        f"train.reinit: module '{n}' ({type(modules[n]).__name__}) has no reset_parameters()"
                    )
                done.append(n)
    finally:
        torch.random.set_rng_state(state)
    return done


def load_init(model: nn.Module, path: str | Path, *, strict: bool = True, drop: Iterable[str] = ()) -> dict[str, list[str]]:
    """Load a stage's start weights from a zoo safetensors file.

    ``drop`` patterns remove checkpoint keys first (GLR2020: the head when the class count changes).
    Non-strict loading also skips keys whose shape differs and reports them.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        raise StageTransitionError(
            f"train.init: {path} is not an existing .safetensors file; zoo never unpickles. Convert "
            "upstream checkpoints with: zoo weights convert"
        )
    state = load_file(str(path))
    drop = list(drop)
    dropped = [k for k in state if _match(k, drop)]
    for k in dropped:
        del state[k]
    own = model.state_dict()
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    if strict:
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected or mismatched:
            raise StageTransitionError(
                f"train.init {path} does not fit the model strictly: missing {missing[:5]} ({len(missing)}), "
                f"unexpected {unexpected[:5]} ({len(unexpected)}), shape mismatch {mismatched[:5]}. Set "
                "init_strict: false or list keys in init_drop."
            )
    for k in mismatched:
        del state[k]
    result = model.load_state_dict(state, strict=False)
    report = {
        "dropped": dropped,
        "shape_mismatch": mismatched,
        "missing": list(result.missing_keys),
        "unexpected": list(result.unexpected_keys),
    }
    log.info(
        "loaded %s (%s): dropped %d, shape-mismatched %d, missing %d, unexpected %d", path,
        "strict" if strict else "non-strict", len(dropped), len(mismatched), len(result.missing_keys),
        len(result.unexpected_keys),
    )
    return report


def transfer_weights(src: nn.Module, dst: nn.Module) -> dict[str, int]:
    """Copy every tensor whose name and shape match from ``src`` into ``dst`` (a model rebuilt with
    stage ``model_overrides``, e.g. hybrid-Swin step 4's deeper EfficientNet embedder)."""
    s, d = src.state_dict(), dst.state_dict()
    copied = {k: v for k, v in s.items() if k in d and d[k].shape == v.shape}
    dst.load_state_dict(copied, strict=False)
    return {"copied": len(copied), "new": len(d) - len(copied)}
