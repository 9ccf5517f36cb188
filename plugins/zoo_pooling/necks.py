"""Necks: pooled features ``B x C`` -> embedding ``B x D``.

Each neck is an ``nn.Sequential`` so its state-dict keys are the upstream ones (``neck.0.*`` ...):

* :class:`OptionDNeck` — "option-D" of Henkel & Singer 2020, used by GLR2021 1st place and
  GLR2021 top-100: ``Linear(C, D, bias=True) -> BatchNorm1d(D) -> PReLU()`` (D = 512 upstream).
* :class:`LinearSwishNeck` — GLR2020 3rd place (haqishen ``models.py``): ``feat = Linear(C, 512)``
  followed by ``Swish`` (x * sigmoid(x), no parameters); no BN, no dropout.
* :class:`DropoutLinearNeck` — GUIE 2022 2nd place ``Neck(style='simple')``:
  ``Dropout(0.2) -> Linear(C, 64)``.
"""

from __future__ import annotations

from torch import nn

OPTION_D_DIM = 512
GLR2020_DIM = 512
GUIE_DIM = 64
GUIE_DROPOUT = 0.2


class OptionDNeck(nn.Sequential):
    """Linear-BN1d-PReLU (option-D; GLR2021 1st / top-100, default ``out_features=512``).

    Keys: ``0.weight/bias``, ``1.{weight,bias,running_mean,running_var,num_batches_tracked}``,
    ``2.weight`` (PReLU, one shared slope initialised to 0.25).
    """

    def __init__(self, in_features: int, out_features: int = OPTION_D_DIM, bias: bool = True) -> None:
        super().__init__(
            nn.Linear(int(in_features), int(out_features), bias=bias),
            nn.BatchNorm1d(int(out_features)),
            nn.PReLU(),
        )
        self.in_features = int(in_features)
        self.out_features = int(out_features)


class LinearSwishNeck(nn.Sequential):
    """Linear + Swish (GLR2020 3rd place ``feat`` + ``Swish_module``; default ``out_features=512``).

    Keys: ``0.weight`` (D x C), ``0.bias`` (upstream ``feat.weight``/``feat.bias``).
    """

    def __init__(self, in_features: int, out_features: int = GLR2020_DIM, bias: bool = True) -> None:
        super().__init__(nn.Linear(int(in_features), int(out_features), bias=bias), nn.SiLU())
        self.in_features = int(in_features)
        self.out_features = int(out_features)


class DropoutLinearNeck(nn.Sequential):
    """Dropout + Linear (GUIE 2022 2nd place ``Neck(1280, 64, style='simple')``; ``p=0.2``, ``out_features=64``).

    Keys: ``1.weight``, ``1.bias`` (upstream ``Neck.neck.1.*``).
    """

    def __init__(
        self, in_features: int, out_features: int = GUIE_DIM, p: float = GUIE_DROPOUT, bias: bool = True
    ) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout_linear neck: p must be in [0, 1), got {p}")
        super().__init__(nn.Dropout(p), nn.Linear(int(in_features), int(out_features), bias=bias))
        self.in_features = int(in_features)
        self.out_features = int(out_features)
