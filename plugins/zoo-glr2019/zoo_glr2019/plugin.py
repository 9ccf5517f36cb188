"""zoo-glr2019 plugin: registers the GLR2019 backbone, neck, converter and recipe (seed 003)."""

from __future__ import annotations

from pathlib import Path

from zoo import hookimpl
from zoo.registry import ComponentRegistrar, RecipeRegistrar


@hookimpl
def zoo_register_backbones(registrar: ComponentRegistrar) -> None:
    registrar.add("xception_glr2019", "zoo_glr2019.backbone:create_xception_glr2019",
                  description="GLR2019 Xception features (cnn_finetune Sequential semantics by default); 2048-d, 299 px",
                  test_kwargs={"name": "resnet18", "cnn_finetune_relus": False})


@hookimpl
def zoo_register_necks(registrar: ComponentRegistrar) -> None:
    registrar.add("cbp_attention", "zoo_glr2019.neck:create_cbp_attention",
                  description="GLR2019 compact bilinear pooling (2048x2048 -> 8192) + spatial attention "
                              "(or SAGAN 'self')",
                  test_kwargs={"attention": "none"})


@hookimpl
def zoo_register_converters(registrar: ComponentRegistrar) -> None:
    registrar.add("glr2019-xception", "zoo_glr2019.converter:convert",
                  description="GLR2019 (TylerYep/landmark): xception._features.N / _classifier.* -> zoo")


@hookimpl
def zoo_register_recipes(registrar: RecipeRegistrar) -> None:
    registrar.add_directory(Path(__file__).parent / "recipes")
