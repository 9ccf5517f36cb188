"""Show a recipe's resolved config (after ``extends`` and overrides), its training stage table and its
override keys.

Examples:
  zoo info default
  zoo info default-finetune train.epochs=3 model.pooling.type=avg
  zoo info glr2020-3rd-effnet-b5 --keys
"""

from __future__ import annotations

import argparse
from typing import Any

COMMAND = "info"
HELP = "show a recipe's resolved config, training stages and override keys"

#: columns of the stage table: header -> how to read it from a resolved stage
STAGE_COLUMNS = (
    "#", "stage", "data", "size", "batch/GPU", "world_size", "accum", "global batch", "lr", "epochs",
    "stop_at", "max steps/epoch", "schedule", "transitions",
)


def configure(p: argparse.ArgumentParser) -> None:
    from zoo.cli._options import add_json_arg, add_override_args

    p.add_argument("recipe", help="recipe name (see: zoo recipes) or a recipe YAML file")
    add_override_args(p)
    p.add_argument("--keys", action="store_true", help="print only the override keys")
    add_json_arg(p, '{"name", "config" (resolved), "keys"}')
    p.set_defaults(func=run)


def _transitions(stage: Any) -> str:
    """The stage's model/optimizer transitions in one short cell (what differs from a plain stage)."""
    parts = []
    if stage.continue_schedule:
        parts.append("continue")
    if stage.init not in ("previous", ""):
        parts.append(f"init={stage.init}" + ("" if stage.init_strict else " (non-strict)"))
    if stage.init_drop:
        parts.append("drop=" + ",".join(stage.init_drop))
    if stage.trainable:
        parts.append("trainable=" + ",".join(stage.trainable))
    if stage.freeze:
        parts.append("freeze=" + ",".join(stage.freeze))
    if stage.freeze_first_n_params:
        parts.append(f"freeze_first={stage.freeze_first_n_params}")
    if stage.reinit:
        parts.append("reinit=" + ",".join(stage.reinit))
    if stage.model_overrides:
        parts.append("model: " + " ".join(stage.model_overrides))
    if stage.mixer:
        parts.append(f"mixer={stage.mixer['type']}")
    return "; ".join(parts) or "-"


def stage_rows(plan: Any) -> list[list[str]]:
    """One row per resolved stage (:data:`STAGE_COLUMNS`); ``global batch`` = batch x world_size x accum."""
    rows = []
    for s in plan.stages:
        rows.append([
            str(s.index), s.name, s.data, str(s.image_size), str(s.batch_size), str(s.world_size),
            str(s.accumulate), str(s.batch_size * s.world_size * s.accumulate), f"{s.lr:g}", str(s.epochs),
            str(s.stop_at) if s.stop_at else "-",
            str(s.max_steps_per_epoch) if s.max_steps_per_epoch else "-",
            s.scheduler["type"], _transitions(s),
        ])
    return rows


def print_stage_table(cfg: Any) -> bool:
    """Print the ``train:`` section as a stage table (False when the recipe has none, e.g. an ensemble)."""
    from zoo.cli._output import print_table
    from zoo.train.config import resolve_plan

    if cfg.get("train") is None or cfg.get("ensemble") is not None:
        return False
    plan = resolve_plan(cfg)
    split = plan.split or "none (pass --val or set train.split)"
    print(f"\n# training stages (seed {plan.seed}; split: {split}; batch per GPU, "
          "global batch = batch/GPU x world_size x accum):")
    print_table(stage_rows(plan), STAGE_COLUMNS)
    return True


def run(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from zoo.recipes import flat_keys, get_recipe

    cfg = get_recipe(args.recipe, args.overrides)
    keys = flat_keys(cfg)
    if args.json:
        from zoo.cli._output import print_json

        from zoo.train.config import resolve_plan

        has_plan = cfg.get("train") is not None and cfg.get("ensemble") is None
        print_json({"name": cfg.name, "config": OmegaConf.to_container(cfg, resolve=True),
                    "train_plan": resolve_plan(cfg).to_dict() if has_plan else None, "keys": keys})
        return 0
    if not args.keys:
        print(OmegaConf.to_yaml(cfg, resolve=True).rstrip())
        print_stage_table(cfg)
        print("\n# override keys (key=value; +key=value adds a key):")
    for key in keys:
        print(key if args.keys else f"#   {key}")
    return 0
