"""Learning from corrections: thresholds re-fitted from stored feedback, recorded as a new version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from autotag.cli import app
from autotag.refit import fit_threshold, read_thresholds, refit_model
from autotag.store import open_store
from autotag.types import AutotagError, Tag

LABELS = ["cat", "dog", "car"]


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory) -> Path:
    """A real model folder (small heads over random 1280-d embeddings), every threshold 0.3."""
    from autotag.artifact import save_model
    from autotag.heads.estimators import CompositeTagger

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 1280)).astype(np.float32)
    Y = (rng.random((60, 3)) < 0.4).astype(np.uint8)
    estimator = CompositeTagger(labels=LABELS, visual_hidden=16, count_hidden=8, use_user_tags=False, epochs=2)
    estimator.fit(X[:40], Y[:40], None, val=(X[40:], Y[40:], None))
    encoder = {"name": "efficientnet_lite0", "input_size": 224, "pool_grid": 1, "embedding_dim": 1280}
    return save_model(tmp_path_factory.mktemp("trained") / "pets", estimator, encoder=encoder,
                      decision={"rule": "top-k-predicted", "k": 3, "floor": 0.1}, thresholds=[0.3] * 3)


@pytest.fixture
def make_model(trained_folder):
    def make(folder: Path) -> Path:
        shutil.copytree(trained_folder, folder)
        return folder

    return make


@pytest.fixture
def judged_library(tmp_path, make_model):
    """60 images tagged by model 'pets'; people accept 'cat' only above 0.7, accept every 'dog',
    and judged 'car' twice (too little to act on)."""
    model = make_model(tmp_path / "runs" / "pets")
    lib = open_store(str(tmp_path / "library.db"))
    lib.register_model("pets", model)
    rng = np.random.default_rng(0)
    for i in range(60):
        cat, dog = rng.uniform(0.3, 1.0, size=2)
        tags = [Tag("cat", float(cat), "cat", "label"), Tag("dog", float(dog), "dog", "label")]
        if i < 2:
            tags.append(Tag("car", 0.9, "car", "label"))
        image_id, _ = lib.ingest(f"{i:064x}", f"/img/{i}.jpg", model="pets", tags=tags)
        lib.add_feedback(image_id, "cat", "accepted" if cat > 0.7 else "rejected", who="ana")
        lib.add_feedback(image_id, "dog", "accepted")
        if i < 2:
            lib.add_feedback(image_id, "car", "rejected")
    lib.add_feedback(image_id, "sofa", "added")  # no score: counted as not usable
    yield lib, model
    lib.close()


def test_refit_raises_cat_threshold_and_records_a_new_version(judged_library):
    lib, model = judged_library
    original = (model / "thresholds.json").read_text()
    report = refit_model(lib, "pets")
    changes = {c.tag: c for c in report.changes}
    cat_scores = [f.score for f in lib.feedback(tag="cat", action="accepted")]
    assert changes["cat"].new_threshold == pytest.approx(min(cat_scores))  # the lowest accepted cat
    assert changes["cat"].precision_before < 0.6 and changes["cat"].precision_after == 1.0
    assert changes["dog"].new_threshold == 0.3  # nothing rejected: unchanged
    assert changes["car"].new_threshold == 0.3 and changes["car"].rejected == 2  # below --min-feedback
    assert report.precision_after > report.precision_before and report.recall_after == 1.0
    assert report.feedback_used == 122 and report.feedback_skipped == 1

    # Old version kept untouched, new folder registered and active.
    assert (model / "thresholds.json").read_text() == original
    new = Path(report.new_path)
    assert new == model.parent / "pets-v2" and report.new_version == 2
    assert (new / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()
    assert read_thresholds(new)["cat"] == changes["cat"].new_threshold
    assert json.loads((new / "refit.json").read_text())["new_version"] == 2
    versions = lib.list_models("pets")
    assert [(m.version, m.active) for m in versions] == [(1, False), (2, True)]
    assert versions[1].config["refit_from_version"] == 1

    # A second refit starts from version 2: nothing left to fix, and version 3 appears beside it.
    again = refit_model(lib, "pets")
    cat_again = next(c for c in again.changes if c.tag == "cat")
    assert again.old_version == 2 and again.new_version == 3
    assert cat_again.precision_before == 1.0 and cat_again.new_threshold == cat_again.old_threshold
    assert Path(again.new_path).name == "pets-v3" and (model.parent / "pets-v2").is_dir()


def test_cli_refit_by_folder_with_dry_run(judged_library, tmp_path):
    lib, model = judged_library
    db = str(tmp_path / "library.db")
    dry = CliRunner().invoke(app, ["refit", "--model", str(model), "--db", db, "--dry-run", "--format", "json"])
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout)[0]
    assert report["new_version"] is None and not (model.parent / "pets-v2").exists()
    real = CliRunner().invoke(app, ["refit", "--model", str(model), "--db", db, "--format", "csv"])
    assert real.exit_code == 0, real.output
    assert real.stdout.splitlines()[0].startswith("tag,accepted,rejected,old_threshold,new_threshold")
    assert "version 2 recorded" in real.stderr and (model.parent / "pets-v2" / "thresholds.json").is_file()


def test_refit_errors_are_one_clear_line(tmp_path, make_model):
    with open_store(str(tmp_path / "lib.db")) as lib:
        with pytest.raises(AutotagError, match="no model 'nope' in the library"):
            refit_model(lib, "nope")
        model = make_model(tmp_path / "fresh")
        with pytest.raises(AutotagError, match="no usable feedback"):
            refit_model(lib, str(model))
        with pytest.raises(AutotagError, match="not a trained model folder"):
            refit_model(lib, str(tmp_path))


def test_fit_threshold_rules():
    scores = np.array([0.35, 0.4, 0.5, 0.6, 0.8, 0.9])
    accepted = np.array([False, True, False, True, True, True])
    assert fit_threshold(scores, accepted, old=0.3) == 0.4  # F1 keeps the lone early positive
    assert fit_threshold(scores, accepted, old=0.3, beta=0.25) == 0.6  # precision-leaning drops it
    assert fit_threshold(scores, np.zeros(6, bool), old=0.3) > 0.9  # all rejected: above every score
    assert fit_threshold(scores, np.ones(6, bool), old=0.3) == 0.3  # all accepted: unchanged


def test_refit_of_a_trained_model_folder_loads_and_decides_by_the_new_thresholds(tmp_path):
    """End to end with a real model folder (autotag.artifact): the new version loads, and with
    --use-thresholds decides by the per-label thresholds learnt from feedback."""
    from autotag.artifact import load_model, save_model
    from autotag.heads.estimators import CompositeTagger

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 1280)).astype(np.float32)
    Y = (rng.random((60, 3)) < 0.4).astype(np.uint8)
    estimator = CompositeTagger(labels=LABELS, visual_hidden=16, count_hidden=8, use_user_tags=False, epochs=2)
    estimator.fit(X[:40], Y[:40], None, val=(X[40:], Y[40:], None))
    encoder = {"name": "efficientnet_lite0", "input_size": 224, "pool_grid": 1, "embedding_dim": 1280}
    folder = save_model(tmp_path / "runs" / "pets", estimator, encoder=encoder,
                        decision={"rule": "top-k-predicted", "k": 3, "floor": 0.1}, thresholds=[0.0] * 3)  # fmt: skip
    model = load_model(folder)
    scores = model.predict_scores(X)
    cut = float(np.median(scores[:, 0]))  # people accept 'cat' only on the upper half of its scores
    with open_store(str(tmp_path / "lib.db")) as lib:
        lib.register_model("pets", folder)
        for i, row in enumerate(scores):
            tags = [Tag(label, float(s), label, "label") for label, s in zip(LABELS, row, strict=True)]
            image_id, _ = lib.ingest(f"{i:064x}", f"/img/{i}.jpg", model="pets", tags=tags)
            lib.add_feedback(image_id, "cat", "accepted" if row[0] >= cut else "rejected")
            lib.add_feedback(image_id, "dog", "accepted")
        report = refit_model(lib, "pets", use_thresholds=True)
    assert (report.rule_before, report.rule_after) == ("top-k-predicted", "per-label")
    new = load_model(report.new_path)
    assert (
        new.config["decision"]["rule"] == "per-label"
        and load_model(folder).config["decision"]["rule"] == "top-k-predicted"
    )
    assert new.thresholds[0] == pytest.approx(scores[scores[:, 0] >= cut, 0].min())
    assert list(new.thresholds[1:]) == [0.0, 0.0]
    given_cat = np.array(["cat" in {t.name for t in tags} for tags in new.decide(scores)])
    assert np.array_equal(given_cat, scores[:, 0] >= cut)
