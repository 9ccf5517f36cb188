"""``zoo weights export-mirror DIR``: a folder other machines use offline (``ZOO_WEIGHTS_MIRROR=DIR``).

The folder holds every file zoo loads (converted safetensors included, so the mirror needs neither
the upstream packages nor the converters), flat as ``DIR/NAME``, plus ``DIR/weights_manifest.yaml``
with the exported entries exactly as their manifests list them (``ZOO_WEIGHTS_MANIFEST`` can point
at it on a machine without the plugins that ship them). Each file is verified after it is copied.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from zoo.registry import Registry
from zoo.weights.catalog import get_weights, load_entries
from zoo.weights.integrity import check_file
from zoo.weights.resolve import fetch_entry
from zoo.weights.schema import SCHEMA_VERSION, WeightsEntry

log = logging.getLogger(__name__)

MIRROR_MANIFEST = "weights_manifest.yaml"


@dataclass
class MirrorReport:
    root: Path
    entries: list[str]
    files: list[Path]
    skipped: list[str]


def _raw_entry(entry: WeightsEntry) -> dict:
    """The entry's YAML exactly as its manifest lists it (so both manifests agree on every field)."""
    assert entry.manifest is not None
    data = yaml.safe_load(Path(entry.manifest).read_text())
    return data["weights"][entry.name]


def export_mirror(
    root: str | Path, names: Iterable[str] | None = None, *, registry: Registry | None = None
) -> MirrorReport:
    """Fetch (and convert) the verified entries ``names`` (default: all) into the mirror ``root``."""
    from tqdm.auto import tqdm

    from zoo.atomic import atomic_path, write_text

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    all_entries = load_entries(registry)
    wanted = [get_weights(n, registry) for n in names] if names else sorted(all_entries.values(), key=lambda e: e.name)
    skipped = [e.name for e in wanted if not e.verified]
    chosen = [e for e in wanted if e.verified]
    files: list[Path] = []
    for entry in tqdm(chosen, desc="export-mirror", unit="entry"):
        for wf, path in zip(entry.files, fetch_entry(entry, registry=registry)):
            dst = root / wf.name
            if not dst.is_file() or dst.stat().st_size != wf.size:
                with atomic_path(dst) as tmp:
                    shutil.copyfile(path, tmp)
            check_file(dst, wf.size, wf.sha256, f"mirror copy of weights '{entry.name}'")
            files.append(dst)
            log.info("mirrored %s -> %s", entry.name, dst)
    manifest_path = root / MIRROR_MANIFEST
    existing: dict = {}
    if manifest_path.is_file():
        existing = (yaml.safe_load(manifest_path.read_text()) or {}).get("weights") or {}
    existing.update({e.name: _raw_entry(e) for e in chosen})
    write_text(manifest_path, yaml.safe_dump({"schema_version": SCHEMA_VERSION, "weights": existing}, sort_keys=True))
    return MirrorReport(root, [e.name for e in chosen], files, skipped)
