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


@pytest.fixture
def http_folder(tmp_path, photos):
    """A folder of real photos served by http.server on 127.0.0.1 (a thread of this process)."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "www"
    (folder / "query").mkdir(parents=True)
    for name in ("chelsea", "coffee", "rocket"):
        (folder / f"{name}.jpg").write_bytes(photos[name].read_bytes())
    cat = Image.open(photos["chelsea"])
    cat.resize((cat.width // 2, cat.height // 2)).save(folder / "query" / "cat_small.jpg", quality=70)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


def test_tag_and_similar_read_images_from_http_urls(http_folder, tmp_path):
    import json

    from typer.testing import CliRunner

    from autotag.cli import app
    from autotag.ingest import load_source

    base, folder = http_folder
    assert load_source(f"{base}/chelsea.jpg") == (folder / "chelsea.jpg").read_bytes()
    with pytest.raises(ImageError, match="^nothing at that URL"):
        load_source(f"{base}/missing.jpg")
    runner = CliRunner()
    tagged = runner.invoke(app, ["tag", f"{base}/chelsea.jpg", f"{base}/missing.jpg", "--format", "jsonl"])
    rows = [json.loads(line) for line in tagged.stdout.splitlines()]
    assert rows[0]["error"] is None and "cat" in {t["name"] for t in rows[0]["tags"]}
    assert rows[1]["error"] and "Traceback" not in tagged.output
    db = str(tmp_path / "lib.db")
    assert runner.invoke(app, ["index", str(folder / "chelsea.jpg"), str(folder / "coffee.jpg"),
                               str(folder / "rocket.jpg"), "--db", db]).exit_code == 0
    query = f"{base}/query/cat_small.jpg"
    similar = runner.invoke(app, ["similar", query, "--db", db, "-k", "1", "--format", "jsonl"])
    assert similar.exit_code == 0, similar.output
    assert json.loads(similar.stdout.splitlines()[0])["path"] == str(folder / "chelsea.jpg")


def _corrupt_tiff(samples_per_pixel: int = 9) -> bytes:
    """A TIFF whose SamplesPerPixel tag says more than any decoder handles."""
    import struct

    data = bytearray(_bytes(Image.new("RGB", (16, 16), "red"), "TIFF"))
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack("<H", data[entry : entry + 2])[0] == 277:
            data[entry + 8 : entry + 10] = struct.pack("<H", samples_per_pixel)
    return bytes(data)


def test_a_corrupt_tiff_gives_our_one_line_and_nothing_else_on_stderr(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.tif"
    bad.write_bytes(_corrupt_tiff())
    with pytest.raises(ImageError):
        decode_image(bad.read_bytes())
    run = subprocess.run([sys.executable, "-c", "from autotag.cli import main; main()", "tag", str(bad),
                          "--format", "jsonl"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert lines == [f"autotag: {bad}: not an image or an unsupported format", "autotag: 1 of 1 images failed"], lines
