"""Built-in ``sampler`` components: record re-balancers and DDP-aware index samplers.

Kind-level contract (``entry.meta["role"]`` tells which one a name follows):

* ``role="resample"`` (re-balancers, applied to the record list once per stage before labels are
  mapped): ``factory(**cfg) -> rebalance(records: list[ImageRecord], seed: int) -> list[ImageRecord]``;
  deterministic in ``(records, seed)``; records may repeat.
  - ``guie_rebalance(min_images=3, cap=100, upsample_to=20, min_images_by_dataset=GUIE_MIN_IMAGES)``
    GUIE 2022 2nd place (5 or 3 images per source dataset);
  - ``oversample_min(min_per_class=5)`` GLR2021 top-100 (``by_value``, no downsampling; ``value=`` alias);
  - ``min_class_size(min_images=100)`` GLR2019 CS230 (classes with >= 100 images only).
* ``role="sampler"`` (index samplers handed to the DataLoader as ``sampler=``):
  ``factory(labels: np.ndarray[int64], *, num_replicas=1, rank=0, seed=0, shuffle=True,
  drop_last=False, **cfg) -> torch.utils.data.Sampler[int]`` with ``set_epoch(epoch)``, ``__len__``
  (this rank's count), ``state_dict(consumed=None) -> {"epoch", "seed", "consumed"}`` and
  ``load_state_dict(state)`` (the next iteration of that epoch skips the ``consumed`` first indices of
  this rank). Epoch order = f(seed, epoch) on every rank; rank ``r`` takes positions ``r::num_replicas``
  (disjoint shards), padded/cut like ``torch.utils.data.DistributedSampler``.
  - ``distributed``: plain seeded shuffle (the seeds' DistributedSampler);
  - ``class_balanced(power=1.0, num_samples=None)``: draws with replacement, weight count^-power.
"""

from __future__ import annotations

from zoo import hookimpl
from zoo.registry import ComponentRegistrar


@hookimpl
def zoo_register_samplers(registrar: ComponentRegistrar) -> None:
    registrar.add(
        "distributed",
        "zoo_samplers.index_samplers:DistributedShuffleSampler",
        description="seeded shuffle, disjoint DDP shards padded like DistributedSampler (GLR2020 3rd, GUIE 2nd)",
        role="sampler",
    )
    registrar.add(
        "class_balanced",
        "zoo_samplers.index_samplers:ClassBalancedSampler",
        description="class-balanced draw with replacement, weight count^-power (power=1), DDP-sharded",
        role="sampler",
    )
    registrar.add(
        "guie_rebalance",
        "zoo_samplers.rebalance:guie_rebalance",
        description="drop classes < N images (N per source dataset: 5 or 3), cap 100 per class, upsample to >= 20 "
                    "(GUIE 2022 2nd)",
        role="resample",
    )
    registrar.add(
        "oversample_min",
        "zoo_samplers.rebalance:oversample_min",
        description="oversample every class up to 5 images, no downsampling (GLR2021 top-100)",
        role="resample",
    )
    registrar.add(
        "min_class_size",
        "zoo_samplers.rebalance:min_class_size",
        description="keep only classes with >= 100 images (GLR2019 CS230 MIN_SAMPLES_PER_CLASS)",
        role="resample",
        test_kwargs={"min_images": 5},
    )
