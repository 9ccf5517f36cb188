"""Layout ``glr2021-1st``: GLR2021 1st-place checkpoints (Henkel) -> zoo keys.

Seed: GLR2021 1st place (seed ``001_16109c5d2f066637``; upstream
``ChristofHenkel/kaggle-landmark-2021-1st-place``, ``models/ch_mdl_dolg_efficientnet.py`` and
``models/ch_mdl_hybrid_transformer*.py``; SEED_SYSTEMS §2.1, §2.2, §2.5).

DOLG-EfficientNet (recipe backbone ``dolg_efficientnet``), keys as released:

* ``backbone.*`` (timm EfficientNet ``features_only``) -> ``backbone.encoder.*``
* ``mam.*``, ``attention2d.*``, ``conv_g.*``, ``bn_g.*``, ``global_pool.p`` (the GeM of the global
  branch) -> ``backbone.<same>``
* ``neck.*`` (option-D), ``head.weight`` (sub-center, class-major rows) -> unchanged.

Hybrid-Swin (recipe backbone ``hybrid_swin``), saved under timm 0.4.12:

* ``backbone.*`` (the Swin, whose ``patch_embed`` is the HybridEmbed) -> ``backbone.swin.*``;
* the 35 persistent buffers of timm-0.4.12 Swin-Base (``attn_mask``, ``relative_position_index``) are
  dropped (timm 1.x recomputes them) and ``layers.{i}.downsample`` -> ``layers.{i+1}.downsample``
  (0.4.12 merges patches at the end of a stage, timm 1.x at the start), as timm 1.x's own Swin
  ``checkpoint_filter_fn`` does; checkpoints already in the timm 1.x layout are only re-prefixed;
* ``global_pool.p`` (a GeM created but unused upstream) is dropped;
* ``neck.*``, ``head.weight`` -> unchanged.

``module.`` prefixes and ``model``/``state_dict`` wrappers are removed before this runs
(:func:`zoo.weights.convert.unwrap_state_dict`); tensors are never modified, only renamed.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

import torch
from omegaconf import OmegaConf

from zoo.weights.convert import ConversionError

log = logging.getLogger(__name__)

LAYOUT = "glr2021-1st"
DOLG_BRANCH_PREFIXES = ("mam.", "attention2d.", "conv_g.", "bn_g.", "global_pool.")
SWIN_DROPPED_BUFFERS = ("relative_position_index", "attn_mask")
_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.")


def backbone_type(cfg: Any) -> str:
    node = OmegaConf.select(cfg, "model.backbone.type", default=None) if cfg is not None else None
    if node is None:
        raise ConversionError(
            f"layout '{LAYOUT}' needs a recipe with model.backbone.type dolg_efficientnet or hybrid_swin "
            "(e.g. glr2021-1st-dolg-b5, glr2021-1st-hybrid-b3-swin224)"
        )
    return str(node)


def convert_dolg(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Henkel's DOLG ``Net`` keys -> zoo ``ZooModel`` keys (see the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            out["backbone.encoder." + key[len("backbone."):]] = value
        elif key.startswith(DOLG_BRANCH_PREFIXES):
            out["backbone." + key] = value
        else:
            out[key] = value  # neck.*, head.weight; anything else is reported by the strict fit check
    return out


def swin_key_to_timm1(key: str, old_layout: bool) -> str:
    """A timm Swin key (without the ``backbone.`` prefix) in timm 1.x layout."""
    if not old_layout:
        return key
    return _DOWNSAMPLE.sub(lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", key)


def convert_hybrid(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Henkel's Hybrid-Swin ``Net`` keys (timm 0.4.12 Swin) -> zoo ``ZooModel`` keys."""
    old_layout = "backbone.layers.0.downsample.reduction.weight" in state
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        if key.startswith("backbone."):
            rest = key[len("backbone."):]
            if any(name in rest for name in SWIN_DROPPED_BUFFERS):
                dropped.append(key)
                continue
            out["backbone.swin." + swin_key_to_timm1(rest, old_layout)] = value
        elif key == "global_pool.p":
            dropped.append(key)  # GeM created but unused by the released Hybrid-Swin forward
        else:
            out[key] = value
    log.info(
        "%s hybrid: %s Swin layout, dropped %d entries (%d attention buffers + unused global_pool.p)",
        LAYOUT,
        "timm-0.4.12" if old_layout else "timm-1.x",
        len(dropped),
        sum(1 for k in dropped if k != "global_pool.p"),
    )
    return out


def convert(state_dict: Mapping[str, torch.Tensor], cfg: Any) -> dict[str, torch.Tensor]:
    """GLR2021 1st-place checkpoint (DOLG or Hybrid-Swin, chosen by the recipe) -> zoo state dict."""
    kind = backbone_type(cfg)
    if kind == "dolg_efficientnet":
        return convert_dolg(state_dict)
    if kind == "hybrid_swin":
        return convert_hybrid(state_dict)
    raise ConversionError(
        f"layout '{LAYOUT}' converts DOLG-EfficientNet and Hybrid-Swin checkpoints, but recipe "
        f"'{cfg.get('name')}' has backbone type '{kind}'. Use a glr2021-1st-dolg-* or "
        "glr2021-1st-hybrid-* recipe."
    )
