"""User errors of a training run (each one line naming the thing and the fix)."""

from __future__ import annotations

from zoo.registry import ZooError


class TrainError(ZooError):
    """Training cannot start or continue as configured."""
