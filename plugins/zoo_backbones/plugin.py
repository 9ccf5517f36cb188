"""Built-in backbones: ``timm``, named timm architectures of the seeds, and the complex backbones.

Complex backbones live in their own modules and are imported only when built, so a broken or
missing module never takes the other registrations down:

* ``dolg_efficientnet`` -> ``zoo_backbones.dolg.create_dolg_efficientnet`` (GLR2021 1st place)
* ``hybrid_swin`` -> ``zoo_backbones.hybrid_swin.create_hybrid_swin`` (GLR2021 1st place)
* ``openclip_vit`` -> ``zoo_backbones.openclip_vit.create_openclip_vit`` (GUIE 2022 2nd place)

Their tiny contract-test builds (module-level ``TEST_KWARGS`` literals) are read from the source
with :func:`ast.literal_eval`, without importing the module (which would import open_clip etc.).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Any, Callable

from zoo import hookimpl
from zoo.registry import ComponentRegistrar, ZooError
from zoo_backbones.timm_backbones import NAMED_BACKBONES, create_timm_backbone, named_factory

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


class BackboneModuleError(ZooError, ImportError):
    """A complex backbone whose implementation module cannot be imported."""


def lazy_factory(module: str, func: str, name: str) -> Callable[..., Any]:
    """A factory importing ``zoo_backbones.<module>`` and calling ``<func>`` only when a model is built."""
    qualified = f"zoo_backbones.{module}"

    def factory(**kwargs: Any) -> Any:
        try:
            mod = importlib.import_module(qualified)
        except ImportError as exc:
            raise BackboneModuleError(
                f"backbone '{name}': cannot import {qualified} ({type(exc).__name__}: {exc}). "
                "Reinstall instance-zoo or install the missing dependency."
            ) from exc
        fn = getattr(mod, func, None)
        if fn is None:
            raise BackboneModuleError(f"backbone '{name}': {qualified} has no factory '{func}'")
        return fn(**kwargs)

    factory.__name__ = func
    factory.__doc__ = f"Built by {qualified}.{func} (imported on first use)."
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
            except ValueError:
                return _imported_test_kwargs(module)
            return dict(out) if isinstance(out, dict) else None
    return None


def _imported_test_kwargs(module: str) -> dict[str, Any] | None:
    try:
        value = getattr(importlib.import_module(f"zoo_backbones.{module}"), "TEST_KWARGS", None)
    except ImportError:
        return None
    return dict(value) if isinstance(value, dict) else None


@hookimpl
def zoo_register_backbones(registrar: ComponentRegistrar) -> None:
    registrar.add(
        "timm",
        create_timm_backbone,
        description="any timm model (name incl. pretrained tag) as an NCHW feature map",
        test_kwargs={"name": "mobilenetv2_035"},
    )
    for name, what in NAMED_BACKBONES.items():
        registrar.add(name, named_factory(name), description=f"timm {name}: {what}")
    for name, (module, func, description) in COMPLEX_BACKBONES.items():
        meta: dict[str, Any] = {}
        test_kwargs = read_test_kwargs(module)
        if test_kwargs is not None:
            meta["test_kwargs"] = test_kwargs
        registrar.add(name, lazy_factory(module, func, name), description=description, **meta)
