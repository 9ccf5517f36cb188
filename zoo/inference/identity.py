"""Which model made a set of vectors: :class:`ModelIdentity`, recorded by ``zoo embed`` and checked
wherever two sets of vectors meet.

Descriptors of two models live in unrelated spaces: searching one with the other gives numbers
that look like results (mAP 0.03) and mean nothing. An identity is what makes two descriptors
comparable:

* ``recipe``: the recipe name the model was built from;
* ``weights``: the sha256 of every weight file loaded (a checkpoint, the manifest entry's files) and,
  when tensors that shape the descriptor were left at a random initialisation, the marker
  ``random:SEED/HASH`` (:class:`~zoo.weights.origin.WeightsOrigin`);
* ``config``: the sha256 of the resolved model section (architecture and component arguments, e.g.
  GeM's ``p``), ensemble members included;
* ``preprocess``: the :class:`~zoo.data.config.DataConfig` of every model input;
* ``dim`` and ``flip_tta``.

``zoo embed`` writes it into ``manifest.json`` (``"identity"``), ``zoo index`` carries it into
``index.json``; ``zoo search``, ``zoo retrieve``, ``zoo recognize`` refuse inputs whose identities
differ (:func:`check_same_model`) unless ``--allow-mixed-models``. Folders written before identities
were recorded are compared on what they do record (recipe, checkpoint path, preprocessing, dim).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from zoo.registry import ZooError

log = logging.getLogger(__name__)

#: the flag of every command that compares vectors from two sources
MIXED_FLAG = "--allow-mixed-models"
#: ``weights`` of a model whose origin is not known (built by hand, or an old folder)
UNKNOWN = "unknown"


class MixedModelsError(ZooError):
    """Vectors made by different models (or preprocessing) are about to be compared."""


def config_sha256(model: Any) -> str | None:
    """sha256 of the resolved model section of ``model.recipe_cfg`` (and its ensemble members'), or None."""
    from omegaconf import DictConfig, OmegaConf

    cfg = getattr(model, "recipe_cfg", None)
    if not isinstance(cfg, DictConfig):
        return None

    def plain(node: Any) -> Any:
        return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node

    data: dict[str, Any] = {"model": plain(cfg.get("model")), "ensemble": plain(cfg.get("ensemble"))}
    members = getattr(model, "member_recipes", None)
    if members:
        data["members"] = [plain(m.get("model")) if isinstance(m, DictConfig) else None for m in members]
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _short(value: str) -> str:
    """``sha256:abcdef...`` -> ``sha256:abcdef123456`` (12 hex digits) for messages."""
    kind, _, digest = value.partition(":")
    return f"{kind}:{digest[:12]}" if kind == "sha256" and digest else value


@dataclass(frozen=True)
class ModelIdentity:
    """What makes descriptors comparable (see the module docstring); ``None`` fields are unknown."""

    recipe: str | None
    weights: str | None
    config: str | None
    preprocess: tuple[str, ...] | None
    dim: int | None
    flip_tta: bool | None
    checkpoint: str | None = None  # shown; compared only when a side does not know its weights (old folders)

    @classmethod
    def of_model(cls, model: Any, preprocesses: Sequence[Any], *, flip_tta: bool, dim: int | None = None) -> "ModelIdentity":
        """The identity of ``model`` embedding with ``preprocesses`` (DataConfigs) and ``flip_tta``."""
        origin = getattr(model, "weights_origin", None)
        weights: str | None = None
        if origin is not None:
            parts = list(origin.files)
            marker = origin.random_marker()
            if marker:
                parts.append(marker)
            weights = "+".join(parts) if parts else "init"  # init: nothing loaded, nothing random
        return cls(
            recipe=getattr(model, "recipe", None),
            weights=weights,
            config=config_sha256(model),
            preprocess=tuple(json.dumps(p.to_dict(), sort_keys=True) for p in preprocesses),
            dim=int(dim if dim is not None else getattr(model, "embedding_dim")),
            flip_tta=bool(flip_tta),
            checkpoint=str(model.checkpoint) if getattr(model, "checkpoint", None) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "weights": self.weights, "config": self.config,
                "preprocess": [json.loads(p) for p in self.preprocess] if self.preprocess is not None else None,
                "dim": self.dim, "flip_tta": self.flip_tta, "checkpoint": self.checkpoint}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelIdentity":
        pre = data.get("preprocess")
        return cls(
            recipe=data.get("recipe"), weights=data.get("weights"), config=data.get("config"),
            preprocess=tuple(json.dumps(p, sort_keys=True) for p in pre) if pre is not None else None,
            dim=None if data.get("dim") is None else int(data["dim"]),
            flip_tta=None if data.get("flip_tta") is None else bool(data["flip_tta"]),
            checkpoint=data.get("checkpoint"),
        )

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> "ModelIdentity":
        """From an embeddings ``manifest.json`` or an ``index.json``: the recorded identity, else what an
        older folder records (recipe, checkpoint, preprocessing, dim, flip-TTA)."""
        recorded = manifest.get("identity")
        if isinstance(recorded, Mapping):
            return cls.from_dict(recorded)
        pre = manifest.get("preprocess")
        return cls(
            recipe=manifest.get("recipe"), weights=None, config=None,
            preprocess=tuple(json.dumps(p, sort_keys=True) for p in pre) if pre is not None else None,
            dim=None if manifest.get("dim") is None else int(manifest["dim"]),
            flip_tta=None if manifest.get("flip_tta") is None else bool(manifest["flip_tta"]),
            checkpoint=manifest.get("checkpoint") or None,
        )

    def differences(self, other: "ModelIdentity") -> list[str]:
        """Names of the fields both know and that differ (``checkpoint`` only when a side has no weights)."""
        out = []
        for name in ("recipe", "weights", "config", "preprocess", "dim", "flip_tta"):
            a, b = getattr(self, name), getattr(other, name)
            if a is not None and b is not None and a != b:
                out.append(name)
        if (self.weights is None or other.weights is None) and self.checkpoint != other.checkpoint \
                and (self.checkpoint or other.checkpoint) and "weights" not in out:
            out.append("checkpoint")
        return out

    def describe(self, fields: Sequence[str] | None = None) -> str:
        """``default [weights sha256:7cd42c7c8af1, config 833fc793, long side -> 384 px (bicubic) ..., 1280-d,
        flip-TTA off]``; with ``fields`` only the weights and those fields."""
        show = set(fields) | {"weights"} if fields is not None else None

        def wanted(name: str) -> bool:
            return show is None or name in show

        parts = []
        if self.weights is not None:
            parts.append("weights " + "+".join(_short(w) for w in self.weights.split("+")))
        elif self.checkpoint:
            parts.append(f"checkpoint {self.checkpoint}")
        else:
            parts.append("weights not recorded")
        if self.config and wanted("config"):
            parts.append(f"config {self.config[:8]}")
        if self.preprocess and wanted("preprocess"):
            parts.append("; ".join(_describe_preprocess(p) for p in self.preprocess))
        if self.dim is not None and wanted("dim"):
            parts.append(f"{self.dim}-d")
        if self.flip_tta is not None and wanted("flip_tta"):
            parts.append(f"flip-TTA {'on' if self.flip_tta else 'off'}")
        return f"{self.recipe or '?'} [{', '.join(parts)}]"


def _describe_preprocess(text: str) -> str:
    try:
        from zoo.data.config import DataConfig

        return DataConfig.from_dict(json.loads(text)).describe()
    except Exception:  # noqa: BLE001 - a description only; an odd old record is shown as it is
        return text


def check_same_model(
    sides: Sequence[tuple[str, ModelIdentity | None]], *, allow: bool = False, flag: str = MIXED_FLAG
) -> None:
    """Refuse (:class:`MixedModelsError`) when the identities of ``sides`` (``(what, identity)``; None =
    not known) differ; with ``allow`` only a warning. Different dimensions are refused always."""
    known = [(what, ident) for what, ident in sides if ident is not None]
    if len(known) < 2:
        return
    first_what, first = known[0]
    for what, ident in known[1:]:
        diff = first.differences(ident)
        if not diff:
            continue
        head = (f"{first_what} and {what} were embedded by different models ({', '.join(diff)} differ): "
                f"{first_what} = {first.describe(diff)}; {what} = {ident.describe(diff)}")
        if "dim" in diff:
            raise MixedModelsError(f"{head}; descriptors of different sizes cannot be compared: embed both with the "
                                   "same model")
        if allow:
            log.warning("%s; comparing them anyway (%s)", head, flag)
            continue
        raise MixedModelsError(f"{head}; their scores would mean nothing: embed both with the same model, or pass "
                               f"{flag} to compare them anyway")


__all__ = ["MIXED_FLAG", "MixedModelsError", "ModelIdentity", "check_same_model", "config_sha256"]
