"""Batch mixers: FMix, CutMix, MixUp and GLR2021 top-100's random choice of them.

Contract (``augmentation`` components with ``meta role="batch"``)::

    mixer = factory(**cfg)
    images, targets = mixer(images: Tensor B x C x H x W, targets: int64 B, num_classes: int,
                            generator: torch.Generator)

A mixer pairs sample ``i`` with sample ``perm[i]`` (``torch.randperm(B, generator)``) and returns the
mixed images with a :class:`zoo.train.step.MixedTargets` ``(targets, targets[perm], lam)``; the trainer's
step turns it into ``lam * L(x, y_a) + (1 - lam) * L(x, y_b)`` of the recipe's loss, as upstream's
training loop does (GLR2021 top-100 ``utils.py`` L309-312). For a margin loss this is *not* the loss
of a soft target ``lam * onehot(y_a) + (1 - lam) * onehot(y_b)`` (ArcFace puts the margin on the
target class, so mixing the targets inside it is another function). A batch left unmixed keeps its
int64 targets. All randomness comes from ``generator`` (CPU; numpy draws are seeded from it), so a
batch's mixing is reproducible. The images stay on their device.

Constants (GLR2021 top-100 ``custom/augmentations.py``, ``fmix.py``, ``utils.py::train`` L290-300;
SEED_SYSTEMS.md 4.3): FMix alpha=3, decay power 1, ``max_soft=0`` (the mask's ``ceil`` or ``floor`` of
``lam H W`` highest low-frequency pixels, coin flip; the loss weight is the sampled ``lam``); CutMix
alpha=1 with lambda clipped to [0.3, 0.4] and then set to the exact unpasted area; MixUp alpha=0.2;
``mix_top100`` draws ``u ~ U(0, 1)``: FMix if u < .25, CutMix if u < .5, MixUp if u < .75, else no
mixing. Upstream mixes only after the warm-up epoch (``epoch > warmup_epochs``) and only where its
``fmix``/``cutmix``/``mixup`` flags are on, which the released code never sets (``utils.py`` L526-528 ...
L674-676): the default top-100 recipe has no mixer; ``glr2021-top100-effnet-b0-mix`` is the write-up's.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from zoo.registry import ZooError
from zoo.train.step import MixedTargets

Mixed = tuple[torch.Tensor, "torch.Tensor | MixedTargets"]
Mixer = Callable[[torch.Tensor, torch.Tensor, int, torch.Generator], Mixed]


class MixError(ZooError):
    """Batch-mixing inputs or settings that cannot work."""


def _check(images: torch.Tensor, targets: torch.Tensor, num_classes: int) -> None:
    if images.ndim != 4:
        raise MixError(f"mixers take images B x C x H x W (got shape {tuple(images.shape)})")
    if targets.ndim != 1 or targets.shape[0] != images.shape[0]:
        raise MixError(f"mixers take int64 targets of shape (B,) = ({images.shape[0]},) (got {tuple(targets.shape)})")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise MixError(
            f"targets must be class indices in 0..{num_classes - 1} "
            f"(got {int(targets.min())}..{int(targets.max())})"
        )


def _numpy_rng(generator: torch.Generator) -> np.random.Generator:
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return np.random.default_rng(seed)


def _perm(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator)


def _mixed(targets: torch.Tensor, perm: torch.Tensor, lam: float) -> MixedTargets:
    """``(y_a, y_b = y_a[perm], lam)`` on the targets' device."""
    return MixedTargets(targets, targets[perm.to(targets.device)], float(lam))


