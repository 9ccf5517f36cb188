"""The ``train:`` section of a recipe: run-wide settings and the list of stages.

A recipe's ``train`` holds defaults for every stage plus an optional ``stages`` list; each stage is
those defaults merged with its own keys (child wins, dicts merged). Without ``stages`` the whole
section is one stage. Keys (defaults in brackets)::

    train:
      seed: 0                      # GLR2020 3rd place: seed 0
      epochs: 10                   # schedule length of a stage
      stop_at: null                # stop after this epoch, schedule still spans `epochs` (GLR2020 "stop@13")
      batch_size: 32               # per process (per GPU), as the seeds state it
      lr: 1.0e-4
      image_size: null             # null: data.image_size
      accumulate: 1                # gradient accumulation steps (top-100: 2; DOLG-B7 step 3: 4)
      clip_grad: null              # max grad norm
      amp: "off"                   # off | bf16 | fp16 (fp16 uses a GradScaler)
      channels_last: false
      ema: null                    # {decay: 0.9998} keeps an EMA of the weights (validated and saved)
      optimizer: {type: adam}
      param_groups: {type: all}
      scheduler: {type: gradual_warmup_v2}
      loss: {}                     # extra loss options for this stage (merged over the recipe's loss)
      augment: {type: resize_val}  # train pipeline (registered augmentation name + options)
      val_augment: {type: resize_val}
      mixer: null                  # batch mixer, e.g. {type: mix_top100}
      sampler: {type: distributed} # index sampler; {type: class_balanced} ...
      resample: null               # re-balancer applied to the train records, e.g. {type: guie_rebalance}
      data: train                  # which --data source the stage trains on (GLR2020 step 0: full GLDv2)
      freeze: []                   # fnmatch patterns of parameter names to freeze
      trainable: []                # if set, only these patterns train (hybrid-Swin step 2: ["backbone.patch_embed.*"])
      freeze_first_n_params: 0     # GLR2019: the first 85 parameter tensors of the backbone
      freeze_bn_stats: false       # keep BatchNorm running statistics fixed (BN layers in eval mode)
      reinit: []                   # module names to re-initialise at the stage start (e.g. [head])
      init: previous               # previous | pretrained | none | PATH.safetensors
      init_strict: true
      init_drop: []                # checkpoint key patterns dropped before loading (GLR2020 step 1: head.*)
      model_overrides: []          # recipe overrides that rebuild the model for this stage
      continue: false              # keep optimizer + schedule of the previous stage (GUIE frozen epoch, top-100)
      checkpoint_every_steps: 0    # 0: only at epoch ends
      workers: 2
      max_steps_per_epoch: null    # cap on optimizer steps per epoch (GLR2019 MAX_STEPS_PER_EPOCH = 15000)
      world_size: 1                # GPUs (processes) of the released command; global batch = batch_size x world_size x accumulate
      split: null                  # run-wide: how `zoo train` holds out validation rows without --val
                                   # (a zoo.data.splits.split_from_spec spec, e.g. {type: glr2020, fold: 0})
      validate: auto               # run-wide: auto | classification | retrieval | both (zoo.train.stage_checks)
      select: auto                 # run-wide: which epoch's weights model.safetensors holds: auto | last |
                                   # a record key such as map@100 (zoo.train.selection)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from zoo.registry import ZooError


class TrainConfigError(ZooError, ValueError):
    """A ``train:`` section that cannot be run."""


AMP_MODES = ("off", "bf16", "fp16")

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "epochs": 1,
    "stop_at": None,
    "batch_size": 32,
    "lr": 1e-4,
    "image_size": None,
    "accumulate": 1,
    "clip_grad": None,
    "amp": "off",
    "channels_last": False,
    "ema": None,
    "optimizer": {"type": "adam"},
    "param_groups": {"type": "all"},
    "scheduler": {"type": "constant"},
    "loss": {},
    "augment": None,
    "val_augment": None,
    "mixer": None,
    "sampler": {"type": "distributed"},
    "resample": None,
    "data": "train",
    "freeze": [],
    "trainable": [],
    "freeze_first_n_params": 0,
    "freeze_bn_stats": False,
    "reinit": [],
    "init": "previous",
    "init_strict": True,
    "init_drop": [],
    "model_overrides": [],
    "continue": False,
    "checkpoint_every_steps": 0,
    "workers": 2,
    "drop_last": True,
    "sync_bn": False,
    "log_every": 10,
    "world_size": 1,
    "max_steps_per_epoch": None,
    "split": None,
    "validate": "auto",
    "select": "auto",
}

RUN_KEYS = ("seed", "workers", "sync_bn", "log_every", "split", "validate", "select")
#: ``train.validate`` values: which validation runs each epoch (see :func:`zoo.train.stage_checks.choose_validation`)
VALIDATE_MODES = ("auto", "classification", "retrieval", "both", "none")


@dataclass
class Stage:
    """One stage of a recipe's training schedule (all keys resolved)."""

    index: int
    name: str
    epochs: int
    stop_at: int | None
    batch_size: int
    lr: float
    image_size: int
    accumulate: int
    clip_grad: float | None
    amp: str
    channels_last: bool
    ema: dict[str, Any] | None
    optimizer: dict[str, Any]
    param_groups: dict[str, Any]
    scheduler: dict[str, Any]
    loss: dict[str, Any]
    augment: dict[str, Any] | None
    val_augment: dict[str, Any] | None
    mixer: dict[str, Any] | None
    sampler: dict[str, Any]
    resample: dict[str, Any] | None
    data: str
    freeze: list[str]
    trainable: list[str]
    freeze_first_n_params: int
    freeze_bn_stats: bool
    reinit: list[str]
    init: str
    init_strict: bool
    init_drop: list[str]
    model_overrides: list[str]
    continue_schedule: bool
    checkpoint_every_steps: int
    drop_last: bool
    world_size: int = 1
    max_steps_per_epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def last_epoch(self) -> int:
        """The epoch (1-based, within the stage) after which the stage ends."""
        return min(self.epochs, self.stop_at) if self.stop_at else self.epochs

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["continue"] = out.pop("continue_schedule")
        return out


