"""A static HTML page of retrieval results: each query with its top-k thumbnails, scores and marks.

Thumbnails are small JPEGs (``thumb_side`` px long side) written next to the page under
``thumbs/``; the full-size images are never copied. Everything is written atomically and every
string put into the page is HTML-escaped.
"""

from __future__ import annotations

import hashlib
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from zoo import atomic
from zoo.data.images import ImageReadError, read_image

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table.metrics{border-collapse:collapse;margin-bottom:1.5em}
table.metrics td,table.metrics th{border:1px solid #bbb;padding:.3em .8em;text-align:right}
.query{display:flex;align-items:flex-start;gap:.6em;margin:.6em 0;padding:.4em;border-bottom:1px solid #eee}
figure{margin:0;text-align:center;font-size:11px;width:%(w)dpx}
figure img{max-width:%(w)dpx;max-height:%(w)dpx;border:4px solid #ccc;display:block;margin:auto}
figure.q img{border-color:#357}
figure.hit img{border-color:#2a2}
figure.miss img{border-color:#c22}
figcaption{word-break:break-all}
.mark{font-weight:bold}
.hit .mark{color:#2a2}
.miss .mark{color:#c22}
"""


@dataclass
class QueryRow:
    """One query of the page: its id and label, and its neighbours (id, score, correct or None)."""

    query_id: str
    query_label: str | None
    neighbours: Sequence[tuple[str, float, bool | None]]


def thumbnail(src: Path, out_dir: Path, side: int = 128) -> str | None:
    """Write a small JPEG of ``src`` into ``out_dir`` (once); returns its file name, None if unreadable."""
    from PIL import Image

    name = hashlib.sha1(str(src.resolve()).encode()).hexdigest()[:16] + ".jpg"
    dst = out_dir / name
    if dst.is_file():
        return name
    try:
        arr = read_image(src, max_side=side)
    except ImageReadError:
        return None
    img = Image.fromarray(arr)
    img.thumbnail((side, side), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    atomic.write_bytes(dst, buf.getvalue())
    return name


def _figure(thumb: str | None, caption: str, cls: str, mark: str = "") -> str:
    img = f'<img src="thumbs/{html.escape(thumb)}" alt="{html.escape(caption)}">' if thumb else "<div>(unreadable)</div>"
    m = f'<span class="mark">{mark}</span> ' if mark else ""
    return f'<figure class="{cls}">{img}<figcaption>{m}{html.escape(caption)}</figcaption></figure>'


def write_report(
    out_dir: str | Path,
    rows: Sequence[QueryRow],
    paths: Mapping[str, Path],
    *,
    title: str,
    metrics: Mapping[str, float] | None = None,
    notes: Sequence[str] = (),
    thumb_side: int = 128,
    progress: bool = True,
) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/thumbs/*.jpg``; returns the page path."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    thumbs_dir = out_dir / "thumbs"
    thumbs_dir.mkdir(parents=True, exist_ok=True)
    needed = sorted({r.query_id for r in rows} | {n[0] for r in rows for n in r.neighbours})
    thumbs = {i: thumbnail(paths[i], thumbs_dir, thumb_side) for i in tqdm(needed, desc="thumbnails", unit="img", disable=not progress) if i in paths}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS % {'w': thumb_side + 8}}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for note in notes:
        parts.append(f"<p>{html.escape(note)}</p>")
    if metrics:
        parts.append('<table class="metrics" id="metrics"><tr>')
        parts.extend(f"<th>{html.escape(k)}</th>" for k in metrics)
        parts.append("</tr><tr>")
        parts.extend(f"<td>{v:.4f}</td>" for v in metrics.values())
        parts.append("</tr></table>")
    for r in rows:
        label = f" [{r.query_label}]" if r.query_label is not None else ""
        parts.append(f'<div class="query" data-query="{html.escape(r.query_id)}">')
        parts.append(_figure(thumbs.get(r.query_id), f"query: {r.query_id}{label}", "q"))
        for rank, (nid, score, correct) in enumerate(r.neighbours, 1):
            cls, mark = ("hit", "\u2713") if correct else (("miss", "\u2717") if correct is False else ("", ""))
            parts.append(_figure(thumbs.get(nid), f"#{rank} {score:.3f} {nid}", cls or "n", mark))
        parts.append("</div>")
    parts.append("</body></html>")
    page = out_dir / "index.html"
    atomic.write_text(page, "\n".join(parts) + "\n")
    return page