# -- MixUp ------------------------------------------------------------------------------------------
class MixUp:
    """MixUp (Zhang et al.): ``x = lam x + (1 - lam) x[perm]``, ``lam ~ Beta(alpha, alpha)`` (alpha=0.2, top-100)."""

    def __init__(self, alpha: float = 0.2) -> None:
        if alpha <= 0:
            raise MixError(f"mixup: alpha must be > 0 (got {alpha})")
        self.alpha = float(alpha)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, num_classes: int,
                 generator: torch.Generator) -> Mixed:
        _check(images, targets, num_classes)
        perm = _perm(images.shape[0], generator)
        lam = float(_numpy_rng(generator).beta(self.alpha, self.alpha))
        p = perm.to(images.device)
        mixed = images * lam + images[p] * (1.0 - lam)
        return mixed, _mixed(targets, perm, lam)


# -- CutMix -----------------------------------------------------------------------------------------
def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box of area ~ (1 - lam) H W, centre uniform, clipped at the border: ``(y1, y2, x1, x2)``."""
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    y1, y2 = int(np.clip(cy - ch // 2, 0, height)), int(np.clip(cy + ch // 2, 0, height))
    x1, x2 = int(np.clip(cx - cw // 2, 0, width)), int(np.clip(cx + cw // 2, 0, width))
    return y1, y2, x1, x2


class CutMix:
    """CutMix (Yun et al.): paste a box of ``x[perm]``; ``lam ~ Beta(alpha, alpha)`` clipped to ``clip``
    (top-100: alpha=1, [0.3, 0.4]); the target weight is then the exact unpasted area fraction."""

    def __init__(self, alpha: float = 1.0, clip: tuple[float, float] | None = (0.3, 0.4)) -> None:
        if alpha <= 0:
            raise MixError(f"cutmix: alpha must be > 0 (got {alpha})")
        if clip is not None and not 0 <= clip[0] <= clip[1] <= 1:
            raise MixError(f"cutmix: clip must be (lo, hi) with 0 <= lo <= hi <= 1 (got {clip})")
        self.alpha = float(alpha)
        self.clip = tuple(clip) if clip is not None else None

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, num_classes: int,
                 generator: torch.Generator) -> Mixed:
        _check(images, targets, num_classes)
        perm = _perm(images.shape[0], generator)
        rng = _numpy_rng(generator)
        lam = float(rng.beta(self.alpha, self.alpha))
        if self.clip is not None:
            lam = float(np.clip(lam, *self.clip))
        h, w = images.shape[-2:]
        y1, y2, x1, x2 = cutmix_box(h, w, lam, rng)
        mixed = images.clone()
        mixed[:, :, y1:y2, x1:x2] = images[perm.to(images.device), :, y1:y2, x1:x2]
        lam = 1.0 - (y2 - y1) * (x2 - x1) / float(h * w)
        return mixed, _mixed(targets, perm, lam)


# -- FMix -------------------------------------------------------------------------------------------
def fourier_low_freq_image(height: int, width: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A random grey image with a ``1 / f ** decay`` amplitude spectrum (FMix, Harris et al. 2020)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(height, width)) ** decay
    spectrum = (rng.standard_normal(freqs.shape) + 1j * rng.standard_normal(freqs.shape)) * scale
    return np.fft.irfft2(spectrum, s=(height, width)).real


def fmix_mask(height: int, width: int, lam: float, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Binary mask (float32 H x W) whose ``ceil`` or ``floor`` (coin flip) of ``lam H W`` highest
    low-frequency pixels are 1 (``fmix.py::binarise_mask`` with ``max_soft=0``, L101-114)."""
    grey = fourier_low_freq_image(height, width, decay, rng).reshape(-1)
    n_on = math.ceil(lam * grey.size) if rng.random() > 0.5 else math.floor(lam * grey.size)
    mask = np.zeros(grey.size, dtype=np.float32)
    if n_on:
        mask[np.argsort(-grey, kind="stable")[:n_on]] = 1.0
    return mask.reshape(height, width)