@dataclass
class TrainPlan:
    """Run-wide settings and the resolved stages."""

    seed: int
    workers: int
    sync_bn: bool
    log_every: int
    stages: list[Stage]
    split: dict[str, Any] | None = None
    validate: str = "auto"
    select: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "workers": self.workers, "sync_bn": self.sync_bn,
            "log_every": self.log_every, "split": self.split, "validate": self.validate, "select": self.select,
            "stages": [s.to_dict() for s in self.stages],
        }


def _plain(node: Any) -> Any:
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _spec(value: Any, what: str) -> dict[str, Any] | None:
    if value is None or value is False:
        return None
    if isinstance(value, str):
        return {"type": value}
    if isinstance(value, dict):
        if "type" not in value:
            raise TrainConfigError(f"train.{what} needs a 'type' (a registered name), got {value}")
        return dict(value)
    raise TrainConfigError(f"train.{what} must be a registered name or a mapping with 'type', got {value!r}")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and v.get("type", out[k].get("type")) == out[k].get("type"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise TrainConfigError(f"train.{what} must be a list of strings, got {value!r}")
    return [str(v) for v in value]


def resolve_plan(cfg: DictConfig) -> TrainPlan:
    """Resolve a recipe's ``train`` section into a :class:`TrainPlan` (validated, defaults filled)."""
    train = _plain(cfg.get("train")) or {}
    if not isinstance(train, dict):
        raise TrainConfigError(f"recipe '{cfg.get('name')}': train must be a mapping")
    data_size = int((cfg.get("data") or {}).get("image_size", 224))
    base = _merge(DEFAULTS, {k: v for k, v in train.items() if k != "stages"})
    unknown = sorted(set(base) - set(DEFAULTS) - {"description"})
    if unknown:
        raise TrainConfigError(
            f"recipe '{cfg.get('name')}': unknown train keys {unknown}; known: {', '.join(sorted(DEFAULTS))}"
        )
    raw_stages = train.get("stages") or [{}]
    if not isinstance(raw_stages, list):
        raise TrainConfigError(f"recipe '{cfg.get('name')}': train.stages must be a list of mappings")
    stages: list[Stage] = []
    for i, raw in enumerate(raw_stages):
        if not isinstance(raw, dict):
            raise TrainConfigError(f"train.stages[{i}] must be a mapping, got {raw!r}")
        bad = sorted(set(raw) - set(DEFAULTS) - {"name", "description"} - set(RUN_KEYS))
        if bad:
            raise TrainConfigError(
                f"train.stages[{i}]: unknown keys {bad}; known: {', '.join(sorted(DEFAULTS))}"
            )
        s = _merge(base, {k: v for k, v in raw.items() if k not in RUN_KEYS})
        stages.append(_stage(i, s, raw.get("name") or f"stage{i}", data_size))
    if stages[0].continue_schedule:
        raise TrainConfigError("train.stages[0] cannot 'continue' a previous stage: there is none")
    validate = str(base["validate"] or "none").lower()
    if validate not in VALIDATE_MODES:
        raise TrainConfigError(f"train.validate must be one of {', '.join(VALIDATE_MODES)}, got '{base['validate']}'")
    parse_select(base["select"])  # a malformed rule fails before anything runs
    return TrainPlan(
        seed=int(base["seed"]), workers=int(base["workers"]), sync_bn=bool(base["sync_bn"]),
        log_every=int(base["log_every"]), stages=stages, split=_split_spec(base["split"]),
        validate=validate, select=str(base["select"] or "auto"),
    )


def parse_select(spec: Any) -> tuple[str, str]:
    """``(metric or auto/last, max|min)`` of a ``train.select`` value (see :mod:`zoo.train.selection`)."""
    text = str(spec if spec not in (None, False, "") else "auto").strip()
    mode = ""
    if ":" in text:
        mode, text = (part.strip() for part in text.split(":", 1))
        if mode not in ("max", "min"):
            raise TrainConfigError(f"train.select '{spec}': the prefix must be max: or min:, got '{mode}:'")
    if not text:
        raise TrainConfigError(f"train.select '{spec}' names no metric (e.g. train.select=map@100, or last)")
    if text in ("auto", "last"):
        return text, "max"
    return text, mode or ("min" if "loss" in text else "max")


def _split_spec(value: Any) -> dict[str, Any] | None:
    if value in (None, False, "none"):
        return None
    if isinstance(value, str):
        return {"type": value}
    if isinstance(value, dict) and "type" in value:
        return dict(value)
    raise TrainConfigError(f"train.split must be a split preset name or a mapping with 'type', got {value!r}")


def _stage(i: int, s: dict[str, Any], name: str, data_size: int) -> Stage:
    amp = str(s["amp"]).lower() if s["amp"] not in (None, False) else "off"
    if amp not in AMP_MODES:
        raise TrainConfigError(f"train.stages[{i}].amp must be one of {AMP_MODES}, got '{s['amp']}'")
    epochs, stop_at = int(s["epochs"]), (int(s["stop_at"]) if s["stop_at"] else None)
    if epochs < 1 or (stop_at is not None and not 1 <= stop_at <= epochs):
        raise TrainConfigError(
            f"train.stages[{i}] ({name}): need epochs >= 1 and 1 <= stop_at <= epochs, got "
            f"epochs={epochs}, stop_at={stop_at}"
        )
    for key in ("batch_size", "accumulate"):
        if int(s[key]) < 1:
            raise TrainConfigError(f"train.stages[{i}] ({name}): {key} must be >= 1, got {s[key]}")
    ema = s["ema"]
    if ema is not None and not isinstance(ema, dict):
        ema = {"decay": float(ema)} if ema is not True else {}
    return Stage(
        index=i,
        name=str(name),
        epochs=epochs,
        stop_at=stop_at,
        batch_size=int(s["batch_size"]),
        lr=float(s["lr"]),
        image_size=int(s["image_size"] or data_size),
        accumulate=int(s["accumulate"]),
        clip_grad=float(s["clip_grad"]) if s["clip_grad"] else None,
        amp=amp,
        channels_last=bool(s["channels_last"]),
        ema=ema,
        optimizer=_spec(s["optimizer"], "optimizer") or {"type": "adam"},
        param_groups=_spec(s["param_groups"], "param_groups") or {"type": "all"},
        scheduler=_spec(s["scheduler"], "scheduler") or {"type": "constant"},
        loss=dict(s["loss"] or {}),
        augment=_spec(s["augment"], "augment"),
        val_augment=_spec(s["val_augment"], "val_augment"),
        mixer=_spec(s["mixer"], "mixer"),
        sampler=_spec(s["sampler"], "sampler") or {"type": "distributed"},
        resample=_spec(s["resample"], "resample"),
        data=str(s["data"]),
        freeze=_str_list(s["freeze"], "freeze"),
        trainable=_str_list(s["trainable"], "trainable"),
        freeze_first_n_params=int(s["freeze_first_n_params"] or 0),
        freeze_bn_stats=bool(s["freeze_bn_stats"]),
        reinit=_str_list(s["reinit"], "reinit"),
        init=str(s["init"]) if s["init"] is not None else "none",
        init_strict=bool(s["init_strict"]),
        init_drop=_str_list(s["init_drop"], "init_drop"),
        model_overrides=_str_list(s["model_overrides"], "model_overrides"),
        continue_schedule=bool(s["continue"]),
        checkpoint_every_steps=int(s["checkpoint_every_steps"] or 0),
        drop_last=bool(s["drop_last"]),
        world_size=_positive(s["world_size"], f"train.stages[{i}] ({name}).world_size"),
        max_steps_per_epoch=(_positive(s["max_steps_per_epoch"], f"train.stages[{i}] ({name}).max_steps_per_epoch")
                             if s["max_steps_per_epoch"] is not None else None),
    )


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TrainConfigError(f"{what} must be a positive integer, got {value!r}")
    return int(value)
