"""Export a recipe as a self-contained image -> descriptor model (TorchScript or ONNX) that equals ``zoo embed``.

The exported module takes what a user has, ``uint8`` RGB images ``B x 3 x H x W`` (any H, W; one size
per batch), and applies the model's own :class:`~zoo.data.config.DataConfig` inside the graph: its size
rule (e.g. the default's long side -> 384 keeping the aspect ratio), PIL's antialiased resampling
reproduced pixel for pixel (:mod:`zoo.data.resample`), its mean/std; then it returns the L2-normalised
descriptor ``B x D`` (ensembles: each member at its own input, fused by the recipe's combiner).

Nothing is written unless these checks pass on real photos of different aspect ratios (the
scikit-image and scikit-learn sample photos unless others are given):

* **embed parity**: the eager export module, then the written file, on each whole photo equal what
  ``zoo embed`` stores for the photo file (cosine >= :data:`EMBED_MIN_COSINE`);
* **conversion parity**: the TorchScript / ONNX file, re-loaded, equals the eager module
  (cosine >= :data:`PARITY_MIN_COSINE`, max |diff| <= :data:`PARITY_MAX_ABS`).

The file is written to a temp file, re-loaded, checked and renamed into place; it carries its
preprocessing and recipe as metadata (TorchScript extra file ``zoo.json``, ONNX metadata ``zoo``).

GUIE 2022 limit: descriptors of at most 64 dimensions (:data:`GUIE_MAX_DIM`); recipes whose name
starts with ``guie`` are held to it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.data.config import DataConfig, model_data_configs, with_input_size
from zoo.data.resample import ResizeUint8
from zoo.factory import create_model
from zoo.registry import Registry, ZooError

log = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
GUIE_MAX_DIM = 64
#: the exported file against the eager module
PARITY_MIN_COSINE = 0.9999
PARITY_MAX_ABS = 1e-3
#: the eager module on the whole photo against ``zoo embed`` on the photo file
EMBED_MIN_COSINE = 0.999
METADATA_KEY = "zoo"


class ExportError(ZooError):
    """An export that cannot be made or does not match the eager model."""


class ImageEmbedder(nn.Module):
    """uint8 RGB ``B x 3 x H x W`` -> each input's DataConfig (resize as PIL, normalise) -> L2-normalised descriptor."""

    def __init__(self, model: nn.Module, data_configs: Sequence[DataConfig]) -> None:
        super().__init__()
        self.model = model
        self.data_configs = list(data_configs)
        self.ensemble = hasattr(model, "members")
        expected = len(model.members) if self.ensemble else 1  # type: ignore[arg-type]
        if len(self.data_configs) != expected:
            raise ExportError(f"{len(self.data_configs)} data configs for {expected} model inputs")
        self.resizers = nn.ModuleList(ResizeUint8(dc) for dc in self.data_configs)

    @property
    def image_size(self) -> int:
        return self.data_configs[0].input_size

    def inputs(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The normalised network input of every model input (what ``zoo embed`` feeds the model)."""
        return [dc.normalize(resize(images), channels_last=False) for dc, resize in zip(self.data_configs, self.resizers)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        xs = self.inputs(images)
        if self.ensemble:
            return self.model.combine(self.model.member_embeddings(xs))  # type: ignore[operator]
        return F.normalize(self.model.embed(xs[0]).float(), dim=1)  # type: ignore[operator]


def default_photos() -> list[Path]:
    """Real photos shipped inside the scikit-image and scikit-learn wheels, of different aspect ratios and
    sizes: landscape 3:2, square, portrait (a grey one), a 1000 px JPEG."""
    import skimage.data
    import sklearn.datasets

    sk = Path(skimage.data.__file__).parent
    sl = Path(sklearn.datasets.__file__).parent / "images"
    return [sk / "chelsea.png", sk / "coffee.png", sk / "astronaut.png", sk / "cell.png",
            sk / "hubble_deep_field.jpg", sl / "china.jpg"]


def photo_batches(paths: Iterable[str | Path]) -> list[torch.Tensor]:
    """Each photo as a uint8 ``1 x 3 x H x W`` tensor, decoded whole (sizes differ, which the check needs)."""
    from zoo.data.images import read_image

    return [torch.from_numpy(read_image(p).copy()).permute(2, 0, 1).unsqueeze(0).contiguous() for p in paths]


@dataclass
class ParityReport:
    """How close two descriptor sources are, photo by photo (``against``: what the export was compared with)."""

    photos: list[str]
    min_cosine: float
    max_abs_diff: float
    per_photo: list[dict[str, float]] = field(default_factory=list)
    need_cosine: float = PARITY_MIN_COSINE
    need_max_abs: float | None = PARITY_MAX_ABS
    against: str = "the eager model"

    @property
    def ok(self) -> bool:
        return self.min_cosine >= self.need_cosine and (self.need_max_abs is None or self.max_abs_diff <= self.need_max_abs)

    def summary(self) -> str:
        text = f"{len(self.photos)} photos: min cosine {self.min_cosine:.6f} (need >= {self.need_cosine})"
        if self.need_max_abs is not None:
            text += f", max |diff| {self.max_abs_diff:.2e} (need <= {self.need_max_abs:.0e})"
        worst = min(self.per_photo, key=lambda r: r["cosine"], default=None)
        if worst is not None and not self.ok:
            text += f"; worst: {worst['photo']}"
        return text


def compare_descriptors(
    got: Sequence[torch.Tensor], want: Sequence[torch.Tensor], names: Sequence[str], *,
    need_cosine: float = PARITY_MIN_COSINE, need_max_abs: float | None = PARITY_MAX_ABS, against: str = "the eager model",
) -> ParityReport:
    rows = []
    for a, b, name in zip(got, want, names):
        a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
        if a.shape != b.shape:
            raise ExportError(f"the export gives shape {tuple(a.shape)} for {name}, {against} {tuple(b.shape)}")
        rows.append({"photo": name, "cosine": float((a * b).sum(1).min()), "max_abs_diff": float((a - b).abs().max())})
    return ParityReport(
        list(names), min(r["cosine"] for r in rows), max(r["max_abs_diff"] for r in rows), rows,  # type: ignore[arg-type]
        need_cosine, need_max_abs, against,
    )


def check_parity(
    eager: nn.Module, exported: Callable[[torch.Tensor], torch.Tensor], batches: Sequence[torch.Tensor], names: Sequence[str]
) -> ParityReport:
    """The exported module against the eager one on the same uint8 batches."""
    with torch.no_grad():
        want = [eager(x) for x in batches]
        got = [exported(x) for x in batches]
    return compare_descriptors(got, want, names)


def zoo_embed_descriptors(embedder: ImageEmbedder, photos: Sequence[str | Path]) -> list[torch.Tensor]:
    """What ``zoo embed`` stores for each photo file (decode -> DataConfig resize -> normalise -> model), ``1 x D`` each."""
    from zoo.data.images import ImageRecord
    from zoo.inference.embed import Embedder, embed_records

    reference = Embedder(embedder.model, embedder.data_configs, device="cpu", amp="off", channels_last=False)
    records = [ImageRecord(str(i), Path(p)) for i, p in enumerate(photos)]
    ids, emb, skipped = embed_records(reference, records, batch_size=1, num_workers=0)
    if skipped:
        raise ExportError(f"parity photo {skipped[0].path} cannot be read: {skipped[0].error}; pass other --photos")
    return [torch.from_numpy(emb[i:i + 1]) for i in range(len(ids))]


def build_embedder(
    recipe: str | Path | None,
    *,
    checkpoint: str | Path | None = None,
    pretrained: bool = True,
    overrides: Iterable[str] = (),
    image_size: int | None = None,
    registry: Registry | None = None,
) -> ImageEmbedder:
    """The eager :class:`ImageEmbedder` of a recipe with its weights (checkpoint or run folder, else the
    manifest's default weights)."""
    model = create_model(
        recipe, pretrained=pretrained and checkpoint is None, checkpoint=checkpoint, overrides=overrides, registry=registry
    ).eval()
    return ImageEmbedder(model, with_input_size(model_data_configs(model), image_size)).eval()


def export_metadata(embedder: ImageEmbedder, recipe: str, dim: int) -> dict[str, Any]:
    """What an exported file says about itself (TorchScript extra file ``zoo.json``, ONNX metadata ``zoo``)."""
    import PIL

    from zoo import __version__

    checkpoint = getattr(embedder.model, "checkpoint", None)
    return {
        "recipe": recipe,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "input": "uint8 RGB B x 3 x H x W (any H, W)",
        "output": f"L2-normalised float32 B x {dim}",
        "embedding_dim": dim,
        "data_configs": [dc.to_dict() for dc in embedder.data_configs],
        "resampling": f"PIL {PIL.__version__} (pixel-exact, zoo.data.resample)",
        "zoo": __version__,
    }


def _to_torchscript(
    embedder: ImageEmbedder, example: torch.Tensor, tmp: Path, metadata: dict[str, Any] | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(embedder, example, check_trace=False)
        traced = torch.jit.freeze(traced.eval()) if hasattr(torch.jit, "freeze") else traced
    traced.save(str(tmp), _extra_files={"zoo.json": json.dumps(metadata or {})})
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


def _to_onnx(
    embedder: ImageEmbedder, example: torch.Tensor, tmp: Path, metadata: dict[str, Any] | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    import warnings

    try:
        import onnx
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
    proto = onnx.load(str(tmp))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata or {})
    onnx.save(proto, str(tmp))
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
    parity: ParityReport  # the written file against the eager module
    embed_parity: ParityReport | None = None  # the written file against ``zoo embed``
    data_configs: list[DataConfig] = field(default_factory=list)


def export_model(
    recipe: str | Path | None,
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
    """Export ``recipe`` to ``out`` in ``fmt``; raises :class:`ExportError` (and writes nothing) unless the
    export reproduces ``zoo embed`` and the written file the eager module on real photos."""
    from zoo.atomic import atomic_path

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}'; use one of {', '.join(FORMATS)}")
    embedder = build_embedder(
        recipe, checkpoint=checkpoint, pretrained=pretrained, overrides=overrides, image_size=image_size, registry=registry
    )
    name = str(getattr(embedder.model, "recipe", None) or recipe)  # a run folder's recipe, too
    photos = list(photos) if photos else default_photos()
    batches = photo_batches(photos)
    names = [Path(p).name for p in photos]
    with torch.no_grad():
        eager = [embedder(x) for x in batches]
    dim = int(eager[0].shape[1])
    if max_dim is None and name.startswith("guie"):
        max_dim = GUIE_MAX_DIM
    if max_dim is not None and dim > max_dim:
        raise ExportError(
            f"recipe '{name}' gives {dim}-d descriptors, more than the {max_dim} allowed "
            "(GUIE submissions: at most 64); set model.embedding_dim or use a neck"
        )
    reference = zoo_embed_descriptors(embedder, photos)
    embed_check = dict(need_cosine=EMBED_MIN_COSINE, need_max_abs=None, against="zoo embed")
    before = compare_descriptors(eager, reference, names, **embed_check)  # type: ignore[arg-type]
    if not before.ok:
        raise ExportError(
            f"the export module of '{name}' does not reproduce zoo embed on real photos ({before.summary()}); "
            f"nothing was written to {out}"
        )
    out = Path(out)
    metadata = export_metadata(embedder, name, dim)
    with atomic_path(out) as tmp:
        exported = (_to_torchscript if fmt == "torchscript" else _to_onnx)(embedder, batches[0], tmp, metadata)
        with torch.no_grad():
            got = [torch.as_tensor(exported(x)) for x in batches]
        parity = compare_descriptors(got, eager, names)
        if not parity.ok:
            raise ExportError(
                f"the {fmt} export of '{name}' does not match the eager model on real photos ({parity.summary()}); "
                f"nothing was written to {out}"
            )
        embed_parity = compare_descriptors(got, reference, names, **embed_check)  # type: ignore[arg-type]
        if not embed_parity.ok:
            raise ExportError(
                f"the {fmt} export of '{name}' does not reproduce zoo embed on real photos "
                f"({embed_parity.summary()}); nothing was written to {out}"
            )
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a shareable artifact, not a private temp file
    log.info("exported %s as %s to %s (%d-d); parity: %s; against zoo embed: %s", name, fmt, out, dim,
             parity.summary(), embed_parity.summary())
    return ExportResult(out, fmt, dim, embedder.image_size, parity, embed_parity, list(embedder.data_configs))


__all__ = [
    "EMBED_MIN_COSINE",
    "FORMATS",
    "GUIE_MAX_DIM",
    "ExportError",
    "ExportResult",
    "ImageEmbedder",
    "ParityReport",
    "build_embedder",
    "check_parity",
    "compare_descriptors",
    "default_photos",
    "export_model",
    "zoo_embed_descriptors",
]
