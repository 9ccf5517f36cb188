"""Built-in losses: ``arcface_dynamic``, ``arcface_scheduled`` and ``cross_entropy``.

Call contract: ``loss(logits, target)`` with int64 ``(B,)`` or float ``(B, C)`` targets -> scalar.
"""

from __future__ import annotations

from zoo import hookimpl
from zoo.registry import ComponentRegistrar

#: a 10-class toy class histogram so the dynamic-margin loss is usable without a dataset
TEST_CLASS_COUNTS = [50, 1, 7, 3, 120, 2, 9, 30, 5, 14]


@hookimpl
def zoo_register_losses(registrar: ComponentRegistrar) -> None:
    registrar.add(
        "arcface_dynamic",
        "zoo_losses.arcface:ArcFaceDynamicMargin",
        description="ArcFace, per-class margins n^-1/4 -> [0.05, 0.5], s=80 (GLR2020 3rd; s=45 GLR2021)",
        test_kwargs={"class_counts": TEST_CLASS_COUNTS},
        test_num_classes=len(TEST_CLASS_COUNTS),
    )
    registrar.add(
        "arcface_scheduled",
        "zoo_losses.arcface:ArcFaceScheduledMargin",
        description="ArcFace, margin min(0.3 + 0.1(e-1), 0.8), s=30 (GUIE 2022 2nd place)",
    )
    registrar.add(
        "cross_entropy",
        "zoo_losses.cross_entropy:CrossEntropy",
        description="softmax cross-entropy, optional label smoothing (GLR2019)",
    )
