"""Converter for the GLR2020 3rd-place layout (haqishen; seed 000_6df0a360bef8463b).

Upstream modules (``models.py`` / the submission notebook): ``enet`` (geffnet EfficientNet with
``classifier = Identity``, pip ``resnest101`` with ``fc = Identity``, or clovaai ``ReXNetV1(width 2.0)``
with ``output = Identity``), ``feat = Linear(C, 512)`` (+ parameter-free Swish) and
``metric_classify = ArcMarginProduct_subcenter(512, 81313)`` (k=3). Checkpoints are
``{'epoch', 'model_state_dict', 'optimizer_state_dict'}`` with ``module.`` prefixes (apex DDP);
``zoo.weights.convert`` unwraps both.

Mapping onto zoo's ``glr2020-3rd-*`` recipes (backbone ``timm`` -> ``backbone.net``, neck
``linear_swish``, head ``subcenter_arcface``)::

    enet.<k>                -> backbone.net.<k>          (geffnet == timm tf_efficientnet_bN.ns_jft_in1k,
                                                          pip resnest101 == timm resnest101e: same keys)
    enet.features.<...>     -> backbone.net.<...>        (ReXNet: one-to-one BY POSITION onto timm rexnet_200)
    feat.weight / feat.bias -> neck.0.weight / neck.0.bias
    metric_classify.weight  -> head.weight               (C*k x 512, class-major rows: unchanged)

Anything else is passed through unchanged, so the strict fit check in ``zoo.weights.convert``
reports it as unexpected instead of it being dropped silently.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from zoo.weights.convert import ConversionError

LAYOUT = "glr2020-3rd"
ENET = "enet."
REXNET_HEAD = ("output.1.weight", "output.1.bias")  # clovaai: output = Sequential(Dropout, Conv2d(C, classes, 1))
TIMM_REXNET_HEAD = ("head.fc.weight", "head.fc.bias")


def _backbone_cfg(cfg: Any) -> dict[str, Any]:
    from omegaconf import DictConfig, OmegaConf

    node = cfg.model.backbone
    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    return {k: v for k, v in data.items() if k != "type"}


def is_rexnet(cfg: Any) -> bool:
    return str(_backbone_cfg(cfg).get("name", "")).split(".")[0].startswith("rexnet")


def timm_target_state(cfg: Any) -> dict[str, torch.Tensor]:
    """The recipe backbone's timm state dict (keys in module order, shapes) built on the meta device.

    The backbone is the recipe's own ``model.backbone`` entry created through the registry (this
    plugin never imports the backbones plugin); its timm network is ``backbone.net``, the module the
    ``backbone.net.*`` keys written here belong to.
    """
    from zoo.plugins import get_registry

    kwargs = _backbone_cfg(cfg)
    kwargs["pretrained"] = False
    with torch.device("meta"):
        backbone = get_registry().create("backbone", str(cfg.model.backbone.type), **kwargs)
    net = getattr(backbone, "net", None)
    if net is None:
        raise ConversionError(
            f"{LAYOUT}: backbone type '{cfg.model.backbone.type}' has no timm network 'net'; the GLR2020 "
            "3rd-place ReXNet layout maps onto 'type: timm, name: rexnet_200'"
        )
    return net.state_dict()


def rexnetv1_to_timm(
    src: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Map a clovaai ``ReXNetV1`` state dict (keys ``features.*`` [+ ``output.1.*``]) onto timm ReXNet keys.

    The two implementations register the same tensors in the same order (stem conv/BN, then per
    block expand conv/BN, depthwise conv/BN, SE conv/BN/conv, projection conv/BN, then the final
    1x1 conv/BN), so the ``i``-th body tensor maps onto the ``i``-th non-head timm tensor; every
    pair must agree in shape. The classifier ``output.1`` is a 1x1 conv (``C x F x 1 x 1``) and
    timm's ``head.fc`` a linear layer (``C x F``): only that weight needs flattening. ``src`` must
    keep the order it was saved in (``torch.load`` preserves it).
    """
    body = [(k, v) for k, v in src.items() if k.startswith("features.")]
    other = [k for k in src if not k.startswith("features.") and k not in REXNET_HEAD]
    if other:
        raise ConversionError(f"ReXNetV1 state dict has keys outside features./output.1.: {other[:10]}")
    tgt_body = [k for k in target if not k.startswith("head.")]
    if len(body) != len(tgt_body):
        raise ConversionError(
            f"ReXNetV1 -> timm: {len(body)} body tensors in the checkpoint but {len(tgt_body)} in the timm "
            "model; is model.backbone.name the right width (rexnet_200 for ReXNetV1(width_mult=2.0))?"
        )
    out: dict[str, torch.Tensor] = {}
    for (sk, sv), tk in zip(body, tgt_body):
        if tuple(sv.shape) != tuple(target[tk].shape):
            raise ConversionError(
                f"ReXNetV1 -> timm: positional mismatch, {sk} {tuple(sv.shape)} vs {tk} {tuple(target[tk].shape)}"
            )
        out[tk] = sv
    has_src_head = REXNET_HEAD[0] in src
    has_tgt_head = TIMM_REXNET_HEAD[0] in target
    if has_src_head and has_tgt_head:
        w = src[REXNET_HEAD[0]]
        out[TIMM_REXNET_HEAD[0]] = w.reshape(w.shape[0], -1)
        if REXNET_HEAD[1] in src:
            out[TIMM_REXNET_HEAD[1]] = src[REXNET_HEAD[1]]
    elif has_src_head:
        raise ConversionError(
            "ReXNetV1 checkpoint has a classifier (output.1.*) but the target has none (num_classes=0)"
        )
    return out


def convert(state_dict: Mapping[str, torch.Tensor], cfg: Any) -> dict[str, torch.Tensor]:
    """GLR2020 3rd-place state dict (``module.`` already stripped) -> zoo keys for ``cfg``'s model."""
    out: dict[str, torch.Tensor] = {}
    enet = {k[len(ENET):]: v for k, v in state_dict.items() if k.startswith(ENET)}
    if not enet:
        raise ConversionError(
            f"{LAYOUT}: no 'enet.' keys in the checkpoint (found e.g. {list(state_dict)[:5]}); "
            "is it really a GLR2020 3rd-place checkpoint?"
        )
    if is_rexnet(cfg):
        mapped = rexnetv1_to_timm(enet, timm_target_state(cfg))
        out.update({f"backbone.net.{k}": v for k, v in mapped.items()})
    else:
        out.update({f"backbone.net.{k}": v for k, v in enet.items()})
    renames = {"feat.weight": "neck.0.weight", "feat.bias": "neck.0.bias", "metric_classify.weight": "head.weight"}
    for k, v in state_dict.items():
        if k.startswith(ENET):
            continue
        out[renames.get(k, k)] = v
    return out
