"""The demo job: a recipe (the embedded ``default``) embeds real photos, searches them, reports
metrics and writes an HTML page of every query with its top-k thumbnails.

Default photos: ``../shared/data/instance-eval`` (looked up next to the current folder, then next
to the repository), with labels from its ``labels.csv`` (``path,instance,...``): every image queries
all the others, positives share the instance -> mAP@100, mAP (full ranking), R@1, mP@5. Without it,
the photos bundled with the package (``zoo/demo_photos``: 4 photos of each of 31 retail products
from the MIT-licensed grocery-store data set, found with :mod:`importlib.resources`, so an installed
wheel has them too), which give the same metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zoo.data.images import ImageRecord, list_images
from zoo.registry import ZooError

log = logging.getLogger(__name__)

INSTANCE_EVAL = Path("shared") / "data" / "instance-eval"
#: ``--images bundled``: the photos shipped inside the package (``zoo/demo_photos``)
BUNDLED = "bundled"
#: the package-data folder of the bundled photos (``labels.csv``, ``images/``, ``LICENSE``, ``README.md``)
BUNDLED_FOLDER = "demo_photos"
#: galleries up to this size are ranked completely (full-ranking mAP); larger ones to depth 100
FULL_RANKING_MAX = 20_000


class DemoError(ZooError):
    """The demo cannot find photos or cannot run its recipe."""


@dataclass
class DemoResult:
    """What the demo computed."""

    source: str
    ids: list[str]
    labels: list[str | None]
    scores: np.ndarray  # Q x k, self removed
    rows: np.ndarray  # Q x k, rows into ids
    metrics: dict[str, float] = field(default_factory=dict)
    page: Path | None = None
    skipped: list[Any] = field(default_factory=list)


def default_image_source() -> Path | None:
    """``../shared/data/instance-eval`` relative to the current folder, then to the repository."""
    import zoo

    repo = Path(zoo.__file__).resolve().parents[1]
    for base in (Path.cwd().parent, repo.parent):
        cand = base / INSTANCE_EVAL
        if (cand / "labels.csv").is_file():
            return cand
    return None


def bundled_photos() -> tuple[str, list[ImageRecord]]:
    """``(description, records)`` of the photos bundled with the package (labels: the product)."""
    from importlib import resources

    root = resources.files("zoo") / BUNDLED_FOLDER
    if not root.joinpath("labels.csv").is_file():
        raise DemoError(
            f"the demo photos are missing from this installation of zoo ({root}); reinstall instance-zoo, "
            "or pass --images DIR (a folder, or a CSV with path and label columns)"
        )
    folder = Path(str(root)) if isinstance(root, Path) else _extracted(root)
    records = list_images(folder / "labels.csv", folder)
    return (f"the bundled demo photos ({len(records)} photos of {len({r.label for r in records})} retail products "
            f"from the grocery-store data set, MIT; {folder})"), records


def _extracted(root: Any) -> Path:
    """Copy a bundle that is not a plain folder (a zipped install) into the cache once."""
    from zoo import atomic
    from zoo.weights.env import cache_dir

    folder = cache_dir() / BUNDLED_FOLDER
    if not (folder / ".complete").is_file():
        stack = [(root, folder)]
        while stack:
            src, dst = stack.pop()
            for item in src.iterdir():
                if item.is_dir():
                    stack.append((item, dst / item.name))
                else:
                    atomic.write_bytes(dst / item.name, item.read_bytes())
        atomic.write_text(folder / ".complete", "")
    return folder


def demo_records(images: str | Path | None) -> tuple[str, list[ImageRecord]]:
    """``(description, records)`` for ``--images``: a folder, a CSV, a folder with ``labels.csv``,
    ``bundled``; None: ../shared/data/instance-eval when present, else the bundled photos."""
    if images == BUNDLED and not Path(images).exists():
        return bundled_photos()
    if images is None:
        found = default_image_source()
        if found is None:
            return bundled_photos()
        images = found
    src = Path(images)
    if src.is_dir() and (src / "labels.csv").is_file():
        return str(src), list_images(src / "labels.csv", src)
    return str(src), list_images(src)


def has_positives(labels: Sequence[str | None]) -> bool:
    from collections import Counter

    counts = Counter(label for label in labels if label is not None)
    return any(c > 1 for c in counts.values())


def _embed_reusing(model, records, folder: Path, options, meta) -> Any:
    """Embed into ``folder``, reusing it when it was written with the same settings."""
    from zoo.inference.embed import embed_to_folder
    from zoo.inference.shards import EmbeddingStoreError

    try:
        return embed_to_folder(model, records, folder, options=options, meta=meta)
    except EmbeddingStoreError as exc:
        log.info("re-embedding: %s", exc)
        return embed_to_folder(model, records, folder, options=options, meta=meta, overwrite=True)


def run_demo(
    model: Any,
    records: Sequence[ImageRecord],
    out: str | Path,
    *,
    source: str,
    k: int = 5,
    options: Any = None,
    meta: dict[str, Any] | None = None,
    max_html_queries: int = 500,
    registry: Any = None,
) -> DemoResult:
    """Embed ``records`` into ``out/embeddings``, search every image against all the others, compute
    retrieval metrics when labels have positives, and write ``out/index.html``."""
    from zoo.inference.html_report import QueryRow, write_report
    from zoo.inference.index import IndexSpec, build_index, search
    from zoo.inference.search import drop_self
    from zoo.inference.retrieval import METRIC_DEPTH, retrieval_metrics
    from zoo.inference.shards import EmbeddingStore

    out = Path(out)
    report = _embed_reusing(model, records, out / "embeddings", options, meta or {})
    ids, emb = EmbeddingStore(out / "embeddings").load()
    if len(ids) < 2:
        raise DemoError(f"{source}: only {len(ids)} readable images; the demo needs at least 2")
    by_id = {r.id: r for r in records}
    labels = [by_id[i].label for i in ids]
    index, _ = build_index([emb], IndexSpec("flat"), len(ids), emb.shape[1], progress=False)
    # small sets: rank the whole gallery so the full-ranking mAP (the instance-eval protocol) is exact
    depth = len(ids) - 1 if len(ids) <= FULL_RANKING_MAX else min(len(ids) - 1, max(k, METRIC_DEPTH))
    scores, rows = search(index, emb, depth + 1)
    scores, rows = drop_self(scores, rows, np.arange(len(ids)), depth)  # query q is row q
    metrics: dict[str, float] = {}
    if has_positives(labels):
        metrics = retrieval_metrics(ids, labels, ids, labels, rows, exclude_self=True, registry=registry)
    labelled = bool(metrics)
    html_rows = []
    for q in range(min(len(ids), max_html_queries)):
        neigh = []
        for r, s in zip(rows[q, :k], scores[q, :k]):
            if r < 0:
                continue
            correct = (labels[r] == labels[q]) if labelled else None
            neigh.append((ids[r], float(s), correct))
        html_rows.append(QueryRow(ids[q], labels[q] if labelled else None, neigh))
    notes = [f"Images: {source} ({len(ids)} embedded, {len(report.skipped)} unreadable).",
             f"Recipe: {(meta or {}).get('recipe', '?')}; every image queries all the others (itself excluded)."]
    if labelled:
        notes.append("Green: same instance as the query; red: another instance.")
    if len(ids) > max_html_queries:
        notes.append(f"Showing the first {max_html_queries} of {len(ids)} queries.")
    page = write_report(out, html_rows, {i: by_id[i].path for i in ids},
                        title=f"zoo demo: {(meta or {}).get('recipe', '?')}", metrics=metrics, notes=notes,
                        progress=bool(options is None or options.progress))
    return DemoResult(source, ids, labels, scores[:, :k], rows[:, :k], metrics, page, list(report.skipped))
