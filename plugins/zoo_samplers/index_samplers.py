"""DDP-aware index samplers: a seeded shuffle sharded like ``torch.utils.data.DistributedSampler`` and
a class-balanced sampler, both resumable mid-epoch.

Common behaviour (:class:`ShardedSampler`):

* the global order of epoch ``e`` is a pure function of ``(seed, e)`` (a ``torch.Generator`` seeded
  with ``seed + e``, the DistributedSampler rule), identical on every rank;
* rank ``r`` of ``R`` takes positions ``r, r+R, r+2R, ...`` of the global order, so the shards are
  disjoint and together cover the order; the order is padded by repeating its head to a multiple of
  ``R`` (``drop_last=False``) or cut to one (``drop_last=True``), as DistributedSampler does;
* ``state_dict()`` -> ``{"epoch", "seed", "consumed"}``; after ``load_state_dict`` the next iteration
  of that epoch skips the first ``consumed`` indices of this rank's shard and ``len()`` is what is
  left (the iteration after it is whole again). ``consumed`` defaults to how many indices the current
  iteration yielded; with DataLoader prefetching pass the true count: ``state_dict(consumed=n)``.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import Sampler

from zoo.registry import ZooError


class SamplerError(ZooError):
    """A sampler that cannot be built from these labels / settings."""


class ShardedSampler(Sampler[int]):
    """Base class: subclasses implement :meth:`global_order` (epoch order before sharding/padding)."""

    def __init__(self, labels: np.ndarray | None, *, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = False) -> None:
        if num_replicas < 1:
            raise SamplerError(f"num_replicas must be >= 1 (got {num_replicas})")
        if not 0 <= rank < num_replicas:
            raise SamplerError(f"rank {rank} is outside 0..{num_replicas - 1} (num_replicas={num_replicas})")
        self.labels = np.asarray(labels if labels is not None else [], dtype=np.int64).reshape(-1)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self._skip = 0  # indices of this epoch's shard already consumed (set by load_state_dict)
        self._yielded = 0

    # -- to implement -----------------------------------------------------------------------------
    def global_length(self) -> int:
        """Length of the global order of one epoch (before padding / cutting)."""
        return len(self.labels)

    def global_order(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    # -- sharding ---------------------------------------------------------------------------------
    def _shard_size(self) -> int:
        n = self.global_length()
        if self.drop_last:
            return n // self.num_replicas
        return math.ceil(n / self.num_replicas)

    def shard(self, epoch: int | None = None) -> list[int]:
        """This rank's whole shard of ``epoch`` (default: the current one), ignoring any resume skip."""
        g = torch.Generator()
        g.manual_seed(self.seed + (self.epoch if epoch is None else int(epoch)))
        order = self.global_order(g).tolist()
        per_rank = self._shard_size()
        total = per_rank * self.num_replicas
        if total > len(order) and order:
            reps = math.ceil((total - len(order)) / len(order))
            order = order + (order * reps)[: total - len(order)]
        order = order[:total]
        return order[self.rank:total:self.num_replicas]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (its order); a pending resume skip is kept only for the epoch it was saved in."""
        epoch = int(epoch)
        if epoch != self.epoch:
            self._skip = 0
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        indices = self.shard()[self._skip:]
        self._yielded = self._skip
        self._skip = 0
        for i in indices:
            self._yielded += 1
            yield int(i)

    def __len__(self) -> int:
        return max(0, self._shard_size() - self._skip)

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """``{"epoch", "seed", "consumed"}``; ``consumed`` = indices of this epoch already used."""
        return {"epoch": self.epoch, "seed": self.seed,
                "consumed": int(self._yielded if consumed is None else consumed)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "seed" in state and int(state["seed"]) != self.seed:
            raise SamplerError(
                f"sampler state was saved with seed {state['seed']} but this sampler has seed {self.seed}: "
                "resume with the same seed"
            )
        consumed = int(state.get("consumed", 0))
        if not 0 <= consumed <= self._shard_size():
            raise SamplerError(f"sampler state consumed={consumed} is outside 0..{self._shard_size()}")
        self.epoch = int(state.get("epoch", 0))
        self._skip = consumed
        self._yielded = consumed


class DistributedShuffleSampler(ShardedSampler):
    """``distributed``: every index once per epoch, shuffled by ``(seed, epoch)`` and sharded over ranks.

    Same order and padding as ``torch.utils.data.DistributedSampler(shuffle, seed, drop_last)``; the
    GLR2020 3rd / GUIE 2nd place trainers recreate one each epoch with ``set_epoch(epoch)`` (SEED_SYSTEMS.md
    1.2, 3.3). ``labels`` only give the dataset size.
    """

    def global_order(self, generator: torch.Generator) -> torch.Tensor:
        n = self.global_length()
        return torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)


class ClassBalancedSampler(ShardedSampler):
    """``class_balanced``: each epoch draws ``num_samples`` indices (default: the dataset size) with
    replacement, sample weight ``count(class) ** -power``; ``power=1`` (default) gives every class the
    same expected frequency, ``power=0.5`` a square-root balance, ``power=0`` plain sampling with
    replacement. Negative labels (unknown class) are never drawn. The draw is shared by all ranks
    (seeded by ``seed + epoch``) and sharded like :class:`DistributedShuffleSampler`. ``shuffle`` has
    no effect (a weighted draw is already random).
    """

    def __init__(self, labels: np.ndarray, *, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = False, power: float = 1.0,
                 num_samples: int | None = None) -> None:
        super().__init__(labels, num_replicas=num_replicas, rank=rank, seed=seed, shuffle=shuffle,
                         drop_last=drop_last)
        valid = self.labels >= 0
        if not valid.any():
            raise SamplerError("class_balanced: no labelled sample (every label is negative)")
        counts = np.bincount(self.labels[valid])
        weights = np.zeros(len(self.labels), dtype=np.float64)
        weights[valid] = counts[self.labels[valid]].astype(np.float64) ** (-float(power))
        self.weights = torch.from_numpy(weights / weights.sum())
        self.power = float(power)
        self.num_samples = int(num_samples) if num_samples is not None else len(self.labels)
        if self.num_samples < 1:
            raise SamplerError(f"class_balanced: num_samples must be >= 1 (got {num_samples})")

    def global_length(self) -> int:
        return self.num_samples

    def global_order(self, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)
