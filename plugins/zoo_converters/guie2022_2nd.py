"""Layout ``guie2022-2nd``: GUIE 2022 2nd-place ``XL_CLIP_Net`` checkpoints -> zoo keys.

Seed: GUIE 2022 2nd place (seed ``004_60a6a1e920154956``; upstream ``XL-H/GUIE-2nd-Place-Solution``,
``GUIE/build_model.py``, ``GUIE/models/{clip_vit,Neck,Arc_face_head}.py``; SEED_SYSTEMS §3.1, §3.4).

* ``backbone.net.*`` (open_clip ViT visual keys) -> unchanged (zoo's ``openclip_vit`` keeps the tower
  under ``net``); ``backbone.net.proj`` is dropped: the released forward never uses it.
* ``Neck.neck.1.{weight,bias}`` (``Dropout(0.2) -> Linear(1280, 64)``) -> ``neck.1.*``.
* ``head.weight`` (plain ArcMarginProduct, ``274330 x 64``) -> unchanged.

Checkpoints are ``{'state_dict': ...}`` saved through apex DDP (``module.`` prefix); the wrapper and
prefix are removed before this runs (:func:`zoo.weights.convert.unwrap_state_dict`).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import torch

log = logging.getLogger(__name__)

LAYOUT = "guie2022-2nd"
DROPPED = ("backbone.net.proj",)


def convert(state_dict: Mapping[str, torch.Tensor], cfg: Any) -> dict[str, torch.Tensor]:
    """GUIE 2022 2nd-place checkpoint -> zoo state dict (see the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state_dict.items():
        if key in DROPPED:
            dropped.append(key)
        elif key.startswith("Neck.neck."):
            out["neck." + key[len("Neck.neck."):]] = value
        else:
            out[key] = value  # backbone.net.*, head.weight; others are reported by the strict fit check
    log.info("%s: %d tensors mapped, dropped %s", LAYOUT, len(out), dropped or "nothing")
    return out
