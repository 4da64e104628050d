"""Colours and picture facts read from the decoded picture (autotag.read)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image, ImageColor

from autotag.demo import bundled_photo
from autotag.read import COLOR_NAMES, Color, dominant_colors, picture_properties
from autotag.read.colors import PALETTE, name_pixels


def flat(color: str | tuple[int, int, int], size: tuple[int, int] = (320, 200)) -> Image.Image:
    return Image.new("RGB", size, ImageColor.getrgb(color) if isinstance(color, str) else color)


def names(colors: list[Color]) -> list[str]:
    return [c.name for c in colors]


def test_flat_red_is_red_with_its_hex():
    colors = dominant_colors(flat("red"))
    assert colors == [Color("red", 1.0, "#ff0000")]
    assert colors[0].to_dict() == {"name": "red", "share": 1.0, "hex": "#ff0000"}


@pytest.mark.parametrize(
    "css, expected",
    [
        ("crimson", "red"), ("darkred", "red"), ("darkorange", "orange"), ("gold", "yellow"),
        ("forestgreen", "green"), ("lime", "green"), ("teal", "teal"), ("turquoise", "teal"),
        ("navy", "blue"), ("skyblue", "blue"), ("royalblue", "blue"), ("indigo", "purple"),
        ("purple", "purple"), ("hotpink", "pink"), ("lightpink", "pink"), ("saddlebrown", "brown"),
        ("sienna", "brown"), ("wheat", "beige"), ("tan", "beige"), ("white", "white"),
        ("silver", "grey"), ("dimgray", "grey"), ("black", "black"), ("#202020", "black"),
    ],
)  # fmt: skip
def test_named_css_colours_get_the_palette_name_a_person_gives(css, expected):
    assert PALETTE[int(name_pixels(np.array([ImageColor.getrgb(css)], np.uint8))[0])] == expected


def test_shares_follow_the_picture_and_sum_to_at_most_one():
    im = flat("blue", (400, 100))
    im.paste(flat("yellow", (100, 100)), (0, 0))  # a quarter yellow
    colors = dominant_colors(im)
    assert names(colors) == ["blue", "yellow"]
    assert colors[0].share == pytest.approx(0.75, abs=0.03) and colors[1].share == pytest.approx(0.25, abs=0.03)
    assert all(set(c.hex[1:]) <= set("0123456789abcdef") and len(c.hex) == 7 for c in colors)


def test_small_specks_and_near_neutral_noise_are_ignored():
    rng = np.random.default_rng(0)
    grey = rng.normal(128, 6, size=(200, 300, 3)).clip(0, 255).astype(np.uint8)  # sensor noise on grey
    grey[:4, :4] = (255, 0, 0)  # a red speck
    assert names(dominant_colors(Image.fromarray(grey))) == ["grey"]


def test_a_greyscale_photo_is_black_and_white():
    colors = dominant_colors(bundled_photo("astronaut").convert("L").convert("RGB"))
    assert colors[0].name == "black and white" and colors[0].share == 1.0
    assert set(names(colors[1:])) <= {"white", "grey", "black"}
    assert dominant_colors(bundled_photo("camera"))[0].name == "black and white"
    white_object = flat("white", (200, 200))
    white_object.paste(flat((205, 196, 182), (100, 100)), (50, 50))  # warm light grey: a photographed object
    white_object.paste(flat((40, 40, 42), (20, 20)), (90, 90))
    assert "black and white" not in names(dominant_colors(white_object))


def test_flat_neutrals_and_colour_photos_are_not_black_and_white():
    assert names(dominant_colors(flat("grey"))) == ["grey"]
    assert names(dominant_colors(flat("white"))) == ["white"]
    for photo in ("chelsea", "coffee", "astronaut", "china"):
        assert "black and white" not in names(dominant_colors(bundled_photo(photo)))


@pytest.mark.parametrize(
    "photo, expected",
    [
        ("coffee", "brown"), ("chelsea", "brown"), ("astronaut", "red"), ("china", "blue"),
        ("hubble_deep_field", "black"),
    ],
)  # fmt: skip
def test_colours_of_real_photos_make_sense(photo, expected):
    colors = dominant_colors(bundled_photo(photo))
    assert expected in names(colors)
    assert set(names(colors)) <= set(COLOR_NAMES)
    salience = [c.share * (0.5 if c.name in ("grey", "black") else 1.0) for c in colors]
    assert salience == sorted(salience, reverse=True)  # colours before shadows and grey backgrounds


def test_a_colour_comes_before_a_larger_grey_background():
    im = flat("grey", (300, 100))
    im.paste(flat("orange", (120, 100)), (0, 0))  # 40% orange on 60% grey
    assert names(dominant_colors(im)) == ["orange", "grey"]
    assert dominant_colors(im)[1].share == pytest.approx(0.6, abs=0.03)


def test_colours_take_a_few_milliseconds_at_512_px():
    im = bundled_photo("coffee")
    im.thumbnail((512, 512))
    dominant_colors(im)
    times = []
    for _ in range(15):
        start = time.thread_time()  # CPU time: a busy shared machine stretches wall time, not this
        dominant_colors(im)
        times.append(time.thread_time() - start)
    assert np.median(times) < 0.01  # ~2.5 ms


@pytest.mark.parametrize(
    "size, orientation, shape, ratio, resolution",
    [
        ((1920, 1080), "landscape", "landscape", "16:9", "Full HD"),
        ((1366, 768), "landscape", "landscape", "16:9", "HD"),
        ((1280, 800), "landscape", "landscape", "16:10", "HD"),
        ((1080, 2400), "portrait", "portrait", "9:20", "Full HD"),
        ((2160, 3840), "portrait", "portrait", "9:16", "4K"),
        ((3440, 1440), "landscape", "ultrawide", "21:9", "Full HD"),
        ((5120, 1440), "landscape", "panorama", "32:9", "Full HD"),
        ((1000, 1000), "square", "square", "1:1", "small"),
        ((1000, 1015), "square", "square", "1:1", "small"),
        ((3840, 2160), "landscape", "landscape", "16:9", "4K"),
        ((5120, 2880), "landscape", "landscape", "16:9", "5K+"),
        ((6000, 4000), "landscape", "landscape", "3:2", "5K+"),
        ((1279, 720), "landscape", "landscape", "16:9", "small"),
        ((1000, 700), "landscape", "landscape", "10:7", "small"),
    ],
)
def test_orientation_shape_ratio_and_resolution_are_exact(size, orientation, shape, ratio, resolution):
    props = picture_properties(*size)
    assert (props.orientation, props.shape, props.aspect_ratio, props.resolution) == (
        orientation, shape, ratio, resolution
    )  # fmt: skip
    assert props.to_dict()["width"] == size[0] and "tone" not in props.to_dict()


def test_the_decoded_image_gives_tone_and_undoes_an_exif_quarter_turn():
    turned = picture_properties(4000, 3000, flat("white", (300, 400)))  # file says landscape, EXIF turned it
    assert (turned.width, turned.height, turned.orientation, turned.tone) == (3000, 4000, "portrait", "bright")
    assert picture_properties(1000, 872, bundled_photo("hubble_deep_field")).tone == "dark"
    assert picture_properties(600, 400, bundled_photo("coffee")).tone == "normal"
    with pytest.raises(ValueError):
        picture_properties(0, 10)
