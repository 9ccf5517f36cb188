"""Registers every ``*.yaml`` recipe in this folder (``configs/``, the ``zoo_configs`` package) and the
weights manifest that ships beside them (``weights_manifest.yaml``, package data of ``zoo_configs``)."""

from __future__ import annotations

from pathlib import Path

from zoo import hookimpl
from zoo.registry import ManifestRegistrar, RecipeRegistrar
from zoo.weights.catalog import MANIFEST_NAME, package_manifest

HERE = Path(__file__).resolve().parent


@hookimpl
def zoo_register_recipes(registrar: RecipeRegistrar) -> None:
    for path in sorted(HERE.rglob("*.yaml")):
        if path.name != MANIFEST_NAME:
            registrar.add_file(path)


@hookimpl
def zoo_register_weight_manifests(registrar: ManifestRegistrar) -> None:
    registrar.add_file(package_manifest(__package__))
