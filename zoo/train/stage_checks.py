"""What a stage's setup is checked against before it trains, and what the run says about it: validation
labels the head can score, the recipe's number of processes, the recipe's validation hold-out."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from omegaconf import DictConfig

from zoo.distributed import DistContext
from zoo.train.config import Stage
from zoo.train.data import Split
from zoo.train.errors import UnseenLabelsError

log = logging.getLogger(__name__)


def check_val_labels(val: Split | None, split: Split, ctx: DistContext) -> None:
    """Validation labels that are no training class cannot be scored by a classification head:
    refuse a set of only such labels, say how many when some are."""
    if val is None or not len(val.targets):
        return
    unseen = int((val.targets < 0).sum())
    if not unseen:
        return
    names = val.unseen_labels
    which = f"{len(names)} labels ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})" if names else "labels"
    if unseen == len(val.targets):
        raise UnseenLabelsError(
            f"the validation set's {which} are none of the {split.num_classes} training classes: classification "
            "GAP and accuracy need validation images of trained classes; validate on rows of the training "
            "classes (e.g. drop --val and set the recipe's train.split), or measure retrieval with zoo retrieve"
        )
    if ctx.is_main:
        log.warning("%d of %d validation images have %s unseen in training: they count as queries without a "
                    "target in GAP, and accuracy is over the others", unseen, len(val.targets), which)

def note_world_size(stage: Stage, ctx: DistContext, cfg: DictConfig) -> None:
    """Say so when this run's global batch differs from the recipe's (the schedule stays the recipe's)."""
    have = ctx.world_size
    if have == stage.world_size or not ctx.is_main:
        return
    want = stage.batch_size * stage.world_size * stage.accumulate
    got = stage.batch_size * have * stage.accumulate
    raw = cfg.train.get("stages") if cfg.get("train") is not None else None
    if not raw:
        key = "train.accumulate"
    else:
        own = "accumulate" in (raw[stage.index] or {})
        key = f"{'' if own else '+'}train.stages.{stage.index}.accumulate"
    k, rest = divmod(stage.world_size * stage.accumulate, have)
    fix = (f"to match it, set {key}={k}" if k >= 1 and rest == 0 else
           f"to match it, choose train.batch_size and accumulate so that batch_size x {have} x accumulate = {want}")
    log.warning(
        "stage %s: the recipe's global batch is %d (batch_size %d x world_size %d x accumulate %d), this run's "
        "is %d (%d x %d process%s x %d); the schedule is the recipe's, unchanged: %s",
        stage.name, want, stage.batch_size, stage.world_size, stage.accumulate, got, stage.batch_size, have,
        "" if have == 1 else "es", stage.accumulate, fix,
    )


def rows_and_classes(targets: np.ndarray | None) -> str:
    t = np.asarray(targets if targets is not None else [], dtype=np.int64)
    return f"{len(t)} rows of {len(np.unique(t[t >= 0]))} classes"


def describe_split(stage: Stage, holdout: dict[str, Any], split: Split, val: Split | None) -> None:
    """Log how many rows and classes each side of the recipe's validation hold-out has."""
    log.info("stage %s: train.split %s on '%s': training on %s, validating every epoch on %s", stage.name,
             holdout, stage.data, rows_and_classes(split.targets), rows_and_classes(val.targets if val else None))
