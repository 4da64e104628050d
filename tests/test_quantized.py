"""The INT8 encoder: registered, tags a real cat photo as a cat, stays close to the float embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from autotag.encoders import list_encoders
from autotag.pipeline import Tagger

CAT_WORDS = ("cat", "feline", "tabby", "kitten")


@pytest.fixture(scope="module")
def taggers() -> tuple[Tagger, Tagger]:
    return Tagger.load("efficientnet_lite0"), Tagger.load("efficientnet_lite0-int8")


def test_int8_is_registered_and_opt_in() -> None:
    from autotag.config import Settings

    assert "efficientnet_lite0-int8" in list_encoders()
    assert Settings().model == "efficientnet_lite0"  # INT8 missed the bar to be the default (BENCHMARKS.md)


def test_int8_tags_the_cat_as_a_cat(taggers, photos) -> None:
    _, int8 = taggers
    names = [t.name for t in int8.tag(photos["chelsea"])][:5]
    assert any(word in name for name in names for word in CAT_WORDS), names
    assert int8.encoder.spec.name == "efficientnet_lite0-int8"


def test_int8_embeddings_stay_close_to_float(taggers, photos) -> None:
    float_tagger, int8 = taggers
    paths = list(photos.values())
    a, b = float_tagger.embed(paths), int8.embed(paths)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine[list(photos).index("chelsea")] > 0.97
    assert cosine.min() > 0.9 and cosine.mean() > 0.95, cosine
    assert not np.allclose(a, b)  # really a different (quantised) graph
