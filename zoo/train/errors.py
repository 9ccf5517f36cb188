"""User errors of a training run (each one line naming the thing and the fix)."""

from __future__ import annotations

from zoo.registry import ZooError


class TrainError(ZooError):
    """Training cannot start or continue as configured."""


class RunExistsError(TrainError):
    """The run folder already holds a run and neither --resume nor --overwrite was given."""


class RunNotFoundError(TrainError):
    """--resume into a folder that holds no checkpoint to resume from."""


class ResumeConfigError(TrainError):
    """--resume with a configuration that differs from the run's in keys that change results."""


class UnseenLabelsError(TrainError):
    """Validation labels of which none is a training class: classification metrics cannot be computed."""
