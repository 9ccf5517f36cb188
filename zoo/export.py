"""Export a recipe as a self-contained image -> descriptor model (TorchScript or ONNX).

The exported module takes ``uint8`` RGB images ``B x 3 x H x W`` (any H, W), resizes them to the
recipe's ``image_size`` square (the GUIE submission convention: a fixed-size network input),
normalises them with the recipe's mean/std and returns the L2-normalised descriptor ``B x D``.
Before anything is written the export is compared with the eager model on real photos (the
scikit-image and scikit-learn sample photos unless others are given); the file is then written
to a temp file, re-loaded, compared again and renamed into place.

GUIE 2022 limit: descriptors of at most 64 dimensions (:data:`GUIE_MAX_DIM`); recipes whose name
starts with ``guie`` are held to it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.registry import Registry, ZooError

log = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
GUIE_MAX_DIM = 64
#: interpolation names of a recipe -> ``F.interpolate`` modes
_MODES = {"bicubic": "bicubic", "cubic": "bicubic", "bilinear": "bilinear", "linear": "bilinear", "nearest": "nearest"}
PARITY_MIN_COSINE = 0.9999
PARITY_MAX_ABS = 1e-3


class ExportError(ZooError):
    """An export that cannot be made or does not match the eager model."""


class ImageEmbedder(nn.Module):
    """uint8 RGB ``B x 3 x H x W`` -> resize to ``S x S`` -> normalise -> ``model.embed`` (L2-normalised)."""

    def __init__(
        self,
        model: nn.Module,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__()
        mode = _MODES.get(interpolation.lower())
        if mode is None:
            raise ExportError(f"interpolation '{interpolation}' cannot be exported; use one of {', '.join(_MODES)}")
        self.model = model
        self.image_size = int(image_size)
        self.mode = mode
        self.register_buffer("mean", torch.tensor([float(v) * 255.0 for v in mean]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([float(v) * 255.0 for v in std]).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        size = (self.image_size, self.image_size)
        if self.mode == "nearest":
            x = F.interpolate(x, size=size, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode=self.mode, align_corners=False)
        x = (x - self.mean) / self.std
        return F.normalize(self.model.embed(x).float(), dim=1)


def default_photos() -> list[Path]:
    """Real photos shipped inside the scikit-image and scikit-learn wheels."""
    import skimage.data
    import sklearn.datasets

    sk = Path(skimage.data.__file__).parent
    sl = Path(sklearn.datasets.__file__).parent / "images"
    return [sk / "chelsea.png", sk / "coffee.png", sk / "astronaut.png", sl / "china.jpg", sl / "flower.jpg"]


def photo_batches(paths: Iterable[str | Path]) -> list[torch.Tensor]:
    """Each photo as a uint8 ``1 x 3 x H x W`` tensor (sizes differ, which the check needs)."""
    from zoo.data.images import read_image

    return [torch.from_numpy(read_image(p).copy()).permute(2, 0, 1).unsqueeze(0).contiguous() for p in paths]


@dataclass
class ParityReport:
    """How close the export is to the eager model, photo by photo."""

    photos: list[str]
    min_cosine: float
    max_abs_diff: float
    per_photo: list[dict[str, float]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.min_cosine >= PARITY_MIN_COSINE and self.max_abs_diff <= PARITY_MAX_ABS

    def summary(self) -> str:
        return (
            f"{len(self.photos)} photos: min cosine {self.min_cosine:.6f} (need >= {PARITY_MIN_COSINE}), "
            f"max |diff| {self.max_abs_diff:.2e} (need <= {PARITY_MAX_ABS:.0e})"
        )


def check_parity(
    eager: nn.Module, exported: Callable[[torch.Tensor], torch.Tensor], batches: Sequence[torch.Tensor], names: Sequence[str]
) -> ParityReport:
    rows = []
    with torch.no_grad():
        for x, name in zip(batches, names):
            a = eager(x).float()
            b = torch.as_tensor(exported(x)).float()
            if a.shape != b.shape:
                raise ExportError(f"export gives shape {tuple(b.shape)} for {name}, the eager model {tuple(a.shape)}")
            rows.append({
                "photo": name,
                "cosine": float((a * b).sum(1).min()),
                "max_abs_diff": float((a - b).abs().max()),
            })
    return ParityReport(
        list(names),
        min(r["cosine"] for r in rows),
        max(r["max_abs_diff"] for r in rows),
        rows,  # type: ignore[arg-type]
    )


def build_embedder(
    recipe: str,
    *,
    checkpoint: str | Path | None = None,
    pretrained: bool = True,
    overrides: Iterable[str] = (),
    image_size: int | None = None,
    registry: Registry | None = None,
) -> ImageEmbedder:
    """The eager :class:`ImageEmbedder` of a recipe with its weights (checkpoint, else manifest default)."""
    from zoo.assembly import create_model

    model = create_model(
        recipe, pretrained=pretrained and checkpoint is None, checkpoint=checkpoint, overrides=overrides, registry=registry
    ).eval()
    data = model.data_config
    return ImageEmbedder(
        model, int(image_size or data.input_size), data.mean, data.std, data.interpolation,
    ).eval()


def _to_torchscript(embedder: ImageEmbedder, example: torch.Tensor, tmp: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    with torch.no_grad():
        traced = torch.jit.trace(embedder, example, check_trace=False)
    traced = torch.jit.freeze(traced.eval()) if hasattr(torch.jit, "freeze") else traced
    traced.save(str(tmp))
    loaded = torch.jit.load(str(tmp), map_location="cpu")
    return loaded


ONNX_OPSET = 17


def _avg_pool2d_symbolic(g: Any, input: Any, kernel_size: Any, stride: Any, padding: Any, ceil_mode: Any,
                         count_include_pad: Any, divisor_override: Any = None) -> Any:
    """``aten::avg_pool2d`` for the legacy ONNX exporter, including a kernel computed from ``x.size()``.

    GeM-style poolings call ``avg_pool2d(x, (x.size(-2), x.size(-1)))``; traced for ONNX those sizes are
    graph values, which the stock symbolic rejects. A kernel that is not a constant can only be such a
    whole-map pool, so it becomes ``GlobalAveragePool`` (the parity check confirms the export).
    """
    from torch.onnx import symbolic_helper as sh

    if not sh._is_constant(kernel_size) and not sh._is_tuple_construct(kernel_size):
        return g.op("GlobalAveragePool", input)
    try:
        k = sh._get_const(kernel_size, "is", "kernel_size")
    except Exception:
        return g.op("GlobalAveragePool", input)
    s = sh._maybe_get_const(stride, "is")
    s = list(s) if isinstance(s, (list, tuple)) and len(s) else list(k)
    pad = list(sh._get_const(padding, "is", "padding"))
    ceil = bool(sh._maybe_get_const(ceil_mode, "i"))
    incl = bool(sh._maybe_get_const(count_include_pad, "i"))
    return g.op(
        "AveragePool", input, kernel_shape_i=list(k), strides_i=s, pads_i=pad + pad,
        ceil_mode_i=int(ceil), count_include_pad_i=int(incl),
    )


def _to_onnx(embedder: ImageEmbedder, example: torch.Tensor, tmp: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    import warnings

    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ExportError("ONNX export needs onnx and onnxruntime: pip install 'instance-zoo[export]'") from exc
    # the legacy (TorchScript-based) exporter: the dynamo exporter needs onnxscript
    torch.onnx.register_custom_op_symbolic("aten::avg_pool2d", _avg_pool2d_symbolic, ONNX_OPSET)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                embedder,
                (example,),
                str(tmp),
                dynamo=False,
                input_names=["images"],
                output_names=["embedding"],
                dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "embedding": {0: "batch"}},
                opset_version=ONNX_OPSET,
            )
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::avg_pool2d", ONNX_OPSET)
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(session.run(None, {"images": x.numpy()})[0]))

    return run


@dataclass
class ExportResult:
    path: Path
    format: str
    embedding_dim: int
    image_size: int
    parity: ParityReport


def export_model(
    recipe: str,
    out: str | Path,
    *,
    fmt: str = "torchscript",
    checkpoint: str | Path | None = None,
    pretrained: bool = True,
    overrides: Iterable[str] = (),
    image_size: int | None = None,
    max_dim: int | None = None,
    photos: Sequence[str | Path] | None = None,
    registry: Registry | None = None,
) -> ExportResult:
    """Export ``recipe`` to ``out`` in ``fmt``; raises :class:`ExportError` unless parity holds."""
    from zoo.atomic import atomic_path

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}'; use one of {', '.join(FORMATS)}")
    embedder = build_embedder(
        recipe, checkpoint=checkpoint, pretrained=pretrained, overrides=overrides, image_size=image_size, registry=registry
    )
    photos = list(photos) if photos else default_photos()
    batches = photo_batches(photos)
    names = [Path(p).name for p in photos]
    with torch.no_grad():
        dim = int(embedder(batches[0]).shape[1])
    if max_dim is None and recipe.startswith("guie"):
        max_dim = GUIE_MAX_DIM
    if max_dim is not None and dim > max_dim:
        raise ExportError(
            f"recipe '{recipe}' gives {dim}-d descriptors, more than the {max_dim} allowed "
            "(GUIE submissions: at most 64); set model.embedding_dim or use a neck"
        )
    example = batches[0]
    out = Path(out)
    with atomic_path(out) as tmp:
        exported = (_to_torchscript if fmt == "torchscript" else _to_onnx)(embedder, example, tmp)
        parity = check_parity(embedder, exported, batches, names)
        if not parity.ok:
            raise ExportError(
                f"the {fmt} export of '{recipe}' does not match the eager model on real photos ({parity.summary()}); "
                f"nothing was written to {out}"
            )
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a shareable artifact, not a private temp file
    log.info("exported %s as %s to %s (%d-d, %d px); parity: %s", recipe, fmt, out, dim, embedder.image_size, parity.summary())
    return ExportResult(out, fmt, dim, embedder.image_size, parity)


__all__ = [
    "FORMATS",
    "GUIE_MAX_DIM",
    "ExportError",
    "ExportResult",
    "ImageEmbedder",
    "ParityReport",
    "build_embedder",
    "check_parity",
    "default_photos",
    "export_model",
]
