"""Built-in backbones: ``timm``, named timm architectures of the seeds, and the complex backbones.

Registering imports nothing heavy: every factory is a ``"module:attribute"`` reference (or, for the
named timm architectures, a small function importing timm on first use), so a broken or missing
module never takes the other registrations down and ``zoo components`` starts fast:

* ``dolg_efficientnet`` -> ``zoo_backbones.dolg.create_dolg_efficientnet`` (GLR2021 1st place)
* ``hybrid_swin`` -> ``zoo_backbones.hybrid_swin.create_hybrid_swin`` (GLR2021 1st place)
* ``openclip_vit`` -> ``zoo_backbones.openclip_vit.create_openclip_vit`` (GUIE 2022 2nd place)

Their tiny contract-test builds (module-level ``TEST_KWARGS`` literals) are read from the source
with :func:`ast.literal_eval`, without importing the module (which would import open_clip etc.).
A module that fails to import is reported when the component is built
(:class:`zoo.registry.ComponentImportError`, naming the module and the missing dependency).
"""

from __future__ import annotations

import ast
import importlib.util
import logging
from pathlib import Path
from typing import Any, Callable

from zoo import hookimpl
from zoo.registry import ComponentRegistrar
from zoo_backbones.named import NAMED_BACKBONES

log = logging.getLogger(__name__)

#: registry name -> (module under zoo_backbones, factory function, description)
COMPLEX_BACKBONES: dict[str, tuple[str, str, str]] = {
    "dolg_efficientnet": (
        "dolg",
        "create_dolg_efficientnet",
        "DOLG-EfficientNet: multi-atrous local branch + GeM global branch, orthogonal fusion (GLR2021 1st)",
    ),
    "hybrid_swin": (
        "hybrid_swin",
        "create_hybrid_swin",
        "Hybrid-Swin: EfficientNet stem as Swin patch embedding (GLR2021 1st)",
    ),
    "openclip_vit": (
        "openclip_vit",
        "create_openclip_vit",
        "open_clip ViT visual tower without projection, e.g. ViT-H-14 (GUIE 2022 2nd)",
    ),
}


def named_backbone(name: str) -> Callable[..., Any]:
    """The factory of the fixed timm architecture ``name``; timm is imported when it is called."""

    def factory(**kwargs: Any) -> Any:
        from zoo_backbones.timm_backbones import named_factory

        return named_factory(name)(**kwargs)

    factory.__name__ = f"create_{name.replace('.', '_')}"
    factory.__doc__ = f"timm '{name}': {NAMED_BACKBONES.get(name, '')}"
    return factory


def read_test_kwargs(module: str) -> dict[str, Any] | None:
    """The literal ``TEST_KWARGS`` dict of ``zoo_backbones.<module>`` read from source, or None."""
    try:
        spec = importlib.util.find_spec(f"zoo_backbones.{module}")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError) as exc:
        log.warning("cannot parse %s for TEST_KWARGS: %s", spec.origin, exc)
        return None
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and target.id == "TEST_KWARGS" and value is not None:
            try:
                out = ast.literal_eval(value)
            except ValueError:  # importing the module to evaluate it would import torch at registration
                log.warning("%s: TEST_KWARGS must be a literal dict (read without importing the module)", spec.origin)
                return None
            return dict(out) if isinstance(out, dict) else None
    return None


@hookimpl
def zoo_register_backbones(registrar: ComponentRegistrar) -> None:
    registrar.add(
        "timm",
        "zoo_backbones.timm_backbones:create_timm_backbone",
        description="any timm model (name incl. pretrained tag) as an NCHW feature map",
        test_kwargs={"name": "mobilenetv2_035"},
    )
    for name, what in NAMED_BACKBONES.items():
        registrar.add(name, named_backbone(name), description=f"timm {name}: {what}")
    for name, (module, func, description) in COMPLEX_BACKBONES.items():
        meta: dict[str, Any] = {}
        test_kwargs = read_test_kwargs(module)
        if test_kwargs is not None:
            meta["test_kwargs"] = test_kwargs
        registrar.add(name, f"zoo_backbones.{module}:{func}", description=description, **meta)
