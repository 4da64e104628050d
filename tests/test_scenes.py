"""Scene words ImageNet has no class for (heads/scenes.py) and the category rules around them: scene
categories need real evidence, a broad category can be earned by its classes' summed mass. The rules
on hand-made inputs; the shipped models on real photos."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from autotag.heads.learned_tag import LearnedTag, library_centre
from autotag.heads.scenes import SceneHeads, default_scene_heads, scene_evidence
from autotag.taxonomy.consumer import default_consumer
from autotag.taxonomy.decisions import ConsumerParams, consumer_tags
from autotag.taxonomy.imagenet import imagenet_hierarchy
from autotag.types import AutotagError

ANIMAL_WORDS = {"animal", "insect", "bird", "fish", "reptile", "wildlife", "pet", "dog", "cat"}
# a FIT picture of the real-photo benchmark: mountains, forest, meadow under a clouded sky
MOUNTAINS = Path("/usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg")
MEADOW = Path("/usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg")  # FIT: dandelions, no animal


def _heads(dim: int = 8) -> SceneHeads:
    rng = np.random.default_rng(0)
    library = np.abs(rng.standard_normal((50, dim))).astype(np.float32)
    centre = library_centre(library)
    sky = LearnedTag("sky", centre, np.eye(dim, dtype=np.float32)[0] * 5, 0.0, 0.5, 10, 20)
    sea = LearnedTag("sea", centre, np.eye(dim, dtype=np.float32)[1] * 5, 0.0, 0.5, 10, 20)
    return SceneHeads("some_encoder", (sky, sea), {"note": "made by the test"})


def test_scene_heads_round_trip_and_report_only_words_above_their_threshold(tmp_path):
    heads = _heads()
    x = np.zeros(8, np.float32)
    x[0] = 10.0  # all of it in the sky model's direction
    found = heads.found(x)
    assert set(found) == {"sky"} and 0.5 < found["sky"] < 1.0
    assert heads.probabilities(x[None]).shape == (1, 2)
    heads.save(tmp_path / "scenes.json")
    again = SceneHeads.load(tmp_path / "scenes.json")
    assert again.words == ("sky", "sea") and again.found(x) == pytest.approx(found)
    assert scene_evidence(np.ones(5, np.float32), heads) == {}  # another encoder's embedding: no scene words
    assert scene_evidence(x, heads, encoder="some_encoder") == found
    assert scene_evidence(x, heads, encoder="efficientnet_lite2") == {}  # same size, another space
    with pytest.raises(AutotagError, match="8-d embeddings"):
        heads.probabilities(np.ones((1, 5)))
    with pytest.raises(AutotagError, match="does not exist"):
        SceneHeads.load(tmp_path / "missing.json")


def test_a_scene_word_earns_its_category_and_what_that_implies():
    params = ConsumerParams(relative=0.0)
    tags = {t.name: t for t in consumer_tags(np.full(1000, 1e-3), scenes={"sunset": 0.8}, params=params)}
    assert set(tags) == {"sunset", "sky"} and tags["sky"].kind == "category"
    assert tags["sunset"].score == pytest.approx(0.8)
    with pytest.raises(AutotagError, match="no category"):
        consumer_tags(np.full(1000, 1e-3), scenes={"spaceship": 0.9}, params=params)


def test_a_broad_category_is_earned_by_mass_only_far_above_noise():
    vocab = default_consumer()
    ids = imagenet_hierarchy().class_ids
    insects = [e.key for e in vocab.imagenet if "insect" in e.categories and not e.never][:30]
    spread = np.zeros(1000)
    for k in insects:  # a dragonfly the model splits over 30 insect classes: no member is sure
        spread[ids.index(k)] = 0.75 / len(insects)
    params = ConsumerParams(relative=0.0, class_floor=0.05)
    assert consumer_tags(spread, params=params) == []
    earned = {t.name for t in consumer_tags(spread, params=replace(params, category_mass={"animal": 0.6}))}
    assert earned == {"animal"}  # the category, never a species
    thin = spread * (0.5 / 0.75)  # half the mass: below the bar
    assert consumer_tags(thin, params=replace(params, category_mass={"animal": 0.6})) == []


def test_an_unsure_sports_class_earns_no_sport():
    # the default parameters: "sport", like a place, needs a member that is itself shown
    ids = imagenet_hierarchy().class_ids
    params = ConsumerParams(label_threshold=0.6, category_bar=0.25, relative=0.0)

    def names(p_ball: float, params: ConsumerParams = params) -> set[str]:
        ball = np.zeros(1000)
        ball[ids.index("n02799071")] = p_ball  # baseball
        return {t.name for t in consumer_tags(ball, params=params)}

    assert names(0.42) == set()  # a coconut card the classifier calls a baseball at 0.42
    assert {"baseball", "sport"} <= names(0.86)  # (and "ball", the COCO object the classifier names)
    assert "sport" in names(0.42, replace(params, scene_categories=[]))  # what the rule removes


# -- the shipped models on real photos -----------------------------------------------------------------
@pytest.fixture(scope="module")
def tagger():
    from autotag.encoders.detector_setup import detector_onnx_path
    from autotag.pipeline import Tagger

    if not detector_onnx_path().is_file():
        pytest.skip("the object detector is not set up: run `make setup` (needs npm)")
    return Tagger.load()


def test_shipped_scene_models_read_the_default_encoder():
    heads = default_scene_heads()
    assert heads is not None and heads.encoder == "efficientnet_lite0" and heads.dim == 1280
    assert {"sky", "building", "landscape"} <= set(heads.words)
    vocab = default_consumer()
    assert all(w in vocab.categories for w in heads.words)


def test_astronaut_gets_no_snow_sled_or_sport(tagger):
    from autotag.demo import bundled_photo

    names = {t.name for t in tagger.tag(bundled_photo("astronaut"))}
    assert not names & {"snow", "sled", "bobsled", "sport"}, names


def test_a_mountain_wallpaper_gets_sky_and_a_meadow_no_animal(tagger):
    if not (MOUNTAINS.is_file() and MEADOW.is_file()):
        pytest.skip("lomiri-wallpapers-16.04 is not installed (apt-get install lomiri-wallpapers-16.04)")
    mountains, meadow = ({t.name for t in tagger.tag(p)} for p in (MOUNTAINS, MEADOW))
    assert {"sky", "landscape"} <= mountains, mountains
    assert not mountains & ANIMAL_WORDS and not meadow & ANIMAL_WORDS, (mountains, meadow)


def test_no_place_word_is_earned_on_a_plain_background():
    from autotag.taxonomy.decisions import NO_PLACE_ON_PLAIN_BACKGROUND, scenes_seen

    found = {"sky": 0.9, "cloud": 0.8, "space": 0.95, "flower": 0.9, "water": 0.7}
    assert scenes_seen(found, plain_background=False) == found
    assert scenes_seen(found, plain_background=True) == {"space": 0.95, "flower": 0.9, "water": 0.7}
    assert {"sky", "cloud", "landscape", "snow"} <= set(NO_PLACE_ON_PLAIN_BACKGROUND)


def test_no_place_word_on_a_plain_background_whatever_earns_it():
    from autotag.taxonomy.decisions import default_params
    from autotag.types import Detection

    vocab = default_consumer()
    assert "sky" in vocab.coco["kite"].categories
    probs = np.full(1000, 1 / 1000)
    kite = [Detection("kite", 0.9, (0.0, 0.0, 10.0, 10.0))]  # a kite implies a sky: not on a cut-out
    params = default_params()
    for plain, expected in ((False, {"kite", "sky"}), (True, {"kite"})):
        names = {t.name for t in consumer_tags(probs, kite, vocab, params, {"sky": 0.9, "space": 0.9}, plain)}
        assert names >= expected and ("sky" in names) is not plain and "space" in names, (plain, names)


def test_the_mountain_wallpaper_on_a_plain_background_would_earn_no_sky(tagger):
    from autotag.pipeline import TagOptions, default_tags

    if not MOUNTAINS.is_file():
        pytest.skip("lomiri-wallpapers-16.04 is not installed (apt-get install lomiri-wallpapers-16.04)")
    item = tagger.process(MOUNTAINS, keep_image=True)
    assert item.background is None and {"sky", "landscape"} <= {t.name for t in item.tags}
    item.background = (255, 255, 255)  # the same embedding, had its subject sat on white
    names = {t.name for t in default_tags(item, TagOptions(), tagger.encoder.spec.name)}
    assert not names & {"sky", "landscape", "mountain", "cloud"}, names


def test_hashtags_read_scene_words_like_the_tags():
    from autotag.suggest.hashtags import ConsumerHashtagSuggester
    from autotag.taxonomy.mapping import ConsumerMapping

    mapping = ConsumerMapping.from_dict({"vocabulary": "test", "tags": ["sky", "cats"],
                                         "terms": {"sky": ["sky"], "cats": ["cat"]}})  # fmt: skip
    suggester = ConsumerHashtagSuggester(mapping)
    probs = np.full((2, 1000), 1e-3)
    plain = suggester.scores(probs)
    seen = suggester.scores(probs, [{"sunset": 0.9}, {}])  # a sunset is sky
    assert plain[0, 0] == 0.0 and seen[0, 0] == pytest.approx(0.9) and seen[1, 0] == 0.0
    with pytest.raises(AutotagError, match="scene words"):
        suggester.scores(probs, [{}])


def test_shipped_hashtags_read_the_scene_models(tagger):
    from autotag.demo import bundled_photo
    from autotag.suggest.hashtags import iter_hashtags

    # the temple by the lake: its building is a scene word (0.99), not a sure ImageNet class (0.33)
    (row,) = iter_hashtags([bundled_photo("china")], tagger=tagger)
    assert row["error"] is None and "architecture" in {t["name"] for t in row["tags"]}, row
