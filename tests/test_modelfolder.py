"""One model-folder type: what it writes reads back unchanged, and the model loader, the threshold refit
and the label mapping refuse exactly the same malformed folders (refit used to accept shapes the loader
rejected, and registered them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from autotag.modelfolder import FORMAT, FORMAT_VERSION, ModelFolder
from autotag.types import AutotagError

LABELS = ["cat", "dog", "car"]


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory) -> Path:
    from autotag.artifact import save_model
    from autotag.heads.estimators import CompositeTagger

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 1280)).astype(np.float32)
    Y = (rng.random((40, 3)) < 0.4).astype(np.uint8)
    estimator = CompositeTagger(labels=LABELS, visual_hidden=8, count_hidden=4, use_user_tags=False, epochs=1)
    estimator.fit(X[:30], Y[:30], None, val=(X[30:], Y[30:], None))
    encoder = {"name": "efficientnet_lite0", "input_size": 224, "pool_grid": 1, "embedding_dim": 1280}
    thresholds = [0.1 + 1e-12, 0.2, 0.3]  # full precision survives the round trip
    return save_model(tmp_path_factory.mktemp("m") / "pets", estimator, encoder=encoder,
                      decision={"rule": "top-k-predicted", "k": 3}, thresholds=thresholds, global_threshold=0.4)


def test_round_trip_through_the_folder_type(trained_folder, tmp_path):
    from autotag.artifact import load_model

    folder = ModelFolder(trained_folder)
    config = folder.config()
    assert config["format"] == FORMAT and config["version"] == FORMAT_VERSION
    assert config["decision"] == {"rule": "top-k-predicted", "k": 3}
    assert folder.labels() == LABELS == folder.check()
    values, global_threshold = folder.thresholds()
    assert values.tolist() == [0.1 + 1e-12, 0.2, 0.3] and global_threshold == 0.4
    model = load_model(trained_folder)
    assert model.labels == LABELS and model.thresholds.tolist() == values.tolist()

    # rewriting from what was read gives a folder the loader reads the same
    copy = ModelFolder(tmp_path / "copy").write(
        config={k: v for k, v in config.items() if k not in ("format", "version", "created")},
        labels=folder.labels(), tensors=folder.weights(), thresholds=values, global_threshold=global_threshold)
    again = load_model(copy.path)
    X = np.random.default_rng(1).normal(size=(5, 1280)).astype(np.float32)
    np.testing.assert_array_equal(again.predict_scores(X), model.predict_scores(X))
    copy.write_thresholds(LABELS, [0.5, 0.6, 0.7])
    copy.set_decision(rule="per-label")
    assert copy.thresholds()[0].tolist() == [0.5, 0.6, 0.7] and copy.thresholds()[1] == 0.4
    assert load_model(copy.path).config["decision"] == {"rule": "per-label", "k": 3}
    with pytest.raises(AutotagError, match="2 thresholds for 3 labels"):
        copy.write_thresholds(LABELS, [0.5, 0.6])
    with pytest.raises(AutotagError, match=r"unknown decision keys \['colour'\]"):
        copy.set_decision(colour="red")
    with pytest.raises(AutotagError, match=r"unknown model config keys \['surprise'\]"):
        ModelFolder(tmp_path / "never").write(config={"surprise": 1}, labels=[], tensors={}, thresholds=[],
                                              global_threshold=0.5)
    assert not (tmp_path / "never").exists()  # refused before anything was written


def _write(name: str, doc) -> callable:
    return lambda folder: (folder / name).write_text(json.dumps(doc))


MALFORMED = {
    # the shapes refit used to accept and the loader rejected
    "plain thresholds": (_write("thresholds.json", {label: 0.3 for label in LABELS}), r"is not \{\"global\""),
    "labels in a dict": (_write("labels.json", {"labels": LABELS}), "does not match the labels the model was trained"),
    "config of another program": (_write("config.json", {"encoder": "efficientnet_lite0"}),
                                  "is not an autotag model config"),
    # and the others the loader always refused
    "labels one short": (_write("labels.json", LABELS[:-1]), r"\(2 labels\) does not match .* \(3\)"),
    "labels reordered": (_write("labels.json", LABELS[::-1]), "does not match the labels the model was trained"),
    "no config": (lambda folder: (folder / "config.json").unlink(), "is not a trained model folder"),
    "thresholds for other labels": (_write("thresholds.json", {"global": 0.5, "per_label": {"x": 1}}),
                                    "lacks thresholds for"),
    "no weights": (lambda folder: (folder / "model.safetensors").unlink(), "has no model.safetensors"),
}


READ_BY_THE_MAPPING = {"labels in a dict", "config of another program", "labels one short", "labels reordered",
                       "no config"}  # the mapping reads config.json and labels.json only


@pytest.mark.parametrize("case", list(MALFORMED))
def test_loader_refit_and_mapping_refuse_the_same_folders(case, trained_folder, tmp_path):
    from autotag.artifact import load_model
    from autotag.refit import refit_model
    from autotag.store import open_store
    from autotag.taxonomy.mapping import source_labels

    folder = tmp_path / "pets"
    shutil.copytree(trained_folder, folder)
    assert [s.name for s in source_labels(folder)] == LABELS
    mutate, message = MALFORMED[case]
    mutate(folder)
    with pytest.raises(AutotagError, match=message):
        load_model(folder)
    with open_store(str(tmp_path / "lib.db")) as lib:
        with pytest.raises(AutotagError, match=message):
            refit_model(lib, str(folder))
        assert lib.list_models() == []  # refused before registering anything
    if case in READ_BY_THE_MAPPING:
        with pytest.raises(AutotagError, match=message):
            source_labels(folder)


def test_a_missing_folder_is_one_line(tmp_path):
    from autotag.artifact import load_model

    with pytest.raises(AutotagError, match="does not exist; train one with: autotag train"):
        load_model(tmp_path / "nope")
