"""What a stage's setup is checked against before it trains, and what the run says about it: which
validation the sets allow (classification on trained classes, retrieval on instance labels), the
recipe's number of processes, the recipe's validation hold-out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig

from zoo.distributed import DistContext
from zoo.train.config import Stage
from zoo.train.data import RetrievalSet, Split, TrainDataError
from zoo.train.errors import UnseenLabelsError
from zoo.train.retrieval_validation import check_retrieval_set

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationChoice:
    """Which validation a stage runs every epoch: classification (GAP, accuracy of the head on
    trained classes) and/or retrieval (mAP@100, R@1, mP@5 of the descriptors, :mod:`zoo.train.retrieval_validation`)."""

    classify: bool = False
    retrieve: bool = False

    def reported(self) -> list[str]:
        """The record keys these validations add (besides ``train_loss``)."""
        return (["gap", "accuracy"] if self.classify else []) + (["map@100", "recall@1", "mp@5"] if self.retrieve else [])


def _positives(rset: RetrievalSet) -> bool:
    try:
        check_retrieval_set(rset)
    except TrainDataError:
        return False
    return True


def choose_validation(mode: str, val: Split | None, rset: RetrievalSet | None, split: Split,
                      ctx: DistContext) -> ValidationChoice:
    """The validation ``train.validate=mode`` asks for on these sets, checked.

    ``auto``: classification on a set whose labels are training classes; retrieval on a set of
    unseen labels (class-disjoint: the head cannot score them) or a query/gallery pair; both on a set
    with some of each. ``classification`` / ``retrieval`` / ``both`` ask for them explicitly (and
    fail with one line when the set cannot give them); ``none`` validates nothing.
    """
    if mode == "none" or (val is None and rset is None):
        return ValidationChoice()
    has_val = val is not None and len(val.targets) > 0
    seen = bool(has_val and (val.targets >= 0).any())  # type: ignore[union-attr]
    unseen = int((val.targets < 0).sum()) if has_val else 0  # type: ignore[union-attr]
    pair = rset is not None and not rset.all_vs_all
    if mode == "auto":
        classify = seen and not pair
        retrieve = rset is not None and (pair or unseen > 0) and _positives(rset)
        if not classify and not retrieve:
            if has_val and not seen and rset is None:
                raise _unseen_error(val, split)  # type: ignore[arg-type]
            if rset is not None:
                check_retrieval_set(rset)  # says why the set gives no retrieval figures
        choice = ValidationChoice(classify, retrieve)
    else:
        classify, retrieve = mode in ("classification", "both"), mode in ("retrieval", "both")
        if classify and not seen:
            if not has_val:
                raise TrainDataError(f"train.validate={mode}: no validation set; give --val or a recipe train.split")
            raise _unseen_error(val, split)  # type: ignore[arg-type]
        if retrieve:
            if rset is None:
                raise TrainDataError(
                    f"train.validate={mode}: retrieval validation embeds image files as zoo embed does; give "
                    "--val CSV/folder (or the recipe's train.split with files), not in-memory data"
                )
            check_retrieval_set(rset)
        choice = ValidationChoice(classify, retrieve)
    if choice.classify and unseen and ctx.is_main:
        names = val.unseen_labels  # type: ignore[union-attr]
        which = f"{len(names)} labels ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})" if names else "labels"
        log.warning("%d of %d validation images have %s unseen in training: they count as queries without a "
                    "target in GAP, and accuracy is over the others%s", unseen, len(val.targets), which,  # type: ignore[union-attr]
                    "; retrieval validation covers every image" if choice.retrieve else "")
    return choice


def _unseen_error(val: Split, split: Split) -> UnseenLabelsError:
    names = val.unseen_labels
    which = f"{len(names)} labels ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})" if names else "labels"
    return UnseenLabelsError(
        f"the validation set's {which} are none of the {split.num_classes} training classes: classification "
        "GAP and accuracy need validation images of trained classes; validate retrieval on it instead "
        "(train.validate=retrieval, with --val as a CSV or image folder), or validate on rows of the "
        "training classes (drop --val and set the recipe's train.split)"
    )


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
