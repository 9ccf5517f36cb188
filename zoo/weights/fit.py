"""Fitting a state dict to a model: the one strict key-and-shape check every loader uses.

A leaf module (it imports nothing from zoo but :mod:`zoo.registry` and :mod:`zoo.weights.errors`):
converting upstream checkpoints (:mod:`zoo.weights.convert`), loading manifest weights
(:mod:`zoo.weights.loading`) and loading zoo checkpoints all call :func:`fit_state` /
:func:`check_fit`. Each caller passes the error type its users catch (``error=``) and the advice
that fits its context (``hint=``, shown when keys are missing or unexpected).

Backbone weights (e.g. a complete timm ImageNet model) are fitted onto the sub-module of
``model.backbone`` whose keys they match by suffix (:func:`backbone_target`); keys matching a
``drop`` pattern (fnmatch, e.g. ``classifier.*``) may be present in the file and absent from the model.
"""

from __future__ import annotations

import fnmatch
from typing import Mapping

import torch
from torch import nn

from zoo.registry import ZooError
from zoo.weights.errors import StateDictMismatchError

#: how many key names and shape mismatches an error message lists
SHOWN_KEYS = 20
SHOWN_SHAPES = 10


def dropped_keys(keys: set[str], patterns: tuple[str, ...]) -> set[str]:
    """The ``keys`` that match one of the fnmatch ``patterns``."""
    return {k for k in keys if any(fnmatch.fnmatchcase(k, p) for p in patterns)}


def fit_state(
    state: Mapping[str, torch.Tensor],
    own: Mapping[str, torch.Tensor],
    what: str,
    *,
    drop: tuple[str, ...] = (),
    hint: str = "",
    error: type[ZooError] = StateDictMismatchError,
) -> dict[str, torch.Tensor]:
    """The tensors of ``state`` for exactly the keys of ``own`` (a model's state dict).

    Every key of ``own`` must be in ``state`` with the same shape; a key of ``state`` that ``own``
    lacks is an error unless it matches a ``drop`` pattern. Raises ``error`` naming the missing and
    unexpected keys (then ``hint``) or the shape mismatches (key, file, model).
    """
    missing = sorted(set(own) - set(state))
    unexpected = set(state) - set(own)
    unexpected = sorted(unexpected - dropped_keys(unexpected, drop))
    if missing or unexpected:
        raise error(
            f"{what}: {len(missing)} missing keys {missing[:SHOWN_KEYS]}, {len(unexpected)} unexpected keys "
            f"{unexpected[:SHOWN_KEYS]}." + (f" {hint}" if hint else "")
        )
    bad = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in own if state[k].shape != own[k].shape]
    if bad:
        raise error(f"{what}: shape mismatches (key, file, model): {bad[:SHOWN_SHAPES]}")
    return {k: state[k] for k in own}


def check_fit(
    state: Mapping[str, torch.Tensor],
    own: Mapping[str, torch.Tensor],
    what: str,
    *,
    drop: tuple[str, ...] = (),
    hint: str = "",
    error: type[ZooError] = StateDictMismatchError,
) -> None:
    """Raise ``error`` unless ``state`` fits ``own`` exactly (see :func:`fit_state`)."""
    fit_state(state, own, what, drop=drop, hint=hint, error=error)


def backbone_target(
    backbone: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    what: str = "backbone weights",
    error: type[ZooError] = StateDictMismatchError,
) -> tuple[nn.Module, str]:
    """The sub-module of ``backbone`` whose state-dict keys the file's keys fit (by key suffix), and its prefix."""
    own = backbone.state_dict()
    probe = next((k for k in state if k in own or any(o.endswith("." + k) for o in own)), None)
    if probe is None:
        raise error(
            f"{what}: none of the file's keys (e.g. {list(state)[:3]}) appear in the backbone "
            f"({type(backbone).__name__}, keys e.g. {list(own)[:3]})"
        )
    if probe in own:
        return backbone, ""
    full = next(o for o in own if o.endswith("." + probe))
    prefix = full[: -len(probe) - 1]
    return backbone.get_submodule(prefix), prefix


def place_backbone_state(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    what: str,
    drop: tuple[str, ...] = (),
    *,
    hint: str = "",
    error: type[ZooError] = StateDictMismatchError,
) -> dict[str, torch.Tensor]:
    """Map a backbone network's state dict onto the model's own keys (``backbone.<prefix>.<key>``)."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise error(f"{what}: backbone weights, but the model has no .backbone")
    target, prefix = backbone_target(backbone, state, what=what, error=error)
    fitted = fit_state(state, target.state_dict(), what, drop=drop, hint=hint, error=error)
    base = "backbone." + (prefix + "." if prefix else "")
    return {base + k: v for k, v in fitted.items()}
