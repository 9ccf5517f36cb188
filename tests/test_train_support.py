"""Shared pieces of the training tests: a tiny BN-free CNN plugin (so 2-process DDP equals one process
on the same global batch), synthetic class-structured images, a tiny recipe, and a subprocess entry
point (``python tests/test_train_support.py MODE RUN_DIR``) used by the kill -9 / resume and gloo DDP
tests. Holds no tests itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from zoo import hookimpl


class TinyCNN(nn.Module):
    """conv(3->8, s2) -> ReLU -> Dropout2d(0.1) -> conv(8->16, s2) -> ReLU: no BatchNorm."""

    output_fmt = "NCHW"

    def __init__(self, width: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.num_features = 2 * width
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Dropout2d(dropout),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinyPlugin:
    @staticmethod
    @hookimpl
    def zoo_register_backbones(registrar):
        registrar.add("test_tiny_cnn", TinyCNN, description="test-only BN-free CNN")


def tiny_registry():
    from zoo.plugins import load_registry

    return load_registry(plugins=[("train_test_tiny", TinyPlugin)], strict=False, disable=(), only=())


def synthetic_images(n_classes: int = 4, per_class: int = 8, size: int = 16, seed: int = 0):
    """Class-structured images: each class has its own mean colour pattern plus noise."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 255, (n_classes, size, size, 3))
    images, labels = [], []
    for c in range(n_classes):
        for _ in range(per_class):
            noise = rng.normal(0, 25, (size, size, 3))
            images.append(np.clip(protos[c] + noise, 0, 255).astype(np.uint8))
            labels.append(100 + c)
    return np.stack(images), labels


def tiny_cfg(**train):
    base = {
        "seed": 3, "epochs": 2, "batch_size": 8, "lr": 1e-2, "workers": 0, "log_every": 1,
        "optimizer": {"type": "adam"}, "scheduler": {"type": "warmup_cosine", "warmup_epochs": 0.5},
    }
    base.update(train)
    return OmegaConf.create({
        "name": "tiny-test",
        "data": {"image_size": 16},
        "model": {
            "backbone": {"type": "test_tiny_cnn"},
            "pooling": {"type": "avg"},
            "neck": {"type": "linear_swish"},
            "embedding_dim": 8,
            "head": {"type": "subcenter_arcface", "num_classes": 4, "subcenters": 3},
        },
        "loss": {"type": "arcface_dynamic", "s": 30.0},
        "train": base,
    })


def tiny_source(flip: bool = True):
    from zoo.train.data import TensorSource

    images, labels = synthetic_images()
    return TensorSource({"train": (images, labels)}, val=(images[::2], labels[::2]), flip=flip)


def main(argv: list[str]) -> int:
    """Subprocess worker: ``run|resume|ddp RUN_DIR [dropout=P] [key=value train overrides]`` (``ddp``
    under torchrun: gloo, one CPU thread per process)."""
    torch.set_num_threads(1)
    from zoo.train.engine import Trainer

    mode, run_dir = argv[0], Path(argv[1])
    extra = dict(a.split("=", 1) for a in argv[2:])
    dropout = float(extra.pop("dropout", 0.1))
    train = {k: (int(v) if v.lstrip("-").isdigit() else v) for k, v in extra.items()}
    cfg = tiny_cfg(**train)
    cfg.model.backbone.dropout = dropout
    Trainer(cfg, tiny_source(), run_dir, registry=tiny_registry(), device="cpu", resume=(mode == "resume"),
            progress=False).fit()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(sys.argv[1:]))
