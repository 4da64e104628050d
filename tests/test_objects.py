"""Objects the decisions count: a detection from detection_min on, or a weaker one the classifier confirms."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from autotag.pipeline.decide import named_objects
from autotag.taxonomy.consumer import default_consumer
from autotag.taxonomy.decisions import NO_OBJECT_ALONE, ConsumerParams, consumer_tags, evidence_for
from autotag.types import Detection

ROOT = Path(__file__).resolve().parents[1]
BOX = (10.0, 10.0, 90.0, 90.0)


def probs_on(label: str, mass: float) -> np.ndarray:
    """(1000,) probabilities with `mass` spread over the ImageNet classes of a consumer label."""
    vocab = default_consumer()
    classes = [i for i, e in enumerate(vocab.imagenet) if e.label == label and not e.never]
    p = np.full(1000, (1.0 - mass) / (1000 - len(classes)))
    p[classes] = mass / len(classes)
    return p


PARAMS = ConsumerParams(detection_min=0.5, confirm_min=0.2, confirm_support=0.3)


def test_a_weak_detection_counts_only_when_the_classifier_agrees():
    vocab = default_consumer()
    weak = [Detection("broccoli", 0.33, BOX)]
    agreeing, silent = probs_on("broccoli", 0.6), probs_on("pizza", 0.6)
    assert vocab.object_support(agreeing, "broccoli") == pytest.approx(0.6)
    assert vocab.object_support(agreeing, "toothbrush") == 0.0  # no ImageNet class names it

    def counted(p: np.ndarray, dets: list[Detection], params: ConsumerParams) -> dict[str, float]:
        # the detections' rule alone: no object named by the classifier without a box
        return evidence_for(p, params, dets, vocab, classifier_object_min=NO_OBJECT_ALONE).objects

    # both models say so: scored as either being right, 1 - (1 - 0.33)(1 - 0.6)
    assert counted(agreeing, weak, PARAMS) == {"broccoli": pytest.approx(0.732)}
    assert counted(silent, weak, PARAMS) == {}  # the classifier sees something else
    assert counted(agreeing, [Detection("broccoli", 0.15, BOX)], PARAMS) == {}  # below confirm_min
    assert counted(agreeing, weak, replace(PARAMS, confirm_min=1.0)) == {}  # off: detection_min alone
    assert counted(silent, [Detection("broccoli", 0.55, BOX)], PARAMS) == {"broccoli": 0.55}  # strong alone
    # a category follows the object: a weakly detected bird the classifier calls a toucan is a bird
    bird = consumer_tags(probs_on("toucan", 0.7), [Detection("bird", 0.3, BOX)], params=PARAMS)
    assert {"bird", "toucan"} <= {t.name for t in bird}
    assert not {t.name for t in consumer_tags(silent, [Detection("bird", 0.3, BOX)], params=PARAMS)} & {"bird"}


def test_the_objects_facet_keeps_its_floor_and_adds_the_confirmed():
    dets = [Detection("cup", 0.45, BOX), Detection("broccoli", 0.3, BOX), Detection("dog", 0.3, BOX)]
    facet = named_objects(dets, probs_on("broccoli", 0.6))
    assert [o.label for o in facet] == ["cup", "broccoli"]  # cup: the facet's own floor; dog: nobody agrees
    assert [o.label for o in named_objects(dets)] == ["cup"]  # without probabilities: the floor alone


BUILT = ROOT / ".cache" / "realphotos"


@pytest.mark.skipif(not (BUILT / "tux-tucan.png").is_file(), reason="real-photo benchmark not built: make realphotos")
def test_weakly_detected_animals_of_the_benchmark_are_tagged():
    """FIT-half pictures the detector alone misses (tucan 0.43, bear 0.24 at 384 px) but the classifier
    names: the default tagger tags the bird and the bear and shows their boxes."""
    from autotag.encoders.detector_setup import detector_onnx_path
    from autotag.pipeline import Tagger

    if not detector_onnx_path().is_file():
        pytest.skip("the object detector is not set up: run `make setup` (needs npm)")
    tucan, bear = Tagger.load().stream([BUILT / "tux-tucan.png", BUILT / "tux-bear.png"])
    assert max(d.score for d in tucan.detections if d.label == "bird") < 0.5  # the detector alone: no tag
    assert "bird" in {t.name for t in tucan.tags} and "bird" in {o.label for o in tucan.objects}
    assert "bear" in {t.name for t in bear.tags} and "bear" in {o.label for o in bear.objects}


def test_confirmed_by_names_imagenet_labels_for_a_coco_class(tmp_path):
    from autotag.taxonomy.consumer import load_consumer
    from autotag.types import AutotagError

    vocab = default_consumer()
    assert vocab.object_support(probs_on("soccer ball", 0.7), "sports ball") == pytest.approx(0.7, abs=0.01)
    assert vocab.object_support(probs_on("basketball", 0.7), "sports ball") == pytest.approx(0.7, abs=0.01)
    assert vocab.object_support(probs_on("soccer ball", 0.7), "frisbee") == 0.0
    shipped = (ROOT / "src" / "autotag" / "taxonomy" / "consumer.toml").read_text()
    line = next(x for x in shipped.splitlines() if x.startswith('"sports ball"'))
    for bad, why in (('confirmed_by = ["footbal"]', "no ImageNet label"), ("confirmed_by = 3", "must be a list")):
        broken = tmp_path / "broken.toml"
        broken.write_text(shipped.replace(line, '"sports ball" = {label = "ball", ' + bad + "}"))
        with pytest.raises(AutotagError, match=why):
            load_consumer(broken)


def test_an_object_the_classifier_alone_is_sure_of_is_named_without_a_box():
    from autotag.api.app import ObjectOut
    from autotag.pipeline.decide import photo_params
    from autotag.read.style import Style

    clock = probs_on("clock", 0.8)  # a wall clock the detector did not find
    facet = named_objects([Detection("cup", 0.45, BOX)], clock)
    assert [(o.name, o.box, o.source) for o in facet] == [("cup", BOX, "detector"), ("clock", None, "classifier")]
    record = facet[1].to_dict()
    assert record == {"name": "clock", "label": "clock", "score": pytest.approx(0.8, abs=0.01), "box": None,
                      "source": "classifier"}  # fmt: skip
    assert "source" not in facet[0].to_dict()  # a detector's box reads as before
    assert ObjectOut(**record).box is None and ObjectOut(**facet[0].to_dict()).source == "detector"
    # a box of the same class wins: the object is named once, where it is
    assert [o.source for o in named_objects([Detection("clock", 0.45, BOX)], clock)] == ["detector"]
    assert named_objects([], probs_on("clock", 0.4)) == []  # not sure enough
    assert "clock" in {t.name for t in consumer_tags(clock, [])}  # and it is a tag
    # art: the classifier (trained on photos) names nothing alone, neither in the facet nor as a tag
    art = photo_params(Style("art", "illustration", 0.9, 0.9))
    assert named_objects([], clock, art) == []
    assert not [t for t in consumer_tags(clock, [], params=art) if t.kind == "object"]
    assert photo_params(Style("photo", "photo", 0.9, 1.0)).objects_classifier_min <= 1.0


def test_the_library_keeps_objects_without_a_box_and_upgrades_old_boxes(tmp_path):
    import sqlalchemy as sa

    from autotag.store import open_store
    from autotag.store.engine import resolve_url
    from autotag.store.migrations import apply_migrations

    db = tmp_path / "lib.db"
    engine = sa.create_engine(resolve_url(str(db), tmp_path))
    assert apply_migrations(engine, upto=6) == 6  # a library from before objects could lack a box
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO images (content_hash, source, added_at) VALUES ('ab', '/a', '2026-01-01')"))
        conn.execute(sa.text("INSERT INTO image_facets (image_id) VALUES (1)"))
        conn.execute(sa.text("INSERT INTO image_objects VALUES (1, 0, 'cup', 'cup', 0.7, 1, 2, 3, 4)"))
    engine.dispose()
    facets = {"objects": [Detection("sports ball", 0.69, None, "ball", "classifier").to_dict(),
                          Detection("cup", 0.5, BOX, "cup").to_dict()]}  # fmt: skip
    with open_store(str(db)) as lib:
        assert lib.facets(1).objects == [{"name": "cup", "label": "cup", "score": 0.7, "box": [1, 2, 3, 4]}]
        lib.set_facets(1, "m", facets)
        assert lib.facets(1).objects == facets["objects"]
        assert lib.integrity_problems() == []


@pytest.mark.skipif(not (BUILT / "tux-soccer.png").is_file(), reason="real-photo benchmark not built: make realphotos")
def test_a_real_photo_whose_object_only_the_classifier_sees_and_a_drawing():
    """FIT-half pictures: a soccer ball the detector scores 0.08 (a donut at 0.43) that the classifier
    calls a soccer ball gets "ball" in the objects facet without a box and as a tag; a drawn horse the
    classifier calls a dog (0.72) gets no dog: the style head calls it an illustration."""
    from autotag.encoders.detector_setup import detector_onnx_path
    from autotag.pipeline import Tagger

    if not detector_onnx_path().is_file():
        pytest.skip("the object detector is not set up: run `make setup` (needs npm)")
    soccer, horse = Tagger.load().stream([BUILT / "tux-soccer.png", BUILT / "sk-horse.png"])
    assert not [d for d in soccer.detections if d.label == "sports ball" and d.score >= 0.2]
    ball = [o for o in soccer.objects if o.name == "ball"]
    assert [(o.box, o.source) for o in ball] == [(None, "classifier")] and "ball" in {t.name for t in soccer.tags}
    assert soccer.to_dict()["object_counts"]["ball"] == 1
    assert horse.style.kind == "art" and not [o for o in horse.objects if o.source == "classifier"]
    assert "dog" not in {o.name for o in horse.objects}
