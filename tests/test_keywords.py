"""Keywords written into files, read back with exiftool as the independent reader."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from autotag.keywords import embed_keywords, read_keywords, sidecar_path, write_keywords
from autotag.types import AutotagError

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(
    EXIFTOOL is None, reason="exiftool missing (the independent reader): apt-get install libimage-exiftool-perl"
)


def exif(path: Path, *tags: str) -> dict:
    """What exiftool reads from the file, as a dict (lists stay lists)."""
    out = subprocess.run(
        [EXIFTOOL, "-json", "-struct", "-charset", "iptc=UTF8", "-validate", "-warning", *tags, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)[0]


def as_list(value) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture
def jpeg(photos, tmp_path) -> Path:
    path = tmp_path / "chelsea.jpg"
    shutil.copy(photos["chelsea"], path)
    return path


@needs_exiftool
def test_jpeg_keeps_old_keywords_and_other_metadata(jpeg):
    subprocess.run(
        [
            EXIFTOOL,
            "-q",
            "-overwrite_original",
            "-Keywords=old one",
            "-XMP-dc:Subject=old one",
            "-XMP-dc:Subject=xmp only",
            "-Artist=Ana",
            "-IPTC:Caption-Abstract=a cat on a mat",
            "-XMP-dc:Creator=Ana",
            "-XMP-iptcCore:Location=Paris",
            str(jpeg),
        ],
        check=True,
    )
    before = pixels(jpeg)
    assert write_keywords(jpeg, ["tabby cat", "Egyptian cat", "cat", "OLD ONE"]) == jpeg
    got = exif(
        jpeg,
        "-XMP-dc:Subject",
        "-IPTC:Keywords",
        "-EXIF:Artist",
        "-IPTC:Caption-Abstract",
        "-XMP-dc:Creator",
        "-XMP-iptcCore:Location",
        "-IPTC:CodedCharacterSet",
    )
    expected = ["old one", "xmp only", "tabby cat", "Egyptian cat", "cat"]
    assert as_list(got["Subject"]) == expected
    assert as_list(got["Keywords"]) == expected
    assert got["Artist"] == "Ana" and got["Caption-Abstract"] == "a cat on a mat"
    assert as_list(got["Creator"]) == ["Ana"] and got["Location"] == "Paris"
    assert b"<Iptc4xmpCore:Location>" in jpeg.read_bytes()  # the file's own prefixes survive
    assert got["Validate"] == "OK" and "Warning" not in got
    assert np.array_equal(pixels(jpeg), before)
    assert read_keywords(jpeg) == expected
    # Writing again adds nothing; replace keeps only the new ones (and UTF-8 survives both readers).
    write_keywords(jpeg, ["cat"])
    assert as_list(exif(jpeg, "-XMP-dc:Subject")["Subject"]) == expected
    write_keywords(jpeg, ["chat tigré", "cat"], replace=True)
    got = exif(jpeg, "-XMP-dc:Subject", "-IPTC:Keywords", "-EXIF:Artist")
    assert as_list(got["Subject"]) == as_list(got["Keywords"]) == ["chat tigré", "cat"]
    assert got["Artist"] == "Ana"
    assert np.array_equal(pixels(jpeg), before)


@needs_exiftool
def test_jpeg_without_metadata_and_exif_orientation_kept(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif_data = Image.Exif()
    exif_data[0x0112] = 6  # rotate 90 degrees when displayed
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(path, exif=exif_data, quality=95)
    raw_before = pixels(path)
    validate_before = exif(path)["Validate"]  # Pillow's minimal EXIF already draws warnings
    write_keywords(path, ["noise"])
    got = exif(path, "-XMP-dc:Subject", "-IPTC:Keywords", "-EXIF:Orientation#")
    assert as_list(got["Subject"]) == as_list(got["Keywords"]) == ["noise"]
    assert got["Orientation"] == 6 and got["Validate"] == validate_before
    assert np.array_equal(pixels(path), raw_before)


@needs_exiftool
def test_png_gets_xmp_and_keeps_its_text_chunks(photos, tmp_path):
    path = tmp_path / "coffee.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "morning coffee")
    with Image.open(photos["coffee"]) as image:
        image.save(path, pnginfo=info)
    before = pixels(path)
    write_keywords(path, ["espresso", "cup"])
    write_keywords(path, ["cup", "coffee mug"])
    got = exif(path, "-XMP-dc:Subject", "-PNG:Comment")
    assert as_list(got["Subject"]) == ["espresso", "cup", "coffee mug"]
    assert got["Comment"] == "morning coffee" and got["Validate"] == "OK"
    assert np.array_equal(pixels(path), before)
    with Image.open(path) as image:
        assert image.text["Comment"] == "morning coffee"


@needs_exiftool
def test_other_formats_and_sidecar_option_write_an_xmp_file(jpeg, tmp_path):
    webp = tmp_path / "chelsea.webp"
    with Image.open(jpeg) as image:
        image.save(webp)
    webp_bytes, jpeg_bytes = webp.read_bytes(), jpeg.read_bytes()
    assert write_keywords(webp, ["cat"]) == sidecar_path(webp) == tmp_path / "chelsea.webp.xmp"
    assert write_keywords(jpeg, ["cat", "pet"], sidecar=True) == tmp_path / "chelsea.jpg.xmp"
    write_keywords(jpeg, ["whiskers"], sidecar=True)
    assert webp.read_bytes() == webp_bytes and jpeg.read_bytes() == jpeg_bytes  # images untouched
    assert as_list(exif(sidecar_path(webp), "-XMP-dc:Subject")["Subject"]) == ["cat"]
    assert as_list(exif(sidecar_path(jpeg), "-XMP-dc:Subject")["Subject"]) == ["cat", "pet", "whiskers"]
    assert read_keywords(jpeg) == ["cat", "pet", "whiskers"]  # the file has none, so its sidecar counts


def test_damaged_files_are_refused_and_left_untouched(jpeg, tmp_path):
    cut = tmp_path / "cut.jpg"
    data = jpeg.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # headers intact, image data truncated: does not decode
    with pytest.raises(AutotagError, match="does not decode"):
        write_keywords(cut, ["cat"])
    assert cut.read_bytes() == data[: len(data) // 2]
    header_only = tmp_path / "header.jpg"
    header_only.write_bytes(data[:300])
    with pytest.raises(AutotagError, match="damaged JPEG"):
        write_keywords(header_only, ["cat"])
    assert header_only.read_bytes() == data[:300]
    with pytest.raises(AutotagError, match="no such file"):
        write_keywords(tmp_path / "missing.jpg", ["cat"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chelsea.jpg", "cut.jpg", "header.jpg"]  # no temp files


def test_broken_existing_xmp_is_an_error_not_a_rewrite(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (8, 8), "red").save(path)
    sidecar = sidecar_path(path)
    sidecar.write_text("<x:xmpmeta this is not xml")
    with pytest.raises(AutotagError, match="not valid XML"):
        write_keywords(path, ["red"], sidecar=True)
    assert sidecar.read_text() == "<x:xmpmeta this is not xml"


@needs_exiftool
def test_cli_tag_write_xmp_puts_the_predicted_tags_in_the_file(photos, tmp_path):
    from typer.testing import CliRunner

    from autotag.cli import app

    path = tmp_path / "chelsea.jpg"
    shutil.copy(photos["chelsea"], path)
    before = pixels(path)
    result = CliRunner().invoke(app, ["tag", str(path), "--write-xmp", "--format", "json"])
    assert result.exit_code == 0, result.output
    names = [t["name"] for t in json.loads(result.stdout)[0]["tags"]]
    assert names and as_list(exif(path, "-XMP-dc:Subject")["Subject"]) == names
    assert np.array_equal(pixels(path), before)
    result = CliRunner().invoke(app, ["tag", str(path), "--sidecar", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert as_list(exif(sidecar_path(path), "-XMP-dc:Subject")["Subject"]) == names


@needs_exiftool
def test_embed_keywords_in_memory_for_uploads(photos, tmp_path):
    data = photos["rocket"].read_bytes()
    tagged = embed_keywords(data, ["rocket", "launch"])
    out = tmp_path / "tagged.jpg"
    out.write_bytes(tagged)
    got = exif(out, "-XMP-dc:Subject", "-IPTC:Keywords")
    assert as_list(got["Subject"]) == as_list(got["Keywords"]) == ["rocket", "launch"]
    assert np.array_equal(pixels(out), pixels(photos["rocket"]))
    with pytest.raises(AutotagError, match="only JPEG and PNG"):
        embed_keywords(b"GIF89a" + bytes(20), ["x"])
