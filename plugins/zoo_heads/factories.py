"""Head factories (the registered ``arcface``, ``subcenter_arcface`` and ``linear``).

Contract: ``factory(in_features, num_classes, subcenters=..., **kw)``; unknown options are an error.
"""

from __future__ import annotations

from torch import nn

from zoo.registry import ZooError
from zoo_heads.arcmargin import DEFAULT_SUBCENTERS, ArcMarginProduct, SubCenterArcMarginProduct
from zoo_heads.linear import LinearHead


class HeadConfigError(ZooError, ValueError):
    """A head configuration that cannot be built."""


def create_arcface(in_features: int, num_classes: int, subcenters: int = 1, **kw) -> nn.Module:
    """Plain ArcMarginProduct (xavier init; GUIE 2022 / Henkel & Singer 2020); ``subcenters > 1`` gives
    GUIE's xavier-initialised sub-center variant."""
    _no_extra("arcface", kw)
    if int(subcenters) == 1:
        return ArcMarginProduct(in_features, num_classes)
    return SubCenterArcMarginProduct(in_features, num_classes, k=int(subcenters), init="xavier")


def create_subcenter_arcface(
    in_features: int, num_classes: int, subcenters: int = DEFAULT_SUBCENTERS, init: str = "uniform", **kw
) -> nn.Module:
    """Sub-center ArcMarginProduct, k=3, class-major rows, uniform ±1/sqrt(D) init (GLR2020 3rd place)."""
    _no_extra("subcenter_arcface", kw)
    return SubCenterArcMarginProduct(in_features, num_classes, k=int(subcenters), init=init)


def create_linear(in_features: int, num_classes: int, subcenters: int = 1, bias: bool = True, **kw) -> nn.Module:
    """Plain Linear(D, C) classifier returning logits (softmax baseline, GLR2019)."""
    _no_extra("linear", kw)
    if int(subcenters) != 1:
        raise HeadConfigError(
            f"head 'linear' has no sub-centers but model.head.subcenters={subcenters}; set it to 1 "
            "or use head type 'subcenter_arcface'"
        )
    return LinearHead(in_features, num_classes, bias=bias)


def _no_extra(name: str, kw: dict) -> None:
    if kw:
        raise HeadConfigError(
            f"head '{name}' got unknown options {sorted(kw)}; remove them from model.head in the recipe"
        )
