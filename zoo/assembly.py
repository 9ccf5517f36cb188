"""Assembly: a resolved recipe's ``model`` section -> registered parts -> one ``nn.Module``.

The core holds no model code: :class:`ZooModel` only wires registered parts together
(backbone -> pooling -> neck -> head) and :class:`ZooEnsemble` wires recipes together through a
registered combiner. No weights are loaded here: :mod:`zoo.factory` (``create_model``) builds a model
with its weights (manifest, checkpoint or run folder).
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from zoo.data.config import DataConfig
from zoo.recipes import get_recipe
from zoo.registry import Registry, ZooError


class ModelBuildError(ZooError):
    """A recipe's model section cannot be built or a checkpoint does not fit it."""


def _kwargs(node: Any, drop: Iterable[str] = ("type",)) -> dict[str, Any]:
    if node is None:
        return {}
    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    return {k: v for k, v in data.items() if k not in set(drop)}


def build_nested_components(kwargs: Mapping[str, Any], registry: Registry, where: str = "component") -> dict[str, Any]:
    """Build every argument given as ``{component: KIND, type: NAME, ...}`` through ``registry``.

    A part that needs another registered part (DOLG's GeM global pool) names it in its own
    arguments, e.g. ``global_pool: {component: pooling, type: gem, p: 3.0}``, instead of importing
    another plugin; the nested part is created first (its own nested parts too, in mappings and
    lists) and the factory receives the module. Other arguments are returned unchanged.
    """

    def build(value: Any, path: str) -> Any:
        if isinstance(value, Mapping) and "component" in value:
            spec = dict(value)
            kind, name = spec.pop("component"), spec.pop("type", None)
            if not name:
                raise ModelBuildError(f"{path}: a nested {kind} needs 'type' (a registered {kind} name)")
            return registry.create(str(kind), str(name), **build_nested_components(spec, registry, path))
        if isinstance(value, Mapping):
            return {k: build(v, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(build(v, f"{path}[{i}]") for i, v in enumerate(value))
        return value

    return {k: build(v, f"{where}.{k}") for k, v in kwargs.items()}



def _parameters(factory: Any) -> tuple[set[str], set[str], bool]:
    """``(accepted, required, takes **kwargs)`` keyword parameters of a component factory."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check against
        return set(), set(), True
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = {p.name for p in named if p.default is p.empty}
    return {p.name for p in named}, required, any(p.kind is p.VAR_KEYWORD for p in params)


def create_component(
    registry: Registry, kind: str, node: Any, where: str, recipe: Any, **wired: Any
) -> Any:
    """Build the registered ``kind`` named by ``node.type`` with ``node``'s other keys as arguments.

    ``wired`` are the arguments assembly supplies itself (``in_features``, ...). Arguments the factory
    does not accept, or required ones that are missing, are one :class:`ModelBuildError` naming the
    recipe key, the argument and the arguments the component accepts (from its signature).
    """
    name = str(node.get("type"))
    kwargs = {**build_nested_components(_kwargs(node), registry, where), **wired}
    entry = registry.get(kind, name)
    accepted, required, open_ended = _parameters(entry.factory)
    own = sorted(accepted - set(wired))
    unknown = [] if open_ended else sorted(set(kwargs) - accepted)
    missing = sorted(required - set(kwargs))
    if unknown or missing:
        what = (f"does not accept {', '.join(repr(k) for k in unknown)}" if unknown
                else f"needs {', '.join(repr(k) for k in missing)}")
        fix = (f"remove {', '.join(f'{where}.{k}' for k in unknown)}" if unknown
               else f"set {', '.join(f'{where}.{k}' for k in missing)}")
        raise ModelBuildError(
            f"recipe '{recipe}': {where} ({kind} '{name}') {what}; {kind} '{name}' accepts "
            f"{', '.join(own) if own else 'no arguments'}{' (and more)' if open_ended else ''}: {fix}"
        )
    try:
        return entry.create(**kwargs)
    except TypeError as exc:  # an open-ended factory passing an argument on that its callee rejects
        if "unexpected keyword argument" not in str(exc) and "required" not in str(exc):
            raise
        raise ModelBuildError(f"recipe '{recipe}': {where} ({kind} '{name}') cannot be built: {exc}") from exc


class ZooModel(nn.Module):
    """backbone -> global_pool -> neck -> head, built from registry names.

    ``forward(x)`` returns ``{"embedding": B x D, "logits": B x C}`` (logits only with a head: the
    head's cosines before any margin); ``embed(x)`` returns the L2-normalised descriptor.
    Attribute names follow the upstream layouts (``backbone``, ``global_pool``, ``neck``, ``head``).
    ``data_config`` says how images become its input; ``recipe_cfg`` is the resolved recipe it was
    built from (None when built by hand).
    """

    def __init__(
        self,
        backbone: nn.Module,
        global_pool: nn.Module | None,
        neck: nn.Module | None,
        head: nn.Module | None,
        *,
        embedding_dim: int,
        recipe: str | None = None,
        data_config: DataConfig | None = None,
        recipe_cfg: DictConfig | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.global_pool = global_pool if global_pool is not None else nn.Identity()
        self.neck = neck if neck is not None else nn.Identity()
        self.head = head
        self.embedding_dim = int(embedding_dim)
        self.recipe = recipe
        self.data_config = data_config or DataConfig()
        self.recipe_cfg = recipe_cfg

    @property
    def num_classes(self) -> int:
        """Classes of the head (0 without one)."""
        return int(getattr(self.head, "num_classes", 0) or 0) if self.head is not None else 0

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm-style description: preprocessing (see :meth:`DataConfig.pretrained_cfg`), classes, recipe."""
        return {
            **self.data_config.pretrained_cfg(),
            "num_classes": self.num_classes,
            "num_features": self.embedding_dim,
            "recipe": self.recipe,
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.backbone(x)
        if feat.ndim == 4:
            feat = self.global_pool(feat)
            if feat.ndim == 4:
                feat = feat.flatten(1)
        return feat

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.neck(self.forward_features(x))
        out = {"embedding": emb}
        if self.head is not None:
            out["logits"] = self.head(emb)
        return out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.neck(self.forward_features(x))
        return F.normalize(emb.float(), dim=1)


class ZooEnsemble(nn.Module):
    """Several recipes fed the same images; a registered combiner fuses their descriptors.

    Member ``i`` sees the image at its own size (``member_cfgs[i]["image_size"]``, which is also the
    ``input_size`` of the member's ``data_config``). The descriptor API is split so a caller that
    prepares each member's input itself (the embedder: one decode, a resize per member) reuses the
    fusion: ``member_embeddings(inputs)`` -> ``combine(embs)``. ``embed(x)`` / ``forward(x)`` take one
    normalised batch and resize it to each member's size (bilinear). ``forward`` also averages the
    heads' cosines when every member has a head over the same classes.
    ``member_recipes`` are the members' resolved recipes (resolved once, when the ensemble was built).
    """

    def __init__(
        self,
        members: list[nn.Module],
        member_cfgs: list[dict[str, Any]],
        combiner: Any,
        *,
        recipe: str | None = None,
        data_config: DataConfig | None = None,
        recipe_cfg: DictConfig | None = None,
        member_recipes: list[DictConfig] | None = None,
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.member_cfgs = member_cfgs
        self.combiner = combiner
        self.recipe = recipe
        self.data_config = data_config or DataConfig()
        self.recipe_cfg = recipe_cfg
        self.member_recipes = list(member_recipes) if member_recipes is not None else [
            getattr(m, "recipe_cfg", None) for m in members
        ]
        for m, mc in zip(members, member_cfgs):
            dc = getattr(m, "data_config", None)
            if isinstance(dc, DataConfig) and mc.get("image_size") and dc.input_size != int(mc["image_size"]):
                m.data_config = dc.with_input_size(int(mc["image_size"]))
        probe = [torch.zeros(1, m.embedding_dim) for m in members]
        self.embedding_dim = int(combiner(probe, member_cfgs).shape[1])

    @property
    def member_data_configs(self) -> list[DataConfig]:
        return [m.data_config for m in self.members]

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        return {
            **self.data_config.pretrained_cfg(),
            "num_features": self.embedding_dim,
            "recipe": self.recipe,
            "members": [getattr(m, "pretrained_cfg", None) for m in self.members],
        }

    def member_input(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """A normalised batch resized (bilinear) to member ``i``'s square size."""
        size = self.member_cfgs[i].get("image_size")
        if size and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return x

    def member_outputs(self, inputs: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Each member's ``forward`` on its own input (``inputs[i]`` for member ``i``)."""
        return [m(x) for m, x in zip(self.members, inputs)]

    def member_embeddings(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each member's L2-normalised float descriptor of its own input."""
        return [F.normalize(m.embed(x).float(), dim=1) for m, x in zip(self.members, inputs)]

    def fuse(self, embs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The registered combiner on per-member L2-normalised descriptors (not normalised again)."""
        return self.combiner(list(embs), self.member_cfgs)

    def combine(self, embs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The ensemble descriptor (L2-normalised) from per-member L2-normalised descriptors."""
        return F.normalize(self.fuse(embs).float(), dim=1)

    def combine_logits(self, outs: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor | None:
        """Mean of the members' head cosines when every member has a head over the same classes."""
        logits = [o["logits"].float() for o in outs if "logits" in o]
        if logits and len(logits) == len(outs) and len({t.shape[1] for t in logits}) == 1:
            return torch.stack(logits).mean(0)
        return None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = self.member_outputs([self.member_input(x, i) for i in range(len(self.members))])
        result = {"embedding": self.fuse([F.normalize(o["embedding"].float(), dim=1) for o in outs])}
        logits = self.combine_logits(outs)
        if logits is not None:
            result["logits"] = logits
        return result

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.member_embeddings([self.member_input(x, i) for i in range(len(self.members))]))


def build_model(cfg: DictConfig, registry: Registry) -> nn.Module:
    """Build the model (or ensemble) of a resolved recipe; no weights are loaded here."""
    if cfg.get("ensemble") is not None:
        return _build_ensemble(cfg, registry)
    name = cfg.get("name")
    mcfg = cfg.get("model")
    if mcfg is None or mcfg.get("backbone") is None:
        raise ModelBuildError(f"recipe '{name}' has no model.backbone section")
    backbone = create_component(registry, "backbone", mcfg.backbone, "model.backbone", name)
    num_features = int(getattr(backbone, "num_features"))
    pool = None
    if mcfg.get("pooling") is not None:
        pool = create_component(registry, "pooling", mcfg.pooling, "model.pooling", name)
    emb_dim = mcfg.get("embedding_dim") or num_features
    if isinstance(emb_dim, bool) or not isinstance(emb_dim, int) or emb_dim < 1:
        raise ModelBuildError(
            f"recipe '{name}': model.embedding_dim={emb_dim!r}; it must be a positive integer (or null: the backbone's width)"
        )
    neck = None
    if mcfg.get("neck") is not None:
        neck = create_component(
            registry, "neck", mcfg.neck, "model.neck", name, in_features=num_features, out_features=int(emb_dim)
        )
    elif int(emb_dim) != num_features:
        raise ModelBuildError(
            f"recipe '{name}': model.embedding_dim={emb_dim} but there is no neck and the "
            f"backbone gives {num_features} features. Add a model.neck or drop model.embedding_dim."
        )
    head = None
    hcfg = mcfg.get("head")
    if hcfg is not None and hcfg.get("type") is not None:
        classes = hcfg.get("num_classes")
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise ModelBuildError(
                f"recipe '{name}': model.head.num_classes={classes!r}, but a head ('{hcfg.type}') needs at least 1 "
                "class; set it to the number of classes (zoo train sets it from the data), or model.head.type=null "
                "for a model without a head"
            )
        head = create_component(registry, "head", hcfg, "model.head", name, in_features=int(emb_dim))
    return ZooModel(
        backbone, pool, neck, head, embedding_dim=int(emb_dim), recipe=name,
        data_config=DataConfig.from_recipe(cfg), recipe_cfg=cfg,
    )


def _build_ensemble(cfg: DictConfig, registry: Registry) -> ZooEnsemble:
    ens = cfg.ensemble
    members, member_cfgs, member_recipes = [], [], []
    for item in ens.members:
        mc = _kwargs(item, drop=())
        recipe = mc.get("recipe")
        if not recipe:
            raise ModelBuildError(f"ensemble '{cfg.get('name')}': every member needs a 'recipe'")
        sub = get_recipe(recipe, mc.get("overrides", []), registry=registry)
        model = build_model(sub, registry)
        mc.setdefault("image_size", model.data_config.input_size)
        members.append(model)
        member_cfgs.append(mc)
        member_recipes.append(sub)
    combiner_cfg = ens.get("combiner") or OmegaConf.create({"type": "concat"})
    combiner = create_component(registry, "ensemble", combiner_cfg, "ensemble.combiner", cfg.get("name"))
    return ZooEnsemble(
        members, member_cfgs, combiner, recipe=cfg.get("name"), data_config=DataConfig.from_recipe(cfg),
        recipe_cfg=cfg, member_recipes=member_recipes,
    )
