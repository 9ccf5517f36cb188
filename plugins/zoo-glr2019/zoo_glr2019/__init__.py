"""zoo plugin: the GLR2019 Xception + compact bilinear pooling model (TylerYep/landmark)."""

__version__ = "0.1.0"
