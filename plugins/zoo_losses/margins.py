"""ArcFace margin schedules: per-class dynamic margins and epoch-scheduled margins.

* :func:`dynamic_margins` — GLR2020 3rd place (haqishen ``train.py``; identical code in GLR2021 1st
  ``data/ch_ds_1.py`` and GLR2021 top-100 ``utils.py``): ``f(n) = a * n**(-lambda) + b`` with
  ``lambda = 1/4`` and ``a, b`` chosen so that the per-class values span ``[0.05, 0.5]``
  (``(t - t.min()) / (t.max() - t.min()) * 0.45 + 0.05`` with ``t = n**-0.25``).
* :func:`scheduled_margin` — GUIE 2022 2nd place (``utils/loss.py``):
  ``m_e = min(m0 + stride * (e - 1), m_max)`` with ``m0=0.3, stride=0.1, m_max=0.8`` (epochs 1-based).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from zoo.registry import ZooError

log = logging.getLogger(__name__)

DYNAMIC_LAMBDA = 0.25
DYNAMIC_LO = 0.05
DYNAMIC_HI = 0.5
SCHEDULE_M0 = 0.3
SCHEDULE_STRIDE = 0.1
SCHEDULE_MAX = 0.8


class MarginError(ZooError, ValueError):
    """Class counts or margin settings that cannot produce margins."""


def _as_counts(counts: Any) -> np.ndarray:
    if isinstance(counts, torch.Tensor):
        counts = counts.detach().cpu().numpy()
    arr = np.asarray(counts, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise MarginError(
            f"class counts must be a non-empty 1-D array aligned with class indices, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise MarginError("class counts must be finite and >= 0")
    return arr


def dynamic_margins(
    counts: Any, lam: float = DYNAMIC_LAMBDA, lo: float = DYNAMIC_LO, hi: float = DYNAMIC_HI
) -> torch.Tensor:
    """Per-class margins ``f(n) = a * n**(-lam) + b`` mapped onto ``[lo, hi]`` (GLR2020 3rd place).

    ``counts[c]`` is the number of training images of class ``c``. The rarest class gets ``hi``,
    the most frequent ``lo``. Classes with zero images (absent from the training split) get ``hi``
    (the limit of ``n**-lam`` for ``n -> 0``) and are left out of the min/max, which upstream
    (``value_counts().sort_index()``) silently misaligns instead. If every present class has the
    same count the spread is undefined and every class gets ``lo``. Returns float32 ``(C,)``.
    """
    if lam <= 0:
        raise MarginError(f"dynamic margins: lam must be > 0, got {lam}")
    if not lo <= hi:
        raise MarginError(f"dynamic margins: need lo <= hi, got lo={lo}, hi={hi}")
    n = _as_counts(counts)
    present = n > 0
    if not present.any():
        raise MarginError("dynamic margins: every class count is zero")
    t = np.zeros_like(n)
    t[present] = n[present] ** (-float(lam))
    t_min, t_max = t[present].min(), t[present].max()
    out = np.full_like(n, float(hi))
    if t_max > t_min:
        out[present] = (t[present] - t_min) / (t_max - t_min) * (hi - lo) + lo
    else:
        out[present] = float(lo)
    missing = int((~present).sum())
    if missing:
        log.warning("dynamic margins: %d of %d classes have no images; they get the largest margin %.3f",
                    missing, n.size, hi)
    return torch.from_numpy(out.astype(np.float32))


def first_seen_ranks(targets: Any, num_classes: int) -> np.ndarray:
    """``ranks[c]`` = the position of class ``c`` in the order the classes first appear in ``targets``
    (row order). Every class ``0..num_classes-1`` must appear; -1 targets (no class) are ignored."""
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    t = t[t >= 0]
    classes, first = np.unique(t, return_index=True)
    if len(classes) != num_classes or (num_classes and (classes[0] != 0 or classes[-1] != num_classes - 1)):
        raise MarginError(
            f"class order: the targets hold {len(classes)} distinct classes, expected every class 0..{num_classes - 1}"
        )
    ranks = np.empty(num_classes, dtype=np.int64)
    ranks[classes[np.argsort(first, kind="stable")]] = np.arange(num_classes)
    return ranks


def scheduled_margin(
    epoch: int, m0: float = SCHEDULE_M0, stride: float = SCHEDULE_STRIDE, max_m: float = SCHEDULE_MAX
) -> float:
    """Margin of 1-based ``epoch``: ``min(m0 + stride * (epoch - 1), max_m)`` (GUIE 2022 2nd place)."""
    if int(epoch) < 1:
        raise MarginError(f"scheduled margin: epochs are 1-based, got epoch={epoch}")
    return float(min(m0 + stride * (int(epoch) - 1), max_m))
