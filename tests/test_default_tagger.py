"""The default tagger with its real models on real photos: the classifier and the COCO detector read
through the consumer vocabulary, colours, picture facts and photo-or-art, all from one decode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from autotag.pipeline import Tagger, softmax
from autotag.taxonomy.decisions import consumer_tags
from autotag.types import AutotagError


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    from autotag.encoders.detector_setup import detector_onnx_path

    if not detector_onnx_path().is_file():
        pytest.skip("the object detector is not set up: run `make setup` (needs npm)")
    return Tagger.load()


@pytest.fixture(scope="module")
def tagged(tagger, photos) -> dict:
    names = ("astronaut", "camera", "coffee", "chelsea", "rocket")
    return dict(zip(names, tagger.stream([photos[n] for n in names]), strict=True))


def _names(item) -> set[str]:
    return {t.name for t in item.tags}


def test_people_and_objects_through_the_vocabulary(tagged):
    for name in ("astronaut", "camera"):  # ImageNet has no person: the detector finds them
        item = tagged[name]
        assert {"person", "people"} <= _names(item), (name, item.tags)
        assert item.to_dict()["object_counts"]["person"] == 1
        assert not {"sled", "bobsleigh"} & _names(item)
    # the cup is found (objects facet, with its box); it is a tag only above the fitted detection_min
    assert any(o.name == "cup" for o in tagged["coffee"].objects) and "coffee" in _names(tagged["coffee"])
    chelsea = tagged["chelsea"]
    assert "cat" in _names(chelsea) and "dog" not in _names(chelsea)
    assert all(o.label != "dog" for o in chelsea.detections)
    assert not any(t.id.startswith("n0") and t.name == t.id for t in chelsea.tags)  # no WordNet id shown as a word


def test_facets_of_real_photos(tagged, photos):
    coffee = tagged["coffee"]
    assert coffee.style.kind == "photo" and coffee.properties.orientation == "landscape"
    assert "brown" in [c.name for c in coffee.colors[:2]]
    assert tagged["camera"].colors[0].name == "black and white"  # the cameraman is a greyscale photo
    for item in tagged.values():
        width, height = item.properties.width, item.properties.height
        for found in item.objects:
            x0, y0, x1, y1 = found.box
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (item.source, found)


def test_generated_pictures_read_as_they_look(tagger, tmp_path):
    red = tmp_path / "red.png"
    Image.new("RGB", (640, 360), (210, 25, 30)).save(red)
    grey = tmp_path / "grey.jpg"
    from skimage import data

    Image.fromarray(data.astronaut()).convert("L").save(grey)
    ramp = np.linspace(0, 1, 800)[None, :, None]
    gradient = tmp_path / "gradient.png"
    pixels = 255 * (ramp * [0.9, 0.3, 0.6] + (1 - ramp) * [0.1, 0.5, 0.9])
    Image.fromarray(pixels.repeat(450, 0).astype(np.uint8)).save(gradient)
    red_item, grey_item, gradient_item = tagger.stream([red, grey, gradient])
    assert red_item.colors[0].name == "red" and red_item.colors[0].share > 0.95
    assert grey_item.colors[0].name == "black and white"
    assert gradient_item.style.kind == "art" and gradient_item.tags[0].kind == "style"
    assert not any(t.kind in ("label", "object") and t.score < 0.5 for t in gradient_item.tags)


def test_boxes_follow_the_file_turned_and_shrunk(tagger, photos, tmp_path):
    """Boxes are in the upright file's pixels, whether EXIF turned it or JPEG draft decoding shrank it."""
    plain = tagger.process(photos["coffee"])
    cup = next(o for o in plain.objects if o.name == "cup")
    im = Image.open(photos["coffee"]).convert("RGB")
    big = tmp_path / "big.jpg"
    im.resize((im.width * 4, im.height * 4), Image.BICUBIC).save(big, quality=92)
    big_item = tagger.process(big)
    big_cup = next(o for o in big_item.objects if o.name == "cup")
    np.testing.assert_allclose(big_cup.box, np.array(cup.box) * 4, atol=4 * 8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored lying on its side, shown upright
    turned = tmp_path / "turned.jpg"
    im.transpose(Image.Transpose.ROTATE_90).save(turned, exif=exif.tobytes(), quality=95)
    turned_item = tagger.process(turned)
    assert (turned_item.properties.width, turned_item.properties.height) == (600, 400)
    turned_cup = next(o for o in turned_item.objects if o.name == "cup")
    np.testing.assert_allclose(turned_cup.box, cup.box, atol=8)


def test_no_objects_runs_no_detector_and_gives_the_classifiers_tags_through_the_vocabulary(tagged, photos):
    bare = Tagger.load(objects=False)
    assert bare.detector is None
    for name in ("chelsea", "coffee", "astronaut"):
        item = bare.process(photos[name])
        assert bool(item.tags) or name == "astronaut"
        assert item.detections is None and item.objects is None
        expected = [t.name for t in consumer_tags(softmax(item.logits))]
        assert [t.name for t in item.tags] == expected[: len(item.tags)], name
        assert {"person", "people"}.isdisjoint(t.name for t in item.tags)  # ImageNet has no person
        np.testing.assert_allclose(item.logits, tagged[name].logits, atol=1e-4)  # the same classifier


def test_a_missing_detector_is_one_line_and_no_objects_still_works(tagger, photos, tmp_path, monkeypatch):
    from autotag.cli import app
    from autotag.config import load_settings

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "onnx").symlink_to(load_settings().cache_dir / "onnx")  # the classifier is there, the detector not
    monkeypatch.setenv("AUTOTAG_CACHE_DIR", str(cache))
    with pytest.raises(AutotagError, match=r"run `make setup`.*--no-objects"):
        Tagger.load()
    runner = CliRunner()
    res = runner.invoke(app, ["tag", str(photos["coffee"])])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "make setup" in res.output
    res = runner.invoke(app, ["tag", str(photos["coffee"]), "--no-objects", "-f", "jsonl"])
    assert res.exit_code == 0, res.output
    assert "coffee" in {t["name"] for t in json.loads(res.stdout)["tags"]}
    monkeypatch.setenv("AUTOTAG_OBJECTS", "false")  # the setting, through the settings chain
    assert Tagger.load().detector is None


