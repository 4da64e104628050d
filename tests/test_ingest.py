"""Decoding every kind of image a user uploads, and finding files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from autotag.config import load_settings
from autotag.ingest import ImageError, decode_image, decode_with_info, discover
from autotag.types import AutotagError


def _bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = decode_image(_bytes(im, "JPEG", exif=exif))
    assert out.size == (20, 40)


def test_alpha_is_composited_on_white():
    im = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    out = decode_image(_bytes(im, "PNG"))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)


def test_cmyk_16bit_palette_and_gif_become_rgb():
    cmyk = decode_image(_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))
    assert cmyk.mode == "RGB" and cmyk.getpixel((4, 4))[0] > 200
    grey16 = Image.fromarray(np.full((8, 8), 40000, np.uint16))
    out = decode_image(_bytes(grey16, "PNG"))
    assert out.mode == "RGB" and 150 < out.getpixel((0, 0))[0] < 160  # 40000/256 = 156, not clipped to 255
    pal = decode_image(_bytes(Image.new("RGB", (8, 8), "blue").convert("P"), "PNG"))
    assert pal.getpixel((0, 0)) == (0, 0, 255)
    frames = [Image.new("RGB", (8, 8), c) for c in ("green", "red")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    first = decode_image(buf.getvalue())
    assert first.getpixel((0, 0))[1] > 100 and first.getpixel((0, 0))[0] < 50


def test_jpeg_draft_decodes_large_photos_small_but_reports_full_size():
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (2000, 3000, 3), np.uint8))
    im, info = decode_with_info(_bytes(big, "JPEG"), min_side=224)
    assert 224 <= min(im.size) < 1000
    assert (info["width"], info["height"], info["format"]) == (3000, 2000, "JPEG")


def test_pixel_limit_is_checked_before_decoding():
    with pytest.raises(ImageError, match="over the limit"):
        decode_image(_bytes(Image.new("1", (5000, 5000)), "PNG"), max_pixels=10_000_000)


def test_discover_recurses_skips_non_images_and_rejects_missing(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.jpg", "a/b/y.PNG", "a/readme.txt", "z.webp"):
        (tmp_path / name).write_bytes(b"")
    found = discover([str(tmp_path)])
    assert sorted(p.split("/")[-1] for p in found) == ["x.jpg", "y.PNG", "z.webp"]
    assert discover([str(tmp_path / "a" / "readme.txt")]) == [str(tmp_path / "a" / "readme.txt")]
    assert discover(["-"], stdin=iter([f"{tmp_path}/z.webp\n", "\n"])) == [f"{tmp_path}/z.webp"]
    with pytest.raises(AutotagError, match="no files match"):
        discover([str(tmp_path / "*.gif")])


def test_settings_precedence(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text("batch_size = 16\ntop_k = 3\n")
    monkeypatch.setenv("AUTOTAG_CONFIG", str(config))
    monkeypatch.setenv("AUTOTAG_TOP_K", "4")
    s = load_settings(workers=2)
    assert (s.batch_size, s.top_k, s.workers) == (16, 4, 2)
    config.write_text("batch_sise = 8\n")
    with pytest.raises(AutotagError, match="unknown keys"):
        load_settings()
