"""Registers every ``*.yaml`` recipe in this folder (``configs/``)."""

from __future__ import annotations

from pathlib import Path

from zoo import hookimpl
from zoo.registry import RecipeRegistrar

HERE = Path(__file__).resolve().parent


@hookimpl
def zoo_register_recipes(registrar: RecipeRegistrar) -> None:
    registrar.add_directory(HERE)
