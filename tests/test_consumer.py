"""The consumer vocabulary file and the decisions that earn each tag (real model on real photos where it
is about model behaviour; hand-made probability vectors where it is about the rule itself)."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, replace
from importlib import resources

import numpy as np
import pytest
from PIL import Image

from autotag.suggest.hashtags import HashtagSuggester
from autotag.taxonomy.consumer import COCO_CLASSES, default_consumer, load_consumer, parse_consumer
from autotag.taxonomy.decisions import ConsumerParams, consumer_tags
from autotag.taxonomy.imagenet import imagenet_hierarchy
from autotag.types import AutotagError

SHIPPED = resources.files("autotag.taxonomy").joinpath("consumer.toml").read_text(encoding="utf-8")
ANIMAL_WORDS = {"animal", "insect", "bird", "fish", "reptile", "wildlife", "pet", "dog", "cat"}


@dataclass
class Det:
    label: str
    score: float


def imagenet_section_keys(text: str) -> list[str]:
    section, keys = "", []
    for line in text.splitlines():
        if m := re.match(r"^\[(\w+)\]", line):
            section = m.group(1)
        elif section == "imagenet" and (m := re.match(r"^\s*(n\d{8})\s*=", line)):
            keys.append(m.group(1))
    return keys


def test_every_imagenet_class_has_exactly_one_line():
    keys = imagenet_section_keys(SHIPPED)
    assert len(keys) == len(set(keys)) == 1000
    assert set(keys) == set(imagenet_hierarchy().class_ids)
    vocab = default_consumer()
    assert [e.key for e in vocab.imagenet] == list(imagenet_hierarchy().class_ids)  # column order
    assert set(vocab.coco) == set(COCO_CLASSES)


def test_labels_are_plain_words_not_wordnet_jargon():
    vocab = default_consumer()
    jargon = {"spermatophyte", "angiosperm", "oscine", "passerine", "geological formation", "protective covering",
              "drug of abuse", "natural elevation", "invertebrate", "arthropod", "placental", "vertebrate"}  # fmt: skip
    words = vocab.words()
    assert not words & jargon
    assert all(w == w.strip() and "_" not in w and not re.search(r"\(|\)|/", w) for w in words)
    assert all(label == label.lower() for label in vocab.labels)  # details may keep proper nouns
    breeds = vocab.classes_of("dog")
    assert len(breeds) == 118 and all(e.detail for e in breeds)  # the breed is a detail, "dog" the label
    # jigsaw puzzle, window screen, chain mail, honeycomb, velvet
    for never in ("n03598930", "n04589890", "n03000247", "n03530642", "n04525038"):
        assert vocab.entry(never).never


def test_unknown_category_names_the_file_and_line(tmp_path):
    lines = SHIPPED.splitlines()
    number = next(i for i, ln in enumerate(lines) if ln.startswith("n02123045 ="))  # tabby cat
    lines[number] = 'n02123045 = {label = "cat", detail = "tabby", categories = ["cat", "animl"]}'
    bad = tmp_path / "mine.toml"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(AutotagError, match=rf"mine\.toml:{number + 1}: n02123045: unknown category 'animl'"):
        load_consumer(bad)


def test_unknown_key_missing_class_and_bad_toml_are_one_line_errors(tmp_path):
    ids = imagenet_hierarchy().class_ids
    with pytest.raises(AutotagError, match=r"x\.toml:5: n01440764: unknown key 'lable'"):
        parse_consumer('[categories]\nfish = {}\n\n[imagenet]\nn01440764 = {lable = "fish"}\n', "x.toml", ids)
    with pytest.raises(AutotagError, match="999 ImageNet classes have no line"):
        parse_consumer('[categories]\nfish = {}\n[imagenet]\nn01440764 = {label = "fish"}\n', "x.toml", ids)
    with pytest.raises(AutotagError, match="not valid TOML"):
        parse_consumer("[categories\n", "x.toml", ids)
    with pytest.raises(AutotagError, match=r"x\.toml:2: category 'pet' implies unknown 'animl'"):
        parse_consumer('[categories]\npet = {implies = ["animl"]}\n', "x.toml", ids)
    with pytest.raises(AutotagError, match="does not exist"):
        load_consumer(tmp_path / "missing.toml")


def probs_of(**by_wnid: float) -> np.ndarray:
    ids = imagenet_hierarchy().class_ids
    p = np.zeros(1000)
    for wnid, value in by_wnid.items():
        p[ids.index(wnid)] = value
    return p


def test_label_scores_add_up_and_categories_need_a_confident_member():
    vocab = default_consumer()
    params = ConsumerParams(label_threshold=0.3, category_bar=0.4, relative=0.0, max_tags=20, chance_discount=False)
    dogs = [e.key for e in vocab.classes_of("dog")]
    hesitant = probs_of(**{k: 0.6 / 6 for k in dogs[:6]})  # 0.1 on each of six breeds
    tags = {t.name: t for t in consumer_tags(hesitant, vocab=vocab, params=params)}
    assert tags["dog"].kind == "label" and tags["dog"].score == pytest.approx(0.6) and not tags["dog"].detail
    assert {"animal", "pet"} <= set(tags)
    # above chance: "dog" owns 118 of the ~990 kept classes, so a clueless prediction gives it 12% for free
    share = 118 / int((vocab.label_index >= 0).sum())
    discounted = {t.name: t for t in consumer_tags(hesitant, vocab=vocab, params=replace(params, chance_discount=True))}
    assert discounted["dog"].score == pytest.approx((0.6 - share) / (1 - share))
    # more mass spread thinly over the 280 other animal classes (what a leaf looks like to the model): nothing
    animals = [e.key for e in vocab.imagenet if "animal" in e.categories and not e.never and e.label != "dog"]
    assert len(animals) > 250
    noise = probs_of(**{k: 0.8 / len(animals) for k in animals})
    assert consumer_tags(noise, vocab=vocab, params=params) == []
    sure = consumer_tags(probs_of(n02099601=0.9), vocab=vocab, params=params)  # golden retriever
    assert sure[0].name == "dog" and sure[0].detail == "golden retriever" and sure[0].id == "n02099601"


def test_never_min_relative_cut_and_cap():
    params = ConsumerParams(label_threshold=0.1, category_bar=0.1, relative=0.0, max_tags=20)
    assert consumer_tags(probs_of(n03598930=0.95), params=params) == []  # jigsaw puzzle: never
    assert consumer_tags(probs_of(n01930112=0.45), params=params) == []  # nematode: never
    assert consumer_tags(probs_of(n01776313=0.45), params=params) == []  # tick: below its min, no "animal" either
    # (the cup the classifier alone would name from espresso + mug is not what this checks: off)
    cut = ConsumerParams(label_threshold=0.05, category_bar=0.9, relative=0.5, max_tags=20, classifier_object_min=1.01)
    names = [t.name for t in consumer_tags(probs_of(n07920052=0.8, n03063599=0.3), params=cut)]  # espresso, mug
    assert names == ["coffee"]  # the mug is far below the best tag
    capped = ConsumerParams(label_threshold=0.05, category_bar=0.05, relative=0.0, max_tags=2)
    assert len(consumer_tags(probs_of(n07920052=0.5, n03063599=0.4), params=capped)) == 2


def test_a_detection_earns_its_label_and_categories():
    params = ConsumerParams(detection_min=0.5, relative=0.0)
    tags = {t.name: t for t in consumer_tags(np.zeros(1000), [Det("person", 0.8), Det("dog", 0.3)], params=params)}
    assert tags["person"].kind == "object" and tags["person"].id == "coco:person"
    assert tags["people"].kind == "category" and tags["people"].score == pytest.approx(0.8)
    assert "dog" not in tags and "animal" not in tags  # below detection_min


def test_a_category_needs_a_member_near_its_own_bar_unless_detected():
    # bobsled (snow, sport) at 0.3: above the category bar, below its own label threshold of 0.6
    sled = probs_of(n02860847=0.3)
    loose = ConsumerParams(label_threshold=0.6, category_bar=0.2, relative=0.0, chance_discount=False,
                           scene_categories=[])  # fmt: skip
    assert {t.name for t in consumer_tags(sled, params=loose)} == {"snow", "sport"}
    # a scene category (where the picture is) needs a shown member: an unsure bobsled is no "snow"
    assert {t.name for t in consumer_tags(sled, params=replace(loose, scene_categories=["snow"]))} == {"sport"}
    sure = {t.name for t in consumer_tags(probs_of(n02860847=0.7), params=replace(loose, scene_categories=["snow"]))}
    assert sure == {"bobsled", "snow", "sport"}
    strict = replace(loose, member_ratio=1.0)  # a member must reach 1.0 x its own threshold
    assert consumer_tags(sled, params=strict) == []
    assert {t.name for t in consumer_tags(sled, params=replace(loose, member_ratio=0.5))} == {"snow", "sport"}
    # a detection still earns its categories whatever the classifier's members say
    seen = {t.name for t in consumer_tags(sled, [Det("person", 0.8)], params=strict)}
    assert seen == {"person", "people"}


@pytest.fixture(scope="module")
def default_tagger():
    from autotag.pipeline import Tagger

    return Tagger.default()


def real_probs(tagger, image) -> np.ndarray:
    from autotag.pipeline import softmax

    item = next(tagger.stream([image], decide=False))
    return softmax(item.logits[None])[0]


def test_grass_photo_gets_no_animal_word(default_tagger):
    from PIL import Image
    from skimage import data

    grass = Image.fromarray(data.grass()).convert("RGB")  # the old tagger said "animal, mammal, carnivore"
    names = {t.name for t in consumer_tags(real_probs(default_tagger, grass))}
    assert not names & ANIMAL_WORDS, names


def test_astronaut_gets_no_sled_and_cat_photo_gets_cat(default_tagger):
    from autotag.demo import bundled_photo

    astronaut = consumer_tags(real_probs(default_tagger, bundled_photo("astronaut")))
    assert not {t.name for t in astronaut} & {"sled", "bobsled"}, astronaut
    chelsea = [t.name for t in consumer_tags(real_probs(default_tagger, bundled_photo("chelsea")))]
    assert chelsea[0] == "cat" and "animal" in chelsea and "dog" not in chelsea


def test_target_tags_map_onto_consumer_words_and_truth_follows():
    from autotag.taxonomy.mapping import map_onto_consumer, tag_truth
    from autotag.taxonomy.vocabulary import parse_vocabulary

    vocab = parse_vocabulary({"name": "mine", "tags": {"dogs": {"aliases": ["puppy"]}, "sky": {}, "sunset": {},
                                                       "abstract": {"aliases": ["pattern"]}}})  # fmt: skip
    mapping = map_onto_consumer(vocab, default_consumer())
    assert mapping.terms["dogs"] == ["dog"] and mapping.terms["sky"] == ["sky"]
    # "sunset" is a category with no member class, "abstract" no consumer word at all: neither can fire
    assert mapping.unreachable() == ["sunset", "abstract"]
    assert mapping.warnings()[0] == "sunset: no source label maps here; it will never be suggested"
    truth = tag_truth(mapping, vocab, [["dog", "pet"], ["puppies"], ["sky", "cloud"], ["pattern"]])
    assert truth.tolist() == [[True, False, False, False], [True, False, False, False],
                              [False, True, False, False], [False, False, False, True]]  # fmt: skip


def test_a_site_abstract_tag_maps_onto_the_abstract_style():
    from autotag.read import ART_STYLES
    from autotag.taxonomy.mapping import map_onto_consumer, tag_truth
    from autotag.taxonomy.vocabulary import parse_vocabulary

    vocab = parse_vocabulary({"name": "mine", "tags": {"sunset": {}, "abstract": {"aliases": ["pattern", "texture"]},
                                                       "drawings": {"aliases": ["illustration"]}}})  # fmt: skip
    mapping = map_onto_consumer(vocab, default_consumer(), styles=ART_STYLES)
    assert mapping.terms["abstract"] == ["abstract", "pattern"] and mapping.terms["drawings"] == ["illustration"]
    assert mapping.unreachable() == ["sunset"]  # the styles reach what no consumer word does; sunsets still not
    assert "picture style" in mapping.reasons["abstract"]
    assert tag_truth(mapping, vocab, [["pattern"], ["photo", "sky"]])[:, 1].tolist() == [True, False]


def waves(size=(640, 400)) -> Image.Image:
    """Banded waves in three colours, like the generated abstract art scripts/train_style.py makes."""
    x, y = np.meshgrid(np.linspace(0, 1, size[0]), np.linspace(0, 1, size[1]))
    level = np.floor((y + 0.08 * np.sin(6 * np.pi * x)) * 7) / 7
    return Image.fromarray(np.stack([30 + 200 * level, 80 + 100 * level, 220 - 150 * level], -1).astype(np.uint8))


def gradient(size=(640, 400)) -> Image.Image:
    t = np.linspace(0, 1, size[0])[None, :, None]
    row = np.array([250, 120, 30]) * (1 - t) + np.array([90, 40, 160]) * t
    return Image.fromarray(np.repeat(row, size[1], axis=0).astype(np.uint8))


def test_generated_art_gets_a_site_abstract_hashtag_through_the_tagger_and_photos_do_not(default_tagger):
    from autotag.demo import bundled_photo
    from autotag.read import ART_STYLES
    from autotag.suggest.hashtags import ConsumerHashtagSuggester, fit_vocabulary, iter_hashtags
    from autotag.taxonomy.mapping import map_onto_consumer
    from autotag.taxonomy.vocabulary import parse_vocabulary

    vocab = parse_vocabulary({"name": "mine", "tags": {"abstract": {"aliases": ["pattern"]},
                                                       "animals": {"aliases": ["animal"]}}})  # fmt: skip
    mapping = map_onto_consumer(vocab, default_consumer(), styles=ART_STYLES)
    suggester = ConsumerHashtagSuggester(mapping, fit_vocabulary(mapping, vocab))  # the shipped pooled threshold
    assert suggester.reads_styles
    pictures = [gradient(), waves(), *(bundled_photo(n) for n in ("coffee", "astronaut", "chelsea"))]
    rows = list(iter_hashtags(pictures, tagger=default_tagger, suggester=suggester))
    names = [[t["name"] for t in row["tags"]] for row in rows]
    assert names[0] == ["abstract"] and names[1] == ["abstract"], names
    assert not any("abstract" in n for n in names[2:]), names
    assert names[4] == ["animals"]  # the photo's content still earns its tags beside the style terms


def test_vocab_map_warns_about_a_tag_that_cannot_fire(tmp_path, wordnet_ready):
    from typer.testing import CliRunner

    from autotag.cli import app

    mine = tmp_path / "mine.yaml"
    mine.write_text("name: mine\ntags:\n  cats: [domestic_cat.n.01]\n  sunset:\n    aliases: [dusk]\n"
                    "  abstract:\n    aliases: [pattern]\n")
    result = CliRunner().invoke(app, ["vocab", "map", "--target", str(mine), "--out", str(tmp_path / "m"), "--no-text"])
    assert result.exit_code == 0, result.output
    assert "sunset: no source label maps here; it will never be suggested" in result.output
    assert "cats:" not in result.output.split("warning")[-1]
    assert "abstract:" not in result.output  # the picture styles earn it
    points = json.loads((tmp_path / "m" / "operating_points.json").read_text())
    assert 0.05 < points["default"] < 0.9  # fitted (borrowed from the shipped hashtags' fit), not a flat 0.90
    suggester = HashtagSuggester.from_files(tmp_path / "m" / "mapping.json")
    cat_photo = probs_of(n02123045=0.7, n02124075=0.2)  # tabby, Egyptian cat
    assert [t.name for t in suggester.suggest(cat_photo[None])[0]] == ["cats"]


def test_shipped_hashtags_go_through_the_consumer_vocabulary(default_tagger):
    from autotag.demo import bundled_photo
    from autotag.suggest.hashtags import ConsumerHashtagSuggester, default_suggester

    suggester = default_suggester()
    assert isinstance(suggester, ConsumerHashtagSuggester)
    assert suggester.points.meta["fitted_on"].startswith("fit split of bench/realphotos")
    chelsea = {t.name for t in suggester.suggest(real_probs(default_tagger, bundled_photo("chelsea"))[None])[0]}
    assert {"cats", "animals"} <= chelsea and "dogs" not in chelsea
    from PIL import Image
    from skimage import data

    grass = real_probs(default_tagger, Image.fromarray(data.grass()).convert("RGB"))
    assert "animals" not in {t.name for t in suggester.suggest(grass[None])[0]}


def test_audit_cannot_judge_what_the_model_has_no_concept_for(default_tagger):
    from autotag.demo import bundled_photo
    from autotag.suggest.audit import ConsumerAuditor

    auditor = ConsumerAuditor(flag_below=0.15)
    assert auditor.terms("Cats") == ["cat"] and auditor.terms("golden retriever") == ["dog"]
    assert auditor.terms("sunset") == [] and auditor.terms("instagood") == []  # no member class / no word
    cat = {a.tag: a for a in auditor.audit(real_probs(default_tagger, bundled_photo("chelsea")),
                                           ["cat", "pet", "dog", "car", "sunset", "instagood"])}  # fmt: skip
    assert not cat["cat"].flagged and not cat["pet"].flagged and cat["cat"].judged
    assert cat["dog"].flagged and cat["car"].flagged  # the model could see them and does not
    for unknown in ("sunset", "instagood"):
        assert not cat[unknown].judged and not cat[unknown].flagged
        assert cat[unknown].to_dict()["cannot_judge"] is True


def _cutout(size: tuple[int, int], transparent: bool = False) -> Image.Image:
    """A wide object (a dark-red bar with a grey stripe) tight in its picture, on white or on transparency."""
    from PIL import ImageDraw

    im = Image.new("RGBA" if transparent else "RGB", size, (0, 0, 0, 0) if transparent else (255, 255, 255))
    draw = ImageDraw.Draw(im)
    w, h = size
    draw.rounded_rectangle((0, h // 5, w - 1, h - 1 - h // 5), radius=h // 6, fill=(120, 20, 20, 255))
    draw.rectangle((w // 3, h // 3, 2 * w // 3, h // 2), fill=(90, 90, 90, 255))
    return im


def test_a_cutout_on_white_or_transparency_is_seen_whole_on_its_background():
    from autotag.encoders.base import preprocess
    from autotag.encoders.efficientnet_lite import SPECS
    from autotag.encoders.views import TAGGER_VIEWS, letterbox, plain_background, tagger_view, views
    from autotag.ingest import decode_image

    spec = SPECS["efficientnet_lite0"]
    png = io.BytesIO()
    _cutout((640, 128), transparent=True).save(png, "PNG")
    for wide in (_cutout((640, 128)), decode_image(png.getvalue())):  # decoding flattens alpha onto white
        assert plain_background(wide) == (255, 255, 255)
        view, background = tagger_view(wide, spec)
        assert background == (255, 255, 255)
        np.testing.assert_array_equal(view, letterbox(wide, spec, (255, 255, 255)))
        assert not np.allclose(view, preprocess(wide, spec))  # the centre crop would cut the object
        assert np.allclose(view[:, 0, :], (255 - spec.mean) / spec.std)  # padded with its own white, not grey
        np.testing.assert_array_equal(views(wide, spec, TAGGER_VIEWS)[0], view)  # the benches' view set agrees
    # close to square, the centre crop loses little: it stays, the plain background is still reported
    square = _cutout((200, 180))
    view, background = tagger_view(square, spec)
    assert background == (255, 255, 255)
    np.testing.assert_array_equal(view, preprocess(square, spec))


def test_a_photo_with_a_busy_border_keeps_the_centre_crop(photos):
    from autotag.encoders.base import preprocess
    from autotag.encoders.efficientnet_lite import SPECS
    from autotag.encoders.views import plain_background, tagger_view

    spec = SPECS["efficientnet_lite0"]
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (300, 800, 3), dtype=np.uint8))
    for im in (noisy, Image.open(photos["coffee"]).convert("RGB"), Image.open(photos["rocket"]).convert("RGB")):
        assert plain_background(im) is None
        view, background = tagger_view(im, spec)
        assert background is None
        np.testing.assert_array_equal(view, preprocess(im, spec))


def test_views_of_wide_pictures_and_their_merge():
    from PIL import Image

    from autotag.encoders.efficientnet_lite import SPECS
    from autotag.encoders.views import letterbox, merge_views, views

    spec = SPECS["efficientnet_lite0"]
    wide = Image.new("RGB", (1600, 900), (200, 30, 30))
    assert views(wide, spec, "center").shape == (1, 3, spec.input_size, spec.input_size)
    assert views(wide, spec, "thirds+full").shape == (4, 3, spec.input_size, spec.input_size)
    assert views(Image.new("RGB", (500, 480)), spec, "thirds+full").shape[0] == 1  # near-square: one view
    box = letterbox(wide, spec)
    assert np.allclose(box[:, 0, :], 0.0) and not np.allclose(box[:, spec.input_size // 2, :], 0.0)  # padded
    with pytest.raises(AutotagError, match="unknown view set 'fourths'; valid: center"):
        views(wide, spec, "fourths")
    merged = merge_views(np.array([[0.8, 0.2, 0.0], [0.0, 0.2, 0.8]]), "max")
    assert merged.sum() == pytest.approx(1.0) and merged[0] == pytest.approx(merged[2])
