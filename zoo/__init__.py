"""zoo: a plugin-based model zoo for instance-level image recognition and retrieval.

Public API (registry names everywhere; plugins are discovered through the ``zoo.plugins`` entry
points the first time one of these is called)::

    zoo.list_recipes("glr2021*")
    zoo.get_recipe("glr2020-3rd-effnet-b5", overrides=["train.lr=1e-4"])
    zoo.list_components("backbone")
    model = zoo.create_model("default", pretrained=True)
    model = zoo.create_model("runs/ft")          # a run folder of zoo train (self-describing weights)
    zoo.plugins.report()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from zoo import plugins
from zoo.hookspecs import hookimpl
from zoo.recipes import get_recipe, list_recipes
from zoo.registry import (
    DuplicateComponentError,
    Registry,
    UnknownComponentError,
    ZooError,
)

if TYPE_CHECKING:
    from pathlib import Path

    from omegaconf import DictConfig
    from torch import nn

DISTRIBUTION = "instance-zoo"

__all__ = [
    "__version__",
    "DuplicateComponentError",
    "Registry",
    "UnknownComponentError",
    "ZooError",
    "create_model",
    "get_recipe",
    "hookimpl",
    "list_components",
    "list_recipes",
    "plugins",
]


def list_components(
    kind: str | None = None, pattern: str = "*", registry: Registry | None = None
) -> list[str]:
    """Registered component names of ``kind`` (all kinds when None) matching ``pattern``."""
    return (registry or plugins.get_registry()).names(kind, pattern)


def create_model(
    recipe: "str | Path | DictConfig | None" = None,
    *,
    pretrained: bool = False,
    checkpoint: Any = None,
    overrides: Iterable[str] = (),
    registry: Registry | None = None,
) -> "nn.Module":
    """Build a model from a recipe name, a resolved config, a run folder or a checkpoint.

    See :func:`zoo.factory.create_model`; imported when first called, so ``import zoo`` stays light.
    """
    from zoo.factory import create_model as _create

    return _create(
        recipe, pretrained=pretrained, checkpoint=checkpoint, overrides=overrides, registry=registry
    )


def __getattr__(name: str) -> Any:
    """``zoo.__version__``, read (once) from the installed distribution's metadata."""
    if name == "__version__":
        version = _read_version()
        globals()["__version__"] = version
        return version
    raise AttributeError(f"module 'zoo' has no attribute '{name}'")


def _read_version() -> str:
    """The installed ``instance-zoo`` version; in a source checkout that is not installed, the
    ``version`` of its ``pyproject.toml`` (``+source``), else ``0+unknown``."""
    import importlib.metadata as md
    import re
    from pathlib import Path

    try:
        return md.version(DISTRIBUTION)
    except md.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.MULTILINE)
    except OSError:
        match = None
    return f"{match.group(1)}+source" if match else "0+unknown"

