"""Ensemble combiners (kind ``ensemble``) used by ``zoo.assembly.ZooEnsemble``.

Contract: ``factory(**cfg) -> combine(embeddings: list[Tensor B x D_i], member_cfgs: list[dict]) ->
Tensor B x D_total``; ``member_cfgs[i]`` is the recipe's ``ensemble.members[i]`` (``recipe``,
``image_size``, ``family``, ...). Averaging the heads' outputs is done by ``ZooEnsemble.forward``.
A combiner may also have ``slice_dims(member_dims, member_cfgs) -> list[int]``: the widths of the
independent descriptors its output concatenates, in order; per-model post-processing (Henkel &
Singer's per-model top-3, the retrieval re-ranking) works on these slices
(``zoo.inference.pipeline.model_dims_of``).

* ``concat`` (GLR2020 3rd place, seed document section 5; SEED_SYSTEMS.md 1.3): every member's
  descriptor L2-normalised, concatenated in member order (9 x 512 = 4608-d upstream).
* ``family_mean_concat`` (GLR2021 1st place recognition, SEED_SYSTEMS.md 2.4): members L2-normalised,
  averaged per ``family`` (families in order of first appearance: DOLG, Hybrid-Swin, EfficientNet),
  each family mean L2-normalised (``normalize_families``), then concatenated (3 x 512 = 1536-d).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from zoo.registry import ZooError


class EnsembleConfigError(ZooError):
    """Ensemble members that the combiner cannot fuse (missing family, mixed widths in a family)."""


Combiner = Callable[[Sequence[torch.Tensor], Sequence[dict[str, Any]]], torch.Tensor]


def _check(embeddings: Sequence[torch.Tensor], member_cfgs: Sequence[dict[str, Any]], who: str) -> None:
    if not embeddings:
        raise EnsembleConfigError(f"{who}: no member descriptors to combine")
    if len(embeddings) != len(member_cfgs):
        raise EnsembleConfigError(f"{who}: {len(embeddings)} descriptors but {len(member_cfgs)} member configs")
    if len({int(e.shape[0]) for e in embeddings}) != 1:
        raise EnsembleConfigError(f"{who}: members returned different batch sizes {[int(e.shape[0]) for e in embeddings]}")


class Concat:
    """GLR2020 3rd place: per-member L2-normalised descriptors concatenated in member order; one slice
    per member."""

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = bool(normalize)

    def __call__(self, embeddings: Sequence[torch.Tensor], member_cfgs: Sequence[dict[str, Any]]) -> torch.Tensor:
        _check(embeddings, member_cfgs, "ensemble combiner 'concat'")
        parts = [F.normalize(e.float(), dim=1) if self.normalize else e.float() for e in embeddings]
        return torch.cat(parts, dim=1)

    def slice_dims(self, member_dims: Sequence[int], member_cfgs: Sequence[dict[str, Any]]) -> list[int]:
        return [int(d) for d in member_dims]


def concat(normalize: bool = True) -> Concat:
    """GLR2020 3rd place: per-member L2-normalised descriptors concatenated in member order."""
    return Concat(normalize)


def family_groups(member_cfgs: Sequence[dict[str, Any]]) -> list[tuple[str, list[int]]]:
    """``[(family, member indices)]`` in order of each family's first appearance."""
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(member_cfgs):
        fam = (cfg or {}).get("family")
        if not fam:
            raise EnsembleConfigError(
                f"ensemble combiner 'family_mean_concat': member {i} ({(cfg or {}).get('recipe', '?')}) has no "
                "'family'; add family: <name> to every entry of ensemble.members"
            )
        groups.setdefault(str(fam), []).append(i)
    return list(groups.items())


def _family_width(fam: str, widths: set[int]) -> int:
    if len(widths) != 1:
        raise EnsembleConfigError(
            f"ensemble combiner 'family_mean_concat': family '{fam}' mixes descriptor widths {sorted(widths)}; "
            "give its members the same embedding_dim or split the family"
        )
    return next(iter(widths))


class FamilyMeanConcat:
    """GLR2021 1st place: average L2-normalised descriptors per model family, then concatenate; one
    slice per family (paper §2.4.2: three 512-d vectors -> 1536-d, post-processed per family)."""

    def __init__(self, normalize_members: bool = True, normalize_families: bool = True) -> None:
        self.normalize_members = bool(normalize_members)
        self.normalize_families = bool(normalize_families)

    def __call__(self, embeddings: Sequence[torch.Tensor], member_cfgs: Sequence[dict[str, Any]]) -> torch.Tensor:
        _check(embeddings, member_cfgs, "ensemble combiner 'family_mean_concat'")
        parts = []
        for fam, idx in family_groups(member_cfgs):
            _family_width(fam, {int(embeddings[i].shape[1]) for i in idx})
            vecs = [F.normalize(embeddings[i].float(), dim=1) if self.normalize_members else embeddings[i].float()
                    for i in idx]
            mean = torch.stack(vecs).mean(0)
            parts.append(F.normalize(mean, dim=1) if self.normalize_families else mean)
        return torch.cat(parts, dim=1)

    def slice_dims(self, member_dims: Sequence[int], member_cfgs: Sequence[dict[str, Any]]) -> list[int]:
        """One width per family, in order of first appearance."""
        return [_family_width(fam, {int(member_dims[i]) for i in idx}) for fam, idx in family_groups(member_cfgs)]


def family_mean_concat(normalize_members: bool = True, normalize_families: bool = True) -> FamilyMeanConcat:
    """GLR2021 1st place: average L2-normalised descriptors per model family, then concatenate."""
    return FamilyMeanConcat(normalize_members, normalize_families)
