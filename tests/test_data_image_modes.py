"""16-bit, float and palette images are scaled faithfully to 8-bit RGB, or skipped and reported.

Regression test of issue 11.6: an ``I;16`` PNG was embedded as near-white (mean pixel 254.9, cos 0.30
to its 8-bit copy), silently. Each case converts a real photo to the mode exactly (8-bit values
stored as 16 bits are ``x * 257``, as float ``x / 255``; a palette photo is compared with its own
RGB colours), decodes it with :func:`zoo.data.images.read_image` (pixel-exact) and embeds it with
``zoo embed`` next to the 8-bit original (cosine >= 0.999). Images without a known white level are
skipped and listed by ``zoo embed``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.cli import main
from zoo.data.images import ImageReadError, read_image, to_rgb8
from zoo.inference.shards import EmbeddingStore


@pytest.fixture(scope="module")
def photo(photo_paths) -> np.ndarray:
    """A real photo (scikit-image's coffee), RGB uint8, cropped to 160 x 120."""
    return np.asarray(Image.open(photo_paths["coffee"]).convert("RGB"))[::4, ::4][:120, :160].copy()


def grey(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


def write_pgm16(path: Path, g: np.ndarray) -> None:
    h, w = g.shape
    path.write_bytes(f"P5\n{w} {h}\n65535\n".encode() + (g.astype(">u2") * 257).tobytes())


def make_cases(folder: Path, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Write the photo in every mode; returns ``file name -> the 8-bit RGB it must decode to``."""
    import cv2

    g = grey(rgb)
    g_rgb = np.repeat(g[:, :, None], 3, axis=2)
    cases: dict[str, np.ndarray] = {}
    Image.fromarray(rgb).save(folder / "original.png")
    cases["original.png"] = rgb
    Image.fromarray(g).save(folder / "grey8.png")
    cases["grey8.png"] = g_rgb
    Image.fromarray(g.astype(np.uint16) * 257).save(folder / "grey16.png")  # mode I;16
    cases["grey16.png"] = g_rgb
    Image.frombytes("I;16B", g.shape[::-1], (g.astype(">u2") * 257).tobytes()).save(folder / "grey16b.tif")
    cases["grey16b.tif"] = g_rgb
    Image.fromarray(g.astype(np.uint16) * 257).save(folder / "grey16.tif")
    cases["grey16.tif"] = g_rgb
    write_pgm16(folder / "grey16.pgm", g)  # Pillow mode I (16-bit samples scaled to 0..65535)
    cases["grey16.pgm"] = g_rgb
    Image.fromarray((g / 255.0).astype(np.float32)).save(folder / "float01.tif")  # mode F
    cases["float01.tif"] = g_rgb
    cv2.imwrite(str(folder / "rgb48.png"), (rgb.astype(np.uint16) * 257)[:, :, ::-1])  # 16 bits per channel
    cases["rgb48.png"] = rgb
    pal = Image.fromarray(rgb).quantize(256)
    pal.save(folder / "palette.png")  # mode P: its own colours are the 8-bit original
    pal_rgb = np.asarray(pal.convert("RGB"))
    cases["palette.png"] = pal_rgb
    trns = pal.copy()
    trns.info["transparency"] = int(np.asarray(pal)[0, 0])  # one palette index transparent (tRNS)
    trns.save(folder / "palette_trns.png", transparency=int(np.asarray(pal)[0, 0]))
    idx = np.asarray(pal)
    expect = pal_rgb.copy()
    expect[idx == idx[0, 0]] = 255
    cases["palette_trns.png"] = expect
    return cases


def test_every_mode_decodes_to_the_8bit_pixels(tmp_path, photo):
    cases = make_cases(tmp_path, photo)
    modes = {}
    for name, expect in cases.items():
        with Image.open(tmp_path / name) as im:
            modes[name] = im.mode
        got = read_image(tmp_path / name)
        assert got.dtype == np.uint8 and got.shape == expect.shape, name
        np.testing.assert_array_equal(got, expect, err_msg=f"{name} (mode {modes[name]})")
    # the files really are in the modes the issue names
    assert modes["grey16.png"] == "I;16" and modes["grey16b.tif"] == "I;16B" and modes["grey16.pgm"] == "I"
    assert modes["float01.tif"] == "F" and modes["palette.png"] == "P" and modes["palette_trns.png"] == "P"


def test_palette_with_alpha_is_composited_on_white(photo):
    """``PA`` (no file format writes it; Pillow makes it in memory) and ``LA``: transparent -> white."""
    pal = Image.fromarray(photo).quantize(256)
    alpha = np.full(photo.shape[:2], 255, np.uint8)
    alpha[:, :40] = 0
    pa = pal.convert("PA")
    pa.putalpha(Image.fromarray(alpha))
    expect = np.asarray(pal.convert("RGB")).copy()
    expect[:, :40] = 255
    assert pa.mode == "PA"
    np.testing.assert_array_equal(to_rgb8(pa), expect)
    la = Image.fromarray(grey(photo)).convert("LA")
    la.putalpha(Image.fromarray(alpha))
    expect = np.repeat(grey(photo)[:, :, None], 3, axis=2).copy()
    expect[:, :40] = 255
    np.testing.assert_array_equal(to_rgb8(la), expect)


def test_images_without_a_white_level_are_refused(tmp_path, photo):
    g = grey(photo).astype(np.int32)
    Image.fromarray(g * 70000).save(tmp_path / "int32.tif")  # 32-bit integers: no white level
    Image.fromarray(g.astype(np.float32)).save(tmp_path / "float255.tif")  # float 0..255: ambiguous
    nan = (g / 255.0).astype(np.float32)
    nan[0, 0] = np.nan
    Image.fromarray(nan).save(tmp_path / "float_nan.tif")
    for name, words in (("int32.tif", "no known white level"), ("float255.tif", "0..1"),
                        ("float_nan.tif", "NaN")):
        with pytest.raises(ImageReadError, match=words) as err:
            read_image(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_zoo_embed_gives_the_8bit_descriptor_for_every_mode(tmp_path, photo, capsys):
    """Real ImageNet weights (the default recipe, small input): cos >= 0.999 to the 8-bit original;
    an image without a white level is skipped and listed, never embedded."""
    folder = tmp_path / "modes"
    folder.mkdir()
    cases = make_cases(folder, photo)
    Image.fromarray(grey(photo).astype(np.float32)).save(folder / "float255.tif")
    out = tmp_path / "emb"
    assert main(["embed", "default", "--images", str(folder), "--out", str(out), "data.image_size=128",
                 "--device", "cpu", "--workers", "0", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "skipped 1 unreadable" in text and "float255.tif" in text
    ids, emb = EmbeddingStore(out).load()
    vec = dict(zip(ids, emb))
    assert "float255.tif" not in vec and set(vec) == set(cases)
    reference = {"grey": vec["grey8.png"], "rgb": vec["original.png"]}
    for name in cases:
        ref = reference["rgb"] if name in ("rgb48.png",) else reference["grey"] if "16" in name or "float" in name else None
        if ref is not None:
            assert float(vec[name] @ ref) >= 0.999, name
    # the palette images against their own colours, embedded as plain RGB
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    for name in ("palette.png", "palette_trns.png"):
        Image.fromarray(cases[name]).save(rgb / f"{name}.rgb.png")
    out2 = tmp_path / "emb2"
    assert main(["embed", "default", "--images", str(rgb), "--out", str(out2), "data.image_size=128",
                 "--device", "cpu", "--workers", "0", "--no-progress"]) == 0
    ids2, emb2 = EmbeddingStore(out2).load()
    for i, e in zip(ids2, emb2):
        assert float(e @ vec[i.removesuffix(".rgb.png")]) >= 0.999, i
