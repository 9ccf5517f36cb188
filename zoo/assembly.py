"""Assembly: a recipe's ``model`` section -> registered parts -> one ``nn.Module``.

The core holds no model code: :class:`ZooModel` only wires registered parts together
(backbone -> pooling -> neck -> head) and :class:`ZooEnsemble` wires recipes together through a
registered combiner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from zoo.recipes import get_recipe
from zoo.registry import Registry, ZooError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def data_config(cfg: DictConfig) -> dict[str, Any]:
    """Preprocessing of a recipe: image size, mean/std (0-1 scale), interpolation."""
    data = cfg.get("data") or {}
    size = data.get("image_size", 224)
    return {
        "image_size": int(size),
        "mean": tuple(float(v) for v in data.get("mean", IMAGENET_MEAN)),
        "std": tuple(float(v) for v in data.get("std", IMAGENET_STD)),
        "interpolation": str(data.get("interpolation", "bilinear")),
        "resize": str(data.get("resize", "square")),
    }


class ZooModel(nn.Module):
    """backbone -> global_pool -> neck -> head, built from registry names.

    ``forward(x)`` returns ``{"embedding": B x D, "logits": B x C}`` (logits only with a head: the
    head's cosines before any margin); ``embed(x)`` returns the L2-normalised descriptor.
    Attribute names follow the upstream layouts (``backbone``, ``global_pool``, ``neck``, ``head``).
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
        data: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.global_pool = global_pool if global_pool is not None else nn.Identity()
        self.neck = neck if neck is not None else nn.Identity()
        self.head = head
        self.embedding_dim = int(embedding_dim)
        self.recipe = recipe
        self.data_config = dict(data or {})

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

    Members may run at different image sizes: ``embed(x)`` resizes the batch to each member's
    ``image_size`` (bilinear, the batch is already normalised). ``forward`` also averages the heads'
    cosines when every member has a head over the same classes.
    """

    def __init__(
        self,
        members: list[ZooModel],
        member_cfgs: list[dict[str, Any]],
        combiner: Any,
        *,
        recipe: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.member_cfgs = member_cfgs
        self.combiner = combiner
        self.recipe = recipe
        self.data_config = dict(data or {})
        probe = [torch.zeros(1, m.embedding_dim) for m in members]
        self.embedding_dim = int(combiner(probe, member_cfgs).shape[1])

    def _member_input(self, x: torch.Tensor, i: int) -> torch.Tensor:
        size = self.member_cfgs[i].get("image_size")
        if size and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return x

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = [m(self._member_input(x, i)) for i, m in enumerate(self.members)]
        embs = [F.normalize(o["embedding"].float(), dim=1) for o in outs]
        result = {"embedding": self.combiner(embs, self.member_cfgs)}
        logits = [o["logits"].float() for o in outs if "logits" in o]
        if logits and len(logits) == len(outs) and len({t.shape[1] for t in logits}) == 1:
            result["logits"] = torch.stack(logits).mean(0)
        return result

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        embs = [m.embed(self._member_input(x, i)) for i, m in enumerate(self.members)]
        return F.normalize(self.combiner(embs, self.member_cfgs), dim=1)


def build_model(cfg: DictConfig, registry: Registry) -> nn.Module:
    """Build the model (or ensemble) of a resolved recipe; no weights are loaded here."""
    if cfg.get("ensemble") is not None:
        return _build_ensemble(cfg, registry)
    mcfg = cfg.get("model")
    if mcfg is None or mcfg.get("backbone") is None:
        raise ModelBuildError(f"recipe '{cfg.get('name')}' has no model.backbone section")
    bb_cfg = mcfg.backbone
    backbone = registry.create("backbone", str(bb_cfg.type), **build_nested_components(_kwargs(bb_cfg), registry, "model.backbone"))
    num_features = int(getattr(backbone, "num_features"))
    pool = None
    if mcfg.get("pooling") is not None:
        pool = registry.create("pooling", str(mcfg.pooling.type), **build_nested_components(_kwargs(mcfg.pooling), registry, "model.pooling"))
    emb_dim = mcfg.get("embedding_dim") or num_features
    neck = None
    if mcfg.get("neck") is not None:
        neck = registry.create(
            "neck",
            str(mcfg.neck.type),
            in_features=num_features,
            out_features=int(emb_dim),
            **build_nested_components(_kwargs(mcfg.neck), registry, "model.neck"),
        )
    elif int(emb_dim) != num_features:
        raise ModelBuildError(
            f"recipe '{cfg.get('name')}': model.embedding_dim={emb_dim} but there is no neck and the "
            f"backbone gives {num_features} features. Add a model.neck or drop model.embedding_dim."
        )
    head = None
    hcfg = mcfg.get("head")
    if hcfg is not None and hcfg.get("type") is not None:
        head = registry.create(
            "head", str(hcfg.type), in_features=int(emb_dim), **build_nested_components(_kwargs(hcfg), registry, "model.head")
        )
    return ZooModel(
        backbone, pool, neck, head, embedding_dim=int(emb_dim), recipe=cfg.get("name"),
        data=data_config(cfg),
    )


def _build_ensemble(cfg: DictConfig, registry: Registry) -> ZooEnsemble:
    ens = cfg.ensemble
    members, member_cfgs = [], []
    for item in ens.members:
        mc = _kwargs(item, drop=())
        recipe = mc.get("recipe")
        if not recipe:
            raise ModelBuildError(f"ensemble '{cfg.get('name')}': every member needs a 'recipe'")
        sub = get_recipe(recipe, mc.get("overrides", []), registry=registry)
        model = build_model(sub, registry)
        mc.setdefault("image_size", model.data_config.get("image_size"))
        members.append(model)
        member_cfgs.append(mc)
    combiner_cfg = ens.get("combiner") or {"type": "concat"}
    combiner = registry.create("ensemble", str(combiner_cfg.type), **_kwargs(combiner_cfg))
    return ZooEnsemble(members, member_cfgs, combiner, recipe=cfg.get("name"), data=data_config(cfg))


def load_checkpoint(model: nn.Module, path: str | Path) -> dict[str, str]:
    """Load a zoo safetensors checkpoint strictly; returns its metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelBuildError(f"checkpoint {path} does not exist")
    if path.suffix != ".safetensors":
        raise ModelBuildError(
            f"checkpoint {path} is not a .safetensors file; zoo never unpickles checkpoints. Convert an "
            "upstream .pth with: zoo weights convert SRC --from LAYOUT --recipe RECIPE --out DST.safetensors"
        )
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    state = load_file(str(path))
    from zoo.weights.convert import ConversionError, check_fit

    try:
        check_fit(state, model.state_dict(), f"checkpoint {path} for recipe '{getattr(model, 'recipe', '?')}'")
    except ConversionError as exc:
        raise ModelBuildError(f"{exc} Was it written with the same overrides?") from exc
    model.load_state_dict(state, strict=True)
    return meta


def create_model(
    recipe: str | DictConfig,
    *,
    pretrained: bool = False,
    checkpoint: str | Path | None = None,
    overrides: Iterable[str] = (),
    registry: Registry | None = None,
) -> nn.Module:
    """Build a recipe's model; ``pretrained`` loads its default weights from the manifest,
    ``checkpoint`` a zoo safetensors file."""
    from zoo.plugins import get_registry

    reg = registry or get_registry()
    cfg = get_recipe(recipe, overrides, registry=reg) if isinstance(recipe, str) else recipe
    model = build_model(cfg, reg)
    if pretrained and checkpoint is None:
        from zoo.weights.loading import load_pretrained

        load_pretrained(model, cfg, registry=reg)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model
