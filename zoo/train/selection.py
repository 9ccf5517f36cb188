"""Which epoch's weights a run hands over: the best by a declared validation metric, or the last.

``train.select`` (run-wide):

* ``auto`` (default): ``map@100`` when the run validates retrieval, else ``last``;
* ``last``: the weights of the last epoch (the run's end);
* a key of the end-of-epoch record, e.g. ``map@100``, ``recall@1``, ``mp@5``, ``gap``, ``accuracy``:
  the epoch with the highest value (``train_loss`` and other ``*loss*`` keys: the lowest); prefix
  ``max:`` / ``min:`` to say the direction (``min:train_loss``). Ties keep the earlier epoch.

Files (see :mod:`zoo.train.engine`): ``model.safetensors`` always holds the **selected** weights (what
``zoo.create_model("runs/x")``, ``zoo embed runs/x`` and publishing load); with a metric,
``last.safetensors`` holds the last epoch's as well. ``selection.json`` and the ``zoo_selection``
metadata of ``model.safetensors`` say which epoch was selected and why.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from zoo.train.config import TrainConfigError, parse_select

AUTO, LAST = "auto", "last"
#: the metric ``auto`` selects by when the run validates retrieval
AUTO_METRIC = "map@100"
#: safetensors metadata key and run-folder file saying which epoch was selected
META_KEY = "zoo_selection"
SELECTION_FILE = "selection.json"
LAST_FILE = "last.safetensors"


@dataclass
class Selection:
    """The selection rule of a run and the best epoch so far (rebuilt from the history on resume)."""

    metric: str | None  # None: the last epoch
    mode: str = "max"
    best: dict[str, Any] | None = None
    last: dict[str, Any] | None = field(default=None)

    @classmethod
    def resolve(cls, spec: Any, *, retrieval: bool, reported: Sequence[str]) -> "Selection":
        """The rule of ``train.select=spec`` for a run whose epoch records hold ``reported`` keys."""
        metric, mode = parse_select(spec)
        if metric == AUTO:
            metric = AUTO_METRIC if retrieval else LAST
        if metric == LAST:
            return cls(None)
        if metric not in reported:
            raise TrainConfigError(
                f"train.select={spec}: this run's epochs report {', '.join(sorted(reported))}; select one of "
                "them or last (retrieval metrics need a retrieval --val set, gap/accuracy a set of trained classes)"
            )
        return cls(metric, mode)

    @property
    def by_metric(self) -> bool:
        return self.metric is not None

    def _value(self, record: dict[str, Any]) -> float | None:
        v = record.get(self.metric) if self.metric else None
        if v is None:
            return None
        v = float(v)
        return None if math.isnan(v) else v

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        old = float(self.best["value"])
        return value > old if self.mode == "max" else value < old

    def update(self, record: dict[str, Any]) -> bool:
        """Note a complete epoch's record; True when its weights are the new selection."""
        self.last = _where(record)
        if self.metric is None:
            self.best = {**self.last, "value": None}
            return True
        value = self._value(record)
        if value is None or not self._better(value):
            return False
        self.best = {**self.last, "value": value}
        return True

    def restore(self, history: Sequence[dict[str, Any]]) -> None:
        """Replay the end-of-epoch records of a resumed run."""
        self.best = self.last = None
        for record in history:
            if record.get("kind") == "val":
                self.update(record)

    def describe(self, weights: str, last: str | None) -> dict[str, Any]:
        """What ``selection.json`` and the weights' metadata say."""
        return {
            "select": self.metric or LAST,
            "mode": self.mode if self.metric else None,
            "selected": None if self.best is None else {**self.best, "file": weights},
            "last": None if self.last is None else {**self.last, "file": last or weights},
        }

    def summary(self) -> str:
        """One line for the log and the CLI."""
        if self.best is None:
            return "no epoch completed: the weights are the run's last state"
        if "epoch" in self.best:
            where = f"stage {self.best['stage']} epoch {self.best['epoch']} (step {self.best['global_step']})"
        else:  # stopped inside an epoch (--max-steps): only the step is known
            where = f"the state at step {self.best['global_step']} (inside an epoch)"
        if self.metric is None:
            return f"selected the last epoch, {where}"
        return f"selected {where}: best {self.metric} = {self.best['value']:.4f} ({self.mode})"


def _where(record: dict[str, Any]) -> dict[str, Any]:
    return {k: int(record[k]) for k in ("stage", "epoch", "global_step") if k in record}


def selection_metadata(info: dict[str, Any]) -> dict[str, str]:
    """The ``zoo_selection`` metadata entry of a weights file."""
    return {META_KEY: json.dumps(info)}