class FMix:
    """FMix: ``x = m x + (1 - m) x[perm]`` for a binarised low-frequency mask ``m`` covering a fraction
    ``lam ~ Beta(alpha, alpha)`` (top-100: alpha=3, decay power 1, ``max_soft=0``); the loss weight is
    the sampled ``lam`` (``fmix.py::sample_mask`` returns it, not the mask's mean)."""

    def __init__(self, alpha: float = 3.0, decay: float = 1.0) -> None:
        if alpha <= 0 or decay <= 0:
            raise MixError(f"fmix: alpha and decay must be > 0 (got alpha={alpha}, decay={decay})")
        self.alpha = float(alpha)
        self.decay = float(decay)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, num_classes: int,
                 generator: torch.Generator) -> Mixed:
        _check(images, targets, num_classes)
        perm = _perm(images.shape[0], generator)
        rng = _numpy_rng(generator)
        lam = float(rng.beta(self.alpha, self.alpha))
        h, w = images.shape[-2:]
        mask_np = fmix_mask(h, w, lam, self.decay, rng)
        mask = torch.from_numpy(mask_np).to(device=images.device, dtype=images.dtype)
        mixed = images * mask + images[perm.to(images.device)] * (1.0 - mask)
        return mixed, _mixed(targets, perm, lam)


# -- random choice ----------------------------------------------------------------------------------
class NoMix:
    """Identity mixer: images and int64 targets unchanged."""

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, num_classes: int,
                 generator: torch.Generator) -> Mixed:
        _check(images, targets, num_classes)
        return images, targets


class RandomMix:
    """Per batch, pick one mixer with the given probabilities (the rest of the mass: no mixing)."""

    def __init__(self, choices: list[tuple[float, Mixer]]) -> None:
        total = sum(p for p, _ in choices)
        if any(p < 0 for p, _ in choices) or total > 1 + 1e-9:
            raise MixError(f"random mix: probabilities must be >= 0 and sum to <= 1 (got {[p for p, _ in choices]})")
        self.choices = choices
        self.identity = NoMix()
        self.last: str = "none"  # name of the mixer used for the latest batch (for logs)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, num_classes: int,
                 generator: torch.Generator) -> Mixed:
        u = float(torch.rand((), generator=generator))
        edge = 0.0
        for p, mixer in self.choices:
            edge += p
            if u < edge:
                self.last = type(mixer).__name__.lower()
                return mixer(images, targets, num_classes, generator)
        self.last = "none"
        return self.identity(images, targets, num_classes, generator)


def mix_top100(fmix_p: float = 0.25, cutmix_p: float = 0.25, mixup_p: float = 0.25, fmix_alpha: float = 3.0,
               fmix_decay: float = 1.0, cutmix_alpha: float = 1.0, cutmix_clip: tuple[float, float] = (0.3, 0.4),
               mixup_alpha: float = 0.2) -> RandomMix:
    """GLR2021 top-100 stage-4 mixing (README): FMix(alpha=3, decay 1) / CutMix(alpha=1, lambda in
    [0.3, 0.4]) / MixUp(alpha=0.2), each with p=.25, else none (SEED_SYSTEMS.md 4.3)."""
    return RandomMix([
        (fmix_p, FMix(fmix_alpha, fmix_decay)),
        (cutmix_p, CutMix(cutmix_alpha, tuple(cutmix_clip))),
        (mixup_p, MixUp(mixup_alpha)),
    ])


def fmix(alpha: float = 3.0, decay: float = 1.0) -> FMix:
    """FMix on every batch, alpha=3, decay power 1 (GLR2021 top-100 constants)."""
    return FMix(alpha, decay)


def cutmix(alpha: float = 1.0, clip: tuple[float, float] | None = (0.3, 0.4)) -> CutMix:
    """CutMix on every batch, alpha=1, lambda clipped to [0.3, 0.4] (GLR2021 top-100 constants)."""
    return CutMix(alpha, clip)


def mixup(alpha: float = 0.2) -> MixUp:
    """MixUp on every batch, alpha=0.2 (GLR2021 top-100 constant)."""
    return MixUp(alpha)
