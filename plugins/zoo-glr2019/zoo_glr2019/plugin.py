"""zoo-glr2019 plugin: registers the GLR2019 backbone, neck, converter and recipe (seed 003)."""

from __future__ import annotations

from pathlib import Path

from zoo import hookimpl
from zoo.registry import ComponentRegistrar, RecipeRegistrar
from zoo_glr2019.backbone import create_xception_glr2019
from zoo_glr2019.converter import convert
from zoo_glr2019.neck import create_cbp_attention


@hookimpl
def zoo_register_backbones(registrar: ComponentRegistrar) -> None:
    registrar.add("xception_glr2019", create_xception_glr2019,
                  test_kwargs={"name": "resnet18", "cnn_finetune_relus": False})


@hookimpl
def zoo_register_necks(registrar: ComponentRegistrar) -> None:
    registrar.add("cbp_attention", create_cbp_attention,
                  test_kwargs={"attention": "none"})


@hookimpl
def zoo_register_converters(registrar: ComponentRegistrar) -> None:
    registrar.add("glr2019-xception", convert,
                  description="GLR2019 (TylerYep/landmark): xception._features.N / _classifier.* -> zoo")


@hookimpl
def zoo_register_recipes(registrar: RecipeRegistrar) -> None:
    registrar.add_directory(Path(__file__).parent / "recipes")
