"""One Registry type for every user-chosen name: an unknown name is one error listing the valid ones."""

from __future__ import annotations

import sys

import pytest

from autotag.registry import Registry
from autotag.types import AutotagError


def test_register_get_names_and_unknown_names():
    colours: Registry[str] = Registry("colour")

    @colours.register("red")
    def red() -> str:
        return "#f00"

    colours.register("blue", "#00f")
    assert colours.names() == ["blue", "red"] and list(colours) == ["blue", "red"] and len(colours) == 2
    assert colours.get("red") is red and colours.get("blue") == "#00f" and "red" in colours
    assert colours.check("blue") == "blue" and "green" not in colours
    with pytest.raises(AutotagError) as err:
        colours.get("green")
    assert str(err.value) == "unknown colour 'green'; valid: blue, red"
    with pytest.raises(ValueError, match="colour 'red' is registered twice"):
        colours.register("red", "#e00")
    with pytest.raises(AutotagError, match="unknown colour 'x'; valid: none"):
        Registry("colour").get("x")


def test_plugins_are_imported_on_the_first_lookup_only(tmp_path, monkeypatch):
    """A plugin imports the module holding the registry; that module names the plugin only as a string."""
    (tmp_path / "shades_home.py").write_text(
        "from autotag.registry import Registry\nSHADES = Registry('shade', plugins=('shades_plugin',))\n")
    (tmp_path / "shades_plugin.py").write_text("from shades_home import SHADES\nSHADES.register('teal', '#088')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import shades_home

    try:
        assert "shades_plugin" not in sys.modules
        assert shades_home.SHADES.get("teal") == "#088" and "shades_plugin" in sys.modules
    finally:
        sys.modules.pop("shades_home", None)
        sys.modules.pop("shades_plugin", None)


def _registries():
    """Every registry of user-chosen names, with the names it must hold."""
    from autotag.data.base import READERS
    from autotag.decide import OBJECTIVES, RULES
    from autotag.distributed.runner import ENGINES
    from autotag.encoders import ENCODERS
    from autotag.heads.losses import LOSSES
    from autotag.heads.training import SCHEDULES
    from autotag.index.learned import RETRIEVAL_LOSSES
    from autotag.index.vector import INDEX_KINDS
    from autotag.train.finetune import FINETUNE_SCHEDULES

    return [
        (ENCODERS, "encoder", {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                               "efficientnet_lite0-int8"}),
        (RULES, "decision rule", {"threshold", "per-label", "top-k", "argmax", "top-k-predicted",
                                  "predicted-k-floor", "oracle-k"}),
        (OBJECTIVES, "threshold objective", {"f1", "precision"}),
        (LOSSES, "loss", {"bce", "focal", "asl"}),
        (SCHEDULES, "schedule", {"cosine", "step", "constant"}),
        (FINETUNE_SCHEDULES, "fine-tune schedule", {"onecycle", "cosine", "step"}),
        (RETRIEVAL_LOSSES, "retrieval loss", {"supcon", "triplet", "contrastive"}),
        (INDEX_KINDS, "index kind", {"exact", "hnsw", "ivfpq"}),
        (ENGINES, "engine", {"local", "ray"}),
        (READERS, "dataset reader", {"manifest", "folder", "coco", "nus-wide", "danbooru", "fashion-mnist",
                                     "fashion-mosaic", "realphotos"}),
    ]


def test_every_registry_holds_its_names_and_lists_them_for_an_unknown_one():
    import autotag.data  # noqa: F401  (registers the dataset readers)

    for registry, kind, expected in _registries():
        assert expected <= set(registry.names()), kind  # other work may register more names
        with pytest.raises(AutotagError) as err:
            registry.get("no-such-name")
        assert str(err.value) == f"unknown {kind} 'no-such-name'; valid: {', '.join(registry.names())}"
        assert registry.names() == sorted(registry.names())


def test_user_facing_checks_answer_with_the_valid_names():
    from autotag.encoders import create_encoder
    from autotag.heads.training import StageConfig, train_stage
    from autotag.index.vector import VectorIndex
    from autotag.train.finetune import lr_factor

    with pytest.raises(AutotagError, match="unknown encoder 'resnet9000'; valid: efficientnet_lite0, "):
        create_encoder("resnet9000")
    with pytest.raises(AutotagError, match="unknown index kind 'annoy'; valid: auto, exact, hnsw, ivfpq"):
        VectorIndex(8, "annoy")
    with pytest.raises(AutotagError, match="unknown fine-tune schedule 'linear'; valid: cosine, onecycle, step"):
        lr_factor("linear", 0.5, 0.1)
    with pytest.raises(AutotagError, match="unknown schedule 'linear'; valid: constant, cosine, step"):
        train_stage([], None, None, [], None, None, None, StageConfig(schedule="linear"))


def test_schedules_keep_their_shape():
    from autotag.heads.training import SCHEDULES
    from autotag.train.finetune import lr_factor

    assert SCHEDULES.get("cosine")(0, 10) == 1.0 and SCHEDULES.get("cosine")(10, 10) == pytest.approx(0.0)
    assert SCHEDULES.get("step")(4, 10) == pytest.approx(0.1) and SCHEDULES.get("constant")(7, 10) == 1.0
    assert lr_factor("onecycle", 0.0, 0.1) == pytest.approx(0.05) and lr_factor("cosine", 0.0, 0.1) == 0.0
    assert lr_factor("onecycle", 1.0, 0.1) == pytest.approx(1 / 4000) and lr_factor("cosine", 0.1, 0.1) == 1.0
    assert lr_factor("step", 0.5, 0.1) == pytest.approx(0.1) and lr_factor("step", 0.99, 0.1) == pytest.approx(0.01)
