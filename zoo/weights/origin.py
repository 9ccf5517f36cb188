"""Where a built model's tensors come from: weight files, or a (seeded) random initialisation.

:func:`zoo.factory.create_model` builds a model under a fixed seed (:func:`seeded`), records which
state-dict tensors its loaders filled from files (:func:`track_loaded`: a ``load_state_dict`` pre-hook
on every module, so any loader that goes through ``load_state_dict`` is seen), and then asks which of
the remaining tensors are *random*: :func:`find_random_tensors` builds the model a second time under
another seed and compares. A tensor whose value depends on the seed is random (a neck or head
without weights, a whole backbone with ``--no-pretrained``); one that does not is deterministic
(GeM's ``p = 3``, BatchNorm's ones and zeros, weights a library loaded while building). The
comparison build is skipped when every tensor was loaded from a file, so a checkpoint or a
whole-model manifest entry costs nothing extra.

A leaf module: it imports torch, numpy and the registry's error base class only.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from zoo.registry import ZooError

#: how many random tensor names a message lists
SHOWN_TENSORS = 5


class RandomWeightsError(ZooError):
    """A model with randomly initialised layers where learned weights are needed (embedding)."""


@dataclass(frozen=True)
class WeightsOrigin:
    """What a model's weights are: the files loaded (``sha256:HEX`` each) and the random tensors left.

    ``random`` names the state-dict tensors left at a random initialisation that shape the
    descriptor; ``random_head`` those of classification heads (class scores only). ``random_sha256``
    is the digest of the ``random`` tensors' values, so two models with the same seed but another
    initialisation (another torch version, another architecture) are told apart. ``seed`` is the
    initialisation seed (None: the caller's global random state, not reproducible).
    """

    files: tuple[str, ...] = ()
    random: tuple[str, ...] = ()
    seed: int | None = None
    random_sha256: str | None = None
    random_head: tuple[str, ...] = ()

    @property
    def is_random(self) -> bool:
        return bool(self.random)

    def random_marker(self) -> str | None:
        """``random:SEED/HASH12`` (``random:unseeded/...`` without a seed) when tensors are random, else None."""
        if not self.random:
            return None
        seed = "unseeded" if self.seed is None else str(self.seed)
        return f"random:{seed}/{(self.random_sha256 or '?')[:12]}"

    def describe_random(self, *, head: bool = False) -> str:
        """``N randomly initialised tensors (a, b, ...)`` (of the head with ``head=True``)."""
        names = self.random_head if head else self.random
        shown = ", ".join(names[:SHOWN_TENSORS]) + (" ..." if len(names) > SHOWN_TENSORS else "")
        return f"{len(names)} randomly initialised tensor{'s' if len(names) != 1 else ''} ({shown})"

    def to_dict(self) -> dict[str, Any]:
        return {"files": list(self.files), "random": list(self.random), "seed": self.seed,
                "random_sha256": self.random_sha256, "random_head": list(self.random_head)}


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch (CPU), numpy and ``random`` seeded to ``seed``; their states are restored
    afterwards, so the caller's random streams are not consumed. ``None``: no seeding, nothing restored."""
    if seed is None:
        yield
        return
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % (1 << 32))
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


@dataclass
class LoadedKeys:
    """The state-dict keys (of the tracked root module) that a ``load_state_dict`` call supplied."""

    keys: set[str] = field(default_factory=set)


@contextlib.contextmanager
def track_loaded(model: nn.Module) -> Iterator[LoadedKeys]:
    """Record every state-dict key of ``model`` that a ``load_state_dict`` call (on it or on any
    sub-module) finds in the incoming state dict, while the block runs."""
    loaded = LoadedKeys()
    names = {id(m): name for name, m in model.named_modules()}
    handles = []

    def hook(module: nn.Module, state_dict: Any, prefix: str, *_: Any) -> None:
        base = names.get(id(module))
        if base is None:
            return
        own = list(module._parameters) + [b for b in module._buffers
                                           if b not in module._non_persistent_buffers_set]
        for name in own:
            if prefix + name in state_dict:
                loaded.keys.add(f"{base}.{name}" if base else name)

    for module in model.modules():
        handles.append(module.register_load_state_dict_pre_hook(hook))
    try:
        yield loaded
    finally:
        for h in handles:
            h.remove()


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if torch.equal(a, b):
        return True
    return bool(a.is_floating_point() and torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
                and torch.equal(torch.isnan(a), torch.isnan(b)))


def find_random_tensors(
    model: nn.Module, loaded: set[str], rebuild: Callable[[int], nn.Module], seed: int | None
) -> list[str]:
    """The state-dict keys of ``model`` that were not ``loaded`` and whose value depends on the seed.

    ``rebuild(other_seed)`` builds the same model (no weights) under another seed; it is called only
    when some tensor was not loaded from a file.
    """
    state = model.state_dict()
    candidates = [k for k in state if k not in loaded]
    if not candidates:
        return []
    other = rebuild((0 if seed is None else seed) + 1)
    other_state = other.state_dict()
    return [k for k in candidates if k not in other_state or not _same(state[k], other_state[k])]


def tensors_sha256(model: nn.Module, keys: list[str]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``keys`` of ``model``'s state dict."""
    state = model.state_dict()
    h = hashlib.sha256()
    for k in sorted(keys):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


__all__ = ["LoadedKeys", "RandomWeightsError", "WeightsOrigin", "find_random_tensors", "seeded", "tensors_sha256", "track_loaded"]
