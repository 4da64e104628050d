"""Photo or art (autotag.read.style): the shipped heads on the real default encoder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from autotag.demo import bundled_photo
from autotag.read import ART_STYLES, Style, StyleHead, keep_content_tags, picture_styles
from autotag.read.style import (
    HEAD_PATH,
    KINDS,
    PATCH_STATS,
    TEXTURE_STATS,
    LinearHead,
    centre_patch,
    patch_statistics,
    texture_statistics,
)
from autotag.types import AutotagError, Tag


def gradient(size=(640, 400), left=(250, 120, 30), right=(90, 40, 160)) -> Image.Image:
    t = np.linspace(0, 1, size[0])[None, :, None]
    row = np.array(left) * (1 - t) + np.array(right) * t
    return Image.fromarray(np.repeat(row, size[1], axis=0).astype(np.uint8))


def stripes(size=(600, 400), period=40) -> Image.Image:
    x = np.arange(size[0])[None, :]
    mask = np.repeat((x // (period // 2)) % 2 == 0, size[1], axis=0)
    return Image.fromarray(np.where(mask[..., None], [20, 110, 200], [240, 230, 210]).astype(np.uint8))


def kept(im: Image.Image, side: int = 512) -> Image.Image:
    """The picture as the pipeline keeps it for readers: long side at most 512."""
    if max(im.size) <= side:
        return im
    scale = side / max(im.size)
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.BILINEAR, reducing_gap=2.0)


@pytest.fixture(scope="module")
def styles_of(encoder):
    def run(images: list[Image.Image]) -> list[Style]:
        patches = [centre_patch(im) for im in images]  # the pipeline cuts them before the downscale
        return picture_styles(encoder.encode(images)[1], [kept(im) for im in images], patches)

    return run


def test_a_generated_gradient_and_stripes_are_art(styles_of):
    grad, stripe = styles_of([gradient(), stripes()])
    assert grad.kind == "art" and grad.style in ART_STYLES and grad.score > 0.5
    assert stripe.kind == "art" and stripe.style in ("pattern", "abstract")


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "motorcycle", "china"])
def test_real_photos_are_photos(styles_of, name):
    (style,) = styles_of([bundled_photo(name)])
    assert (style.kind, style.style) == ("photo", "photo") and style.score > 0.5
    assert style.to_dict() == {"kind": "photo", "style": "photo", "score": round(style.score, 4),
                               "style_score": round(style.score, 4)}  # fmt: skip


def test_the_shipped_head_records_what_it_was_trained_on():
    head = StyleHead.load()
    assert head.encoder == "efficientnet_lite0" and head.kind.dim - head.kind.extra == head.style.dim == 1280
    assert head.kind.extra == len(head.meta.get("texture", [])) and head.reads_texture == bool(head.kind.extra)
    assert len(head.meta["data_fingerprint"]) == 64 and head.art_threshold == head.meta["art_threshold"]
    assert head.meta["data"]["pictures"] > 500 and set(head.meta["data"]["by_label"]) == {"photo", *ART_STYLES}
    assert HEAD_PATH.stat().st_size < 200_000  # small enough to ship in the package


def test_head_round_trips_and_refuses_wrong_input(tmp_path):
    rng = np.random.default_rng(0)

    def head(classes):
        n = len(classes)
        return LinearHead(classes, rng.random(8), np.ones(8), rng.normal(size=(n, 8)), np.zeros(n))

    made = StyleHead(head(KINDS), head(ART_STYLES), {"data_fingerprint": "x"}, art_threshold=0.7)
    made.save(tmp_path / "h.npz")
    loaded = StyleHead.load(tmp_path / "h.npz")
    x = rng.random((3, 8))
    assert loaded.predict(x) == made.predict(x) and loaded.meta == {"data_fingerprint": "x"}
    assert loaded.art_threshold == 0.7
    p_art = made.kind.predict_proba(x)[:, 1]
    assert [s.kind for s in loaded.predict(x)] == ["art" if p > 0.7 else "photo" for p in p_art]
    with pytest.raises(AutotagError, match="threshold"):
        StyleHead(head(KINDS), head(ART_STYLES), art_threshold=1.0)
    with pytest.raises(AutotagError, match=r"\(N, 8\)"):
        loaded.predict(rng.random((3, 9)))
    with pytest.raises(AutotagError, match="missing"):
        StyleHead.load(tmp_path / "absent.npz")
    with pytest.raises(AutotagError, match="classes"):
        StyleHead(head(("photo", "painting")), head(ART_STYLES))


def test_art_keeps_only_the_content_tags_that_make_sense():
    tags = [Tag("jellyfish", 0.3), Tag("cat", 0.8)]
    assert keep_content_tags(Style("photo", "photo", 0.9, 0.9), tags) == tags
    assert keep_content_tags(Style("art", "abstract", 0.9, 0.7), tags) == []
    assert keep_content_tags(Style("art", "pattern", 0.9, 0.7), tags) == []
    assert keep_content_tags(Style("art", "illustration", 0.9, 0.7), tags) == [Tag("cat", 0.8)]
    assert keep_content_tags(Style("art", "3d render", 0.9, 0.7), [("cat", 0.6)], score_of=lambda t: t[1]) == [
        ("cat", 0.6)
    ]


def test_texture_statistics_tell_flat_fills_from_sensor_noise():
    flat = texture_statistics(stripes())
    assert flat.shape == (len(TEXTURE_STATS),) and flat[0] > 0.9 and flat[2] > 0.99  # flat fills, 2 colours
    photo = texture_statistics(kept(bundled_photo("chelsea")))
    assert photo[0] < 0.5 < flat[0] and photo[1] > flat[1] and photo[3] > flat[3]  # noise, many colours
    grad = texture_statistics(gradient())
    # a smooth ramp: flat along its rows, 1-level steps across them, no backdrop; flatter than the photo
    assert grad[0] > 0.7 and grad[1] > 0.15 and grad[4] == 0 and grad[0] > photo[0] and grad[3] < photo[3]


def test_texture_statistics_look_past_a_white_backdrop():
    rng = np.random.default_rng(1)
    a = np.full((300, 400, 3), 255, np.uint8)
    a[100:200, 150:250] = np.clip(rng.normal(120, 6, (100, 100, 3)), 0, 255)  # a noisy object on white
    stats = dict(zip(TEXTURE_STATS, texture_statistics(Image.fromarray(a)), strict=True))
    assert abs(stats["backdrop_share"] - 1 + 100 * 100 / (300 * 400)) < 1e-6
    assert stats["flat_share"] < 0.2  # the white around it is not counted as a flat fill


def test_a_head_reading_texture_round_trips_and_needs_the_pictures(tmp_path):
    rng = np.random.default_rng(0)
    n_in = 8 + len(TEXTURE_STATS)
    kind = LinearHead(KINDS, rng.random(n_in), np.ones(n_in), rng.normal(size=(2, n_in)), np.zeros(2),
                      extra=len(TEXTURE_STATS))  # fmt: skip
    style = LinearHead(ART_STYLES, rng.random(8), np.ones(8), rng.normal(size=(4, 8)), np.zeros(4))
    made = StyleHead(kind, style, {"texture": list(TEXTURE_STATS)})
    made.save(tmp_path / "t.npz")
    loaded = StyleHead.load(tmp_path / "t.npz")
    x, pictures = rng.random((2, 8)), [stripes(), gradient()]
    assert loaded.reads_texture and loaded.kind.extra == len(TEXTURE_STATS) and loaded.style.extra == 0
    assert loaded.predict(x, pictures) == made.predict(x, pictures)
    with pytest.raises(AutotagError, match="decoded picture"):
        loaded.predict(x)


def test_patch_statistics_tell_a_photo_from_a_rendered_picture():
    """At the decoded resolution a photo's pixels never repeat their neighbours' mean exactly and its
    channels' noise moves together; a rendered ramp or flat fill leaves no residual and few colours."""
    photo = dict(zip(PATCH_STATS, patch_statistics(centre_patch(bundled_photo("chelsea"))), strict=True))
    for drawn in (gradient(), stripes()):
        art = dict(zip(PATCH_STATS, patch_statistics(centre_patch(drawn)), strict=True))
        assert art["zero_residual_share"] > 0.25 > 0.05 > photo["zero_residual_share"]
        assert art["noise_level"] < 0.2 < photo["noise_level"]
        assert art["distinct_colours"] < 0.1 < photo["distinct_colours"]
    assert photo["residual_channel_corr"] > 0.5
    flat = patch_statistics(np.full((256, 256, 3), 128, np.uint8))
    assert flat[PATCH_STATS.index("zero_residual_share")] == 1 and flat[PATCH_STATS.index("noise_level")] == 0
    assert patch_statistics(np.zeros((4, 300, 3), np.uint8)).tolist() == [0.0] * len(PATCH_STATS)  # too small


