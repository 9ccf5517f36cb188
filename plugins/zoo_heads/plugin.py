"""Built-in heads: ``arcface``, ``subcenter_arcface`` (cosines, no margin) and ``linear`` (logits).

Factory contract: ``factory(in_features, num_classes, subcenters=..., **kw)``; the factories live in
:mod:`zoo_heads.factories` and are imported when a head is built.
"""

from __future__ import annotations

from zoo import hookimpl
from zoo.registry import ComponentRegistrar

TEST_KWARGS = {"in_features": 16, "num_classes": 10}


@hookimpl
def zoo_register_heads(registrar: ComponentRegistrar) -> None:
    registrar.add(
        "arcface",
        "zoo_heads.factories:create_arcface",
        description="ArcMarginProduct cosines, xavier init (GUIE 2022, Henkel & Singer 2020)",
        test_kwargs=TEST_KWARGS,
    )
    registrar.add(
        "subcenter_arcface",
        "zoo_heads.factories:create_subcenter_arcface",
        description="sub-center ArcMarginProduct, k=3, class-major rows (GLR2020 3rd, GLR2021)",
        test_kwargs=TEST_KWARGS,
    )
    registrar.add(
        "linear",
        "zoo_heads.factories:create_linear",
        description="Linear(D, C) logits (softmax baseline, GLR2019)",
        test_kwargs=TEST_KWARGS,
        output="logits",
    )
