"""Built-in poolings (``gem``, ``avg``, ``max``) and necks (``option_d``, ``linear_swish``, ``dropout_linear``)."""

from __future__ import annotations

from zoo import hookimpl
from zoo.registry import ComponentRegistrar


@hookimpl
def zoo_register_poolings(registrar: ComponentRegistrar) -> None:
    registrar.add(
        "gem",
        "zoo_pooling.gem:GeM",
        description="GeM pooling, p=3 trainable, eps=1e-6 (GLR2021 1st/top-100, Henkel & Singer 2020)",
    )
    registrar.add("avg", "zoo_pooling.pools:AvgPool", description="global average pooling (GLR2020 3rd place)")
    registrar.add("max", "zoo_pooling.pools:MaxPool", description="global max pooling (GLR2019 Xception)")


@hookimpl
def zoo_register_necks(registrar: ComponentRegistrar) -> None:
    registrar.add(
        "option_d",
        "zoo_pooling.necks:OptionDNeck",
        description="Linear-BN1d-PReLU to 512 (option-D; GLR2021 1st/top-100)",
        test_kwargs={"in_features": 32, "out_features": 16},
    )
    registrar.add(
        "linear_swish",
        "zoo_pooling.necks:LinearSwishNeck",
        description="Linear + Swish to 512 (GLR2020 3rd place 'feat')",
        test_kwargs={"in_features": 32, "out_features": 16},
    )
    registrar.add(
        "dropout_linear",
        "zoo_pooling.necks:DropoutLinearNeck",
        description="Dropout(0.2) + Linear to 64 (GUIE 2022 2nd place)",
        test_kwargs={"in_features": 32, "out_features": 16},
    )
