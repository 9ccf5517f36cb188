"""ArcFace losses on precomputed cosines: per-class dynamic margins and epoch-scheduled margins.

Seed formula (``ArcFaceLossAdaptiveMargin``; GLR2020 3rd, GLR2021 1st, GLR2021 top-100; GUIE 2022
with a scalar margin), SEED_SYSTEMS.md section 0.3::

    phi = cos * cos(m) - sin * sin(m)                 # cos(theta + m)
    phi = where(cos > cos(pi - m), phi, cos - sin(pi - m) * m)
    out = s * (onehot * phi + (1 - onehot) * cos)
    loss = mean_b( -sum_c onehot * log_softmax(out) )

Differences from the released code, none of which change values away from |cos| = 1:
margins are tensors on the logits' device (upstream hard-codes ``.cuda()``); logits are cast to
float32 (AMP-safe); ``sin = sqrt(clamp(1 - cos**2, min=1e-12))`` after clamping ``cos`` to
[-1, 1], so neither the value nor the gradient is NaN at ``|cos| = 1``. Soft targets ``B x C``
generalise the one-hot: each class column ``c`` gets its own margin ``m_c`` and the mix
``t * phi + (1 - t) * cos``, which equals the upstream formula for one-hot targets. A soft target is
*not* how the seeds train on mixed batches: upstream (GLR2021 top-100 ``utils.py`` L309-312) takes
``lam * L(x, y_a) + (1 - lam) * L(x, y_b)`` of this loss, a different function (the margin moves with
the target); the batch mixers hand the trainer a :class:`zoo.train.step.MixedTargets` for that.

``margin_order="first_seen"`` reproduces GLR2021 top-100's misaligned margins (``utils.py`` L486-488:
margins from ``value_counts().sort_index()``, i.e. in sorted-label order, indexed by class codes
numbered in order of first appearance, ``data.py`` L145-148); the default ``"class"`` aligns each
margin with its own class (zoo's fix). The trainer calls :meth:`ArcFaceDynamicMargin.set_class_order`
with the training targets in row order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.registry import ZooError
from zoo_losses.margins import (
    DYNAMIC_HI,
    DYNAMIC_LAMBDA,
    DYNAMIC_LO,
    SCHEDULE_M0,
    SCHEDULE_MAX,
    SCHEDULE_STRIDE,
    dynamic_margins,
    first_seen_ranks,
    scheduled_margin,
)

GLR2020_S = 80.0
GUIE_S = 30.0
SIN_EPS = 1e-12
#: ``class``: margin c from class c's count (zoo); ``first_seen``: GLR2021 top-100's misalignment
MARGIN_ORDERS = ("class", "first_seen")


class LossInputError(ZooError, ValueError):
    """Logits/targets that do not fit the loss (shape, dtype, class count)."""


def check_labels(target: torch.Tensor, num_classes: int) -> None:
    """int class ids of shape ``(B,)`` within ``[0, num_classes)``, or a :class:`LossInputError`."""
    if target.ndim != 1:
        raise LossInputError(f"integer targets must have shape (B,), got {tuple(target.shape)}")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise LossInputError(
            f"target class ids must lie in [0, {num_classes}), got [{int(target.min())}, {int(target.max())}]"
        )


def as_target_distribution(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 ``(B,)`` class ids or float ``(B, C)`` soft targets -> float32 ``(B, C)``."""
    if not target.is_floating_point():
        check_labels(target, num_classes)
        return F.one_hot(target.long(), num_classes).float()
    if target.ndim != 2 or target.shape[1] != num_classes:
        raise LossInputError(
            f"soft targets must have shape (B, {num_classes}) matching the logits, got {tuple(target.shape)}"
        )
    return target.float()