def test_the_table_says_not_sure_and_shows_the_facets(tagger, tmp_path, photos):
    from autotag.cli import app

    # grey with faint sensor-like noise: nothing in it to be sure of (a perfectly flat grey is art to
    # the style head's texture statistics, and gets its art style as a tag)
    flat = tmp_path / "flat.png"
    noise = np.random.default_rng(0).normal(128, 4, (200, 300, 3))
    Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8)).save(flat)
    res = CliRunner().invoke(app, ["tag", str(flat), str(photos["astronaut"]), "-f", "table"],
                             env={"COLUMNS": "200"})  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "not sure" in res.output and "1 person" in res.output and "colours:" in res.output


def test_xmp_gets_content_tags_and_colours_only_when_asked(tagger, photos, tmp_path):
    from autotag.cli import app
    from autotag.keywords import read_keywords

    target = tmp_path / "coffee.jpg"
    target.write_bytes(photos["coffee"].read_bytes())
    res = CliRunner().invoke(app, ["tag", str(target), "--write-xmp", "-f", "jsonl"])
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)
    words = read_keywords(target)
    assert words == [t["name"] for t in record["tags"]] and "brown" not in words
    again = tmp_path / "again.jpg"
    again.write_bytes(photos["coffee"].read_bytes())
    CliRunner().invoke(app, ["tag", str(again), "--write-xmp", "--xmp-colors", "-f", "jsonl"])
    assert set(read_keywords(again)) == set(words) | {c["name"] for c in record["colors"]}

