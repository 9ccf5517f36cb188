"""`zoo demo`: results table, HTML page (parsed; screenshot with headless Chromium when installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from zoo.cli import main
from zoo.inference.demo import bundled_photos, default_image_source, demo_records
from zoo.inference.html_report import QueryRow, write_report

TINY = ["-o", "model.backbone.name=mobilenetv2_035", "-o", "data.image_size=96", "--device", "cpu"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class PageParser(HTMLParser):
    """Collects what the assertions need: images, figure classes, queries, metric cells."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.figures: list[str] = []
        self.queries: list[str] = []
        self.cells: list[str] = []
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        elif tag == "figure":
            self.figures.append(a.get("class", ""))
        elif tag == "div" and "data-query" in a:
            self.queries.append(a["data-query"])
        self._in_td = tag in ("td", "th")

    def handle_data(self, data):
        if self._in_td and data.strip():
            self.cells.append(data.strip())

    def handle_endtag(self, tag):
        self._in_td = False


def parse(page: Path) -> PageParser:
    p = PageParser()
    p.feed(page.read_text())
    return p


def chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def screenshot(page: Path, tmp_path: Path) -> Path:
    exe = chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium): HTML checked by parsing only")
    shot = tmp_path / "shot.png"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'chrome'}",
           "--window-size=1200,900", f"--screenshot={shot}", page.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert shot.is_file(), "chromium wrote no screenshot"
    return shot


def test_report_escapes_and_marks(tmp_path, photo_paths):
    paths = {"<cat>.png": photo_paths["chelsea"], "coffee": photo_paths["coffee"], "rocket": photo_paths["rocket"]}
    rows = [QueryRow("<cat>.png", "a&b", [("coffee", 0.91, True), ("rocket", 0.5, False)])]
    page = write_report(tmp_path, rows, paths, title="t <x>", metrics={"mAP@100": 0.5}, progress=False)
    text = page.read_text()
    assert "<cat>" not in text and "&lt;cat&gt;.png" in text and "t &lt;x&gt;" in text
    p = parse(page)
    assert p.figures == ["q", "hit", "miss"]
    assert len(p.imgs) == 3 and all((tmp_path / src).is_file() for src in p.imgs)
    assert p.cells == ["mAP@100", "0.5000"]
    from PIL import Image

    for src in p.imgs:  # thumbnails, not copies of the full-size images
        with Image.open(tmp_path / src) as im:
            assert max(im.size) <= 128 and im.format == "JPEG"


@pytest.mark.slow
def test_page_screenshot(tmp_path, photo_paths):
    """Headless Chromium renders the page: thumbnails plus green (hit) and red (miss) borders."""
    paths = {k: photo_paths[k] for k in ("chelsea", "coffee", "rocket", "china")}
    rows = [QueryRow("chelsea", "cat", [("coffee", 0.9, True), ("rocket", 0.5, False), ("china", 0.4, False)])]
    page = write_report(tmp_path / "page", rows, paths, title="shot", metrics={"mAP@100": 1.0}, progress=False)
    shot = screenshot(page, tmp_path)
    from PIL import Image

    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        colours = dict((c, n) for n, c in rgb.getcolors(maxcolors=1 << 22))
    assert len(colours) > 1000  # photos rendered, not a blank page
    assert colours.get((34, 170, 34), 0) > 200 and colours.get((204, 34, 34), 0) > 200  # hit / miss borders


@pytest.mark.slow
def test_demo_on_bundled_photos(tmp_path, capsys):
    """Without ../shared: the bundled grocery photos give real metrics and correct/incorrect marks."""
    out = tmp_path / "demo"
    argv = ["demo", "--images", "bundled", "--out", str(out), "--workers", "0", "--no-progress", "-k", "4",
            "data.image_size=128", "--device", "cpu"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "bundled demo photos" in text and "124 images" in text
    metrics = dict(line.split() for line in text.splitlines() if line.startswith(("mAP@100 ", "R@1 ")))
    # real ImageNet weights on 31 products (chance: mAP ~0.03): well above chance
    assert float(metrics["mAP@100"]) > 0.3 and float(metrics["R@1"]) > 0.5
    p = parse(out / "index.html")
    n = len(bundled_photos()[1])
    assert n == 124 and len(p.queries) == n and len(p.figures) == n * 5
    assert {"q", "hit", "miss"} == set(p.figures)
    assert "mAP@100" in p.cells
    assert len(list((out / "thumbs").glob("*.jpg"))) == n
    # a second run reuses the embeddings folder (same settings)
    mtime = (out / "embeddings" / "shard-00000.safetensors").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "embeddings" / "shard-00000.safetensors").stat().st_mtime_ns == mtime


def test_demo_records_defaults():
    found = default_image_source()
    source, records = demo_records(None)
    if found is None:
        assert "bundled demo photos" in source and len(records) == 124
    else:
        assert source == str(found)
    assert all(r.label for r in records)


@pytest.mark.realdata
@pytest.mark.slow
def test_demo_instance_eval_metrics_and_page(tmp_path, instance_eval, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--images", str(instance_eval), "--no-pretrained", "--allow-random-weights", "--out", str(out), "--workers", "1",
                 "--no-progress", *TINY]) == 0
    text = capsys.readouterr().out
    for name in ("mAP@100", "R@1", "mP@5"):
        assert name in text
    p = parse(out / "index.html")
    assert len(p.queries) == 213
    assert {"hit", "miss"} <= set(p.figures)
    assert "mAP@100" in p.cells
    shot = screenshot(out / "index.html", tmp_path)
    from PIL import Image

    with Image.open(shot) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 1000  # thumbnails rendered, not a blank page