def margin_cosine(cos: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``cos(theta + m)`` with the upstream fallback ``cos - sin(pi - m) * m`` where ``cos <= cos(pi - m)``.

    ``cos`` float32 in [-1, 1]; ``m`` broadcastable to it. NaN-free in value and gradient at |cos| = 1.
    """
    sine = torch.sqrt((1.0 - cos * cos).clamp(min=SIN_EPS))
    phi = cos * torch.cos(m) - sine * torch.sin(m)
    return torch.where(cos > torch.cos(math.pi - m), phi, cos - torch.sin(math.pi - m) * m)


def arcface_logits(cosine: torch.Tensor, target: torch.Tensor, margins: torch.Tensor | float, s: float) -> torch.Tensor:
    """Scaled ArcFace logits ``s * (t * phi + (1 - t) * cos)``; ``margins`` scalar or per class ``(C,)``.

    ``target`` is a float ``(B, C)`` distribution (see :func:`as_target_distribution`).
    """
    cos = cosine.float().clamp(-1.0, 1.0)
    m = torch.as_tensor(margins, dtype=torch.float32, device=cos.device)
    if m.ndim == 1:
        m = m.unsqueeze(0)  # 1 x C, broadcast over the batch
    phi = margin_cosine(cos, m)
    t = target.to(cos.device, torch.float32)
    return (t * phi + (1.0 - t) * cos) * float(s)


def arcface_logits_at_target(
    cosine: torch.Tensor, labels: torch.Tensor, margins: torch.Tensor | float, s: float
) -> torch.Tensor:
    """Same as :func:`arcface_logits` for int64 labels, computing the margin only at each label
    (``B`` values instead of ``B x C``), as the released code's per-sample ``margins[labels]``."""
    cos = cosine.float().clamp(-1.0, 1.0)
    idx = labels.to(cos.device).long().unsqueeze(1)
    m = torch.as_tensor(margins, dtype=torch.float32, device=cos.device)
    m = m[idx.squeeze(1)] if m.ndim == 1 else m.expand(idx.shape[0])
    phi = margin_cosine(cos.gather(1, idx).squeeze(1), m)
    return cos.scatter(1, idx, phi.unsqueeze(1)) * float(s)


def dense_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_b(-sum_c t * log_softmax(logits))`` (upstream ``DenseCrossEntropy``)."""
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def _arcface_loss(logits: torch.Tensor, target: torch.Tensor, margins: torch.Tensor | float, s: float) -> torch.Tensor:
    """Hard labels take the sparse path (margin at the label only), soft targets the dense one."""
    num_classes = logits.shape[-1]
    if not target.is_floating_point():
        check_labels(target, num_classes)
        out = arcface_logits_at_target(logits, target, margins, s)
        return F.cross_entropy(out, target.to(out.device).long())
    t = as_target_distribution(target, num_classes)
    out = arcface_logits(logits, t, margins, s)
    return dense_cross_entropy(out, t.to(out.device))


class ArcFaceDynamicMargin(nn.Module):
    """ArcFace with per-class dynamic margins (seed: GLR2020 3rd place; ``s=80``, ``lam=1/4``, [0.05, 0.5]).

    GLR2021 1st place sets ``s=45``. Margins come from :meth:`set_class_counts` (class
    counts aligned with class indices) or ``class_counts=`` / ``margins=`` at construction; they
    live in a non-persistent buffer, so ``.to(device)`` moves them and checkpoints stay clean.
    ``margin_order`` (see the module docstring): ``class`` (default) or ``first_seen`` (upstream
    top-100's misalignment; needs :meth:`set_class_order`).
    """

    def __init__(
        self,
        s: float = GLR2020_S,
        lam: float = DYNAMIC_LAMBDA,
        lo: float = DYNAMIC_LO,
        hi: float = DYNAMIC_HI,
        class_counts: Any = None,
        margins: Any = None,
        margin_order: str = "class",
    ) -> None:
        super().__init__()
        self.s = float(s)
        self.lam, self.lo, self.hi = float(lam), float(lo), float(hi)
        if margin_order not in MARGIN_ORDERS:
            raise LossInputError(
                f"arcface_dynamic: margin_order must be one of {', '.join(MARGIN_ORDERS)}, got '{margin_order}'"
            )
        self.margin_order = margin_order
        self._aligned: torch.Tensor | None = None  # margins aligned with class indices
        self._ranks: np.ndarray | None = None  # first-appearance rank of each class (first_seen order)
        self.register_buffer("margins", torch.empty(0), persistent=False)
        if class_counts is not None and margins is not None:
            raise LossInputError("arcface_dynamic: give class_counts or margins, not both")
        if class_counts is not None:
            self.set_class_counts(class_counts)
        elif margins is not None:
            self.set_margins(margins)

    def set_class_counts(self, counts: Any) -> torch.Tensor:
        """Compute margins from per-class image counts (1-D, index = class id); returns the margins in use."""
        self._aligned = dynamic_margins(counts, self.lam, self.lo, self.hi)
        self._apply_order()
        return self.margins

    def set_class_order(self, targets: Any) -> None:
        """The training targets in row order; ``margin_order="first_seen"`` uses the order in which the
        classes first appear (upstream top-100's class codes). No effect with ``margin_order="class"``."""
        if self.margin_order != "first_seen":
            return
        t = np.asarray(targets.detach().cpu() if isinstance(targets, torch.Tensor) else targets, dtype=np.int64)
        self._ranks = first_seen_ranks(t, int(t.max()) + 1 if t.size else 0)
        self._apply_order()

    def _apply_order(self) -> None:
        if self._aligned is None:
            return
        if self.margin_order == "class":
            self.set_margins(self._aligned)
            return
        if self._ranks is None:
            raise LossInputError(
                "arcface_dynamic: margin_order=first_seen needs the classes' order of first appearance: "
                "call loss.set_class_order(training targets in row order) (zoo train does)"
            )
        n = self._aligned.numel()
        if len(self._ranks) != n:
            raise LossInputError(
                f"arcface_dynamic: set_class_order saw {len(self._ranks)} classes but there are {n} class counts"
            )
        self.set_margins(self._aligned[torch.from_numpy(self._ranks)])

    def set_margins(self, margins: Any) -> None:
        m = torch.as_tensor(margins, dtype=torch.float32).reshape(-1)
        self.margins = m.to(self.margins.device)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.margins.numel() == 0:
            raise LossInputError(
                "arcface_dynamic: no margins yet; call loss.set_class_counts(counts) with the training "
                "set's per-class image counts (zoo train does this) or pass class_counts= in the recipe"
            )
        num_classes = logits.shape[-1]
        if self.margins.numel() != num_classes:
            raise LossInputError(
                f"arcface_dynamic: {self.margins.numel()} class margins but the logits have {num_classes} "
                "classes; the class counts must cover every class index (model.head.num_classes)"
            )
        return _arcface_loss(logits, target, self.margins.to(logits.device), self.s)

    def extra_repr(self) -> str:
        return (f"s={self.s}, lam={self.lam}, lo={self.lo}, hi={self.hi}, classes={self.margins.numel()}, "
                f"margin_order={self.margin_order}")


class ArcFaceScheduledMargin(nn.Module):
    """ArcFace with an epoch-scheduled margin (seed: GUIE 2022 2nd place; ``s=30``, m 0.3 +0.1/epoch, max 0.8).

    Call :meth:`set_epoch` with the 1-based epoch before each epoch (epoch 1 is the default).
    """

    def __init__(
        self,
        s: float = GUIE_S,
        m: float = SCHEDULE_M0,
        stride: float = SCHEDULE_STRIDE,
        max_m: float = SCHEDULE_MAX,
    ) -> None:
        super().__init__()
        self.s = float(s)
        self.m0, self.stride, self.max_m = float(m), float(stride), float(max_m)
        self.epoch = 1
        self.m = scheduled_margin(1, self.m0, self.stride, self.max_m)

    def set_epoch(self, epoch: int) -> float:
        """Set the 1-based epoch; returns the margin now in use."""
        self.m = scheduled_margin(epoch, self.m0, self.stride, self.max_m)
        self.epoch = int(epoch)
        return self.m

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _arcface_loss(logits, target, self.m, self.s)

    def extra_repr(self) -> str:
        return f"s={self.s}, m={self.m:.3f} (epoch {self.epoch}; m0={self.m0}, stride={self.stride}, max={self.max_m})"
