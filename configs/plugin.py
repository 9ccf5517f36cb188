"""Registers every ``*.yaml`` recipe in this folder (``configs/``)."""

from __future__ import annotations

from pathlib import Path

from zoo import hookimpl
from zoo.registry import ManifestRegistrar, RecipeRegistrar

HERE = Path(__file__).resolve().parent
#: the repository's weights manifest (found beside this folder in source checkouts and editable installs)
WEIGHTS_MANIFEST = HERE.parent / "weights_manifest.yaml"


@hookimpl
def zoo_register_recipes(registrar: RecipeRegistrar) -> None:
    registrar.add_directory(HERE)


@hookimpl
def zoo_register_weight_manifests(registrar: ManifestRegistrar) -> None:
    if WEIGHTS_MANIFEST.is_file():
        registrar.add_file(WEIGHTS_MANIFEST)
