"""Objects the decisions count: a detection from detection_min on, or a weaker one the classifier confirms."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from autotag.pipeline.decide import named_objects
from autotag.taxonomy.consumer import default_consumer
from autotag.taxonomy.decisions import ConsumerParams, consumer_tags, evidence
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
        return evidence(p, dets, vocab, params.detection_min, confirm_min=params.confirm_min,
                        confirm_support=params.confirm_support).objects  # fmt: skip

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