def test_patch_statistics_see_jpeg_blocks_at_the_decoded_resolution():
    import io

    rng = np.random.default_rng(3)  # a smooth field without a period of its own (a ramp's steps can have one)
    smooth = Image.fromarray((rng.random((6, 6, 3)) * 255).astype(np.uint8)).resize((512, 512), Image.BICUBIC)
    data = io.BytesIO()
    smooth.save(data, "JPEG", quality=20)
    blocky = Image.open(io.BytesIO(data.getvalue())).convert("RGB")
    at = PATCH_STATS.index("block_edges")
    assert patch_statistics(centre_patch(blocky))[at] > 0.3 > abs(patch_statistics(centre_patch(smooth))[at])


def test_a_head_reading_the_patch_needs_the_patches(tmp_path):
    rng = np.random.default_rng(0)
    extra = len(TEXTURE_STATS) + len(PATCH_STATS)
    kind = LinearHead(KINDS, rng.random(8 + extra), np.ones(8 + extra), rng.normal(size=(2, 8 + extra)),
                      np.zeros(2), extra=extra)  # fmt: skip
    style = LinearHead(ART_STYLES, rng.random(8), np.ones(8), rng.normal(size=(4, 8)), np.zeros(4))
    StyleHead(kind, style).save(tmp_path / "p.npz")
    loaded = StyleHead.load(tmp_path / "p.npz")
    x, pictures = rng.random((2, 8)), [stripes(), gradient()]
    assert loaded.reads_texture and loaded.reads_patch
    assert len(loaded.predict(x, pictures, [centre_patch(p) for p in pictures])) == 2
    with pytest.raises(AutotagError, match="patch"):
        loaded.predict(x, pictures)
