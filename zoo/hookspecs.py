"""Hook specifications: one typed hook per component kind.

A plugin is a module (or any object) with functions marked ``@zoo.hookimpl`` whose names match the
hooks below. It is found through the ``zoo.plugins`` entry-point group::

    [project.entry-points."zoo.plugins"]
    my_plugin = "my_package.plugin"

Every hook receives a registrar that records which plugin owns what. Each hook is called once per
plugin, in isolation: if it raises, everything that plugin registered is rolled back and the
failure is reported by ``zoo plugins`` while every other plugin keeps working.

Registering must stay cheap: it runs for every ``zoo`` command, ``--help`` included. Give factories
as ``"package.module:attribute"`` references with a ``description`` (the module is imported the first
time the component is built), and keep the plugin module free of heavy imports (torch, timm, ...)::

    @zoo.hookimpl
    def zoo_register_poolings(registrar):
        registrar.add("gem", "my_package.gem:GeM", description="GeM pooling, p=3 trainable")

Metadata (``registrar.add(..., test_kwargs={...}, produces="ranking")``) is limited to the keys of
:data:`zoo.registry.META_KEYS`; a misspelt key fails the plugin's registration with close matches.

Factory contracts (what ``zoo.create_model`` and the runners call):

* backbone: ``factory(**cfg) -> nn.Module`` with ``num_features: int`` and ``output_fmt`` ("NCHW" for a
  feature map, "NC" for an already pooled vector); ``forward(x: B x 3 x H x W)``.
* pooling: ``factory(**cfg) -> nn.Module`` mapping ``B x C x H x W`` to ``B x C``.
* neck: ``factory(in_features=..., out_features=..., **cfg) -> nn.Module`` mapping ``B x C`` to ``B x D``.
* head: ``factory(in_features=..., num_classes=..., **cfg) -> nn.Module`` returning class cosines ``B x C``
  (before any margin).
* loss: ``factory(**cfg) -> nn.Module`` called as ``loss(logits, labels)`` returning a scalar.
* sampler, augmentation, optimizer, param_groups, scheduler, postprocessor, ensemble, metric,
  converter, detector: see the docstring of each hook.
* command: ``factory(parser: argparse.ArgumentParser) -> None`` configures a ``zoo`` sub-command and
  sets ``parser.set_defaults(func=run)`` where ``run(args) -> int``.
"""

from __future__ import annotations

import pluggy

from zoo.registry import ComponentRegistrar, ManifestRegistrar, RecipeRegistrar

PROJECT = "zoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zoo_register_backbones(registrar: ComponentRegistrar) -> None:
    """Register backbones: feature extractors (timm, open_clip, DOLG, Hybrid-Swin, ...)."""


@hookspec
def zoo_register_poolings(registrar: ComponentRegistrar) -> None:
    """Register global poolings (GeM, average, max): ``B x C x H x W -> B x C``."""


@hookspec
def zoo_register_necks(registrar: ComponentRegistrar) -> None:
    """Register necks mapping pooled features to the embedding (option-D, Linear+Swish, ...)."""


@hookspec
def zoo_register_heads(registrar: ComponentRegistrar) -> None:
    """Register classification heads returning cosines (ArcMarginProduct, sub-center, linear)."""


@hookspec
def zoo_register_losses(registrar: ComponentRegistrar) -> None:
    """Register losses ``loss(logits, labels) -> scalar`` (ArcFace variants, cross-entropy)."""


@hookspec
def zoo_register_samplers(registrar: ComponentRegistrar) -> None:
    """Register samplers and re-balancers; they must be DDP-aware (seed, ``set_epoch``, shards)."""


@hookspec
def zoo_register_augmentations(registrar: ComponentRegistrar) -> None:
    """Register augmentation pipelines: ``factory(image_size=..., **cfg) -> albumentations.Compose``."""


@hookspec
def zoo_register_optimizers(registrar: ComponentRegistrar) -> None:
    """Register optimizers: ``factory(param_groups, **cfg) -> torch.optim.Optimizer``."""


@hookspec
def zoo_register_param_groups(registrar: ComponentRegistrar) -> None:
    """Register param-group policies: ``factory(model, lr=..., **cfg) -> list[dict]``."""


@hookspec
def zoo_register_schedulers(registrar: ComponentRegistrar) -> None:
    """Register learning-rate schedules: ``factory(optimizer, **cfg)`` returning a scheduler."""


@hookspec
def zoo_register_postprocessors(registrar: ComponentRegistrar) -> None:
    """Register post-processors (kNN fusion, re-ranking, non-landmark rules), vectorised over queries."""


@hookspec
def zoo_register_ensembles(registrar: ComponentRegistrar) -> None:
    """Register ensemble combiners: ``factory(**cfg) -> combine(list[Tensor], members) -> Tensor``."""


@hookspec
def zoo_register_metrics(registrar: ComponentRegistrar) -> None:
    """Register evaluation metrics (GAP, mAP@k, mP@k, recall@k)."""


@hookspec
def zoo_register_converters(registrar: ComponentRegistrar) -> None:
    """Register checkpoint converters from upstream layouts: ``factory(state_dict, cfg) -> state_dict``."""


@hookspec
def zoo_register_detectors(registrar: ComponentRegistrar) -> None:
    """Register object detectors used by non-landmark rules: ``factory(**cfg) -> detect(images)``."""


@hookspec
def zoo_register_commands(registrar: ComponentRegistrar) -> None:
    """Register extra ``zoo`` sub-commands: ``factory(parser) -> None`` (see module docstring)."""


@hookspec
def zoo_register_recipes(registrar: RecipeRegistrar) -> None:
    """Register recipe YAML files or folders (``registrar.add_directory(path)``)."""


@hookspec
def zoo_register_weight_manifests(registrar: ManifestRegistrar) -> None:
    """Register weight manifests (``registrar.add_file(path)``), merged with ``weights_manifest.yaml``."""


#: hook name -> component kind for the component hooks
COMPONENT_HOOKS: dict[str, str] = {
    "zoo_register_backbones": "backbone",
    "zoo_register_poolings": "pooling",
    "zoo_register_necks": "neck",
    "zoo_register_heads": "head",
    "zoo_register_losses": "loss",
    "zoo_register_samplers": "sampler",
    "zoo_register_augmentations": "augmentation",
    "zoo_register_optimizers": "optimizer",
    "zoo_register_param_groups": "param_groups",
    "zoo_register_schedulers": "scheduler",
    "zoo_register_postprocessors": "postprocessor",
    "zoo_register_ensembles": "ensemble",
    "zoo_register_metrics": "metric",
    "zoo_register_converters": "converter",
    "zoo_register_detectors": "detector",
    "zoo_register_commands": "command",
}
