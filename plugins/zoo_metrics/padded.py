"""Ragged id/label lists <-> padded ``int64`` matrices (``-1`` = padding), the metrics' input layout."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: padding value of a padded id/label matrix (also the non-landmark label)
PAD: int = -1


def pad_lists(lists: Sequence[Sequence[int]] | np.ndarray, width: int | None = None) -> np.ndarray:
    """``Q`` lists of non-negative ints -> ``int64 Q x W`` padded with ``-1`` (W = longest list or ``width``).

    A 1-D array is read as one item per query (``-1`` = none); a 2-D array is returned as is.
    """
    if isinstance(lists, np.ndarray):
        arr = lists.astype(np.int64, copy=False)
        if arr.ndim == 1:
            return arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"expected a 1-D or 2-D array of ids, got shape {arr.shape}")
        return arr if width is None else _fit_width(arr, width)
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    w = int(lengths.max(initial=0)) if width is None else int(width)
    out = np.full((len(lists), max(w, 1)), PAD, dtype=np.int64)
    if lengths.sum():
        flat = np.fromiter((v for x in lists for v in x), dtype=np.int64, count=int(lengths.sum()))
        rows = np.repeat(np.arange(len(lists)), lengths)
        cols = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        keep = cols < out.shape[1]
        out[rows[keep], cols[keep]] = flat[keep]
    return out


def _fit_width(arr: np.ndarray, width: int) -> np.ndarray:
    if arr.shape[1] >= width:
        return arr[:, :width]
    return np.pad(arr, ((0, 0), (0, width - arr.shape[1])), constant_values=PAD)


def as_padded(value: Any) -> np.ndarray:
    """Accept a padded matrix, a 1-D array or flat list (one id per query) or a list of lists."""
    if isinstance(value, np.ndarray):
        return pad_lists(value)
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return pad_lists(value.detach().cpu().numpy())
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    items = list(value)
    if items and all(np.ndim(x) == 0 for x in items):  # a flat list: one id per query
        return pad_lists(np.asarray(items, dtype=np.int64))
    return pad_lists(items)
