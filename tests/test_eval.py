"""Evaluation end to end with the real default model: small Fashion-MNIST, FashionMosaic and bundled photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from autotag.cli import app
from autotag.data import load_dataset, write_fashion_mosaic
from autotag.evaluate import FASHION_TO_IMAGENET, evaluate, imagenet_label_mapping
from autotag.report import write_report
from autotag.types import AutotagError


def test_fashion_label_mapping_points_at_real_imagenet_classes():
    from autotag.taxonomy.imagenet import imagenet_hierarchy

    h = imagenet_hierarchy()
    names = {wnid: name for wnid, name in zip(h.class_ids, h.class_names, strict=True)}
    assert names[FASHION_TO_IMAGENET["sandal"][0]] == "sandal"
    assert names[FASHION_TO_IMAGENET["t-shirt"][0]] == "T-shirt"
    assert names[FASHION_TO_IMAGENET["trouser"][0]] == "jeans"
    matrix, unmapped = imagenet_label_mapping(list(FASHION_TO_IMAGENET) + ["dog", "no-such-thing"])
    assert unmapped == ["no-such-thing"]
    assert (matrix[:, :10].sum(0) >= 1).all() and matrix[:, :10].max(1).sum() == matrix[:, :10].sum()  # disjoint
    assert matrix[:, 10].sum() > 100  # "dog" is a WordNet ancestor of the ~120 breeds


@pytest.fixture(scope="module")
def fashion_test_60(fashion_mnist_dir):
    return load_dataset(f"fashion-mnist:{fashion_mnist_dir}", limit=60).split("test")


def test_default_model_on_fashion_mnist_single_label(fashion_test_60, tmp_path):
    result = evaluate(fashion_test_60, ["default"], cache=True)
    assert [r.rule for r in result.runs] == ["argmax"] and result.info["n_evaluated"] == 60
    m = result.runs[0].metrics
    # the ImageNet model through the mapping is far from good on 28 px garments, but far above chance
    assert m["accuracy"] > 0.2 and m["top5-accuracy"] > m["accuracy"]
    assert m["accuracy"] == pytest.approx(m["O-P"])  # one prediction per image: accuracy = overall precision
    assert np.asarray(m["confusion"]).sum() == 60
    out = write_report(result, tmp_path / "report")
    for name in ("metrics.json", "report.md", "per_class_f1.png", "pr_curves.png", "confusion.png",
                 "reliability.png", "gallery.png"):  # fmt: skip
        assert (out / name).stat().st_size > 500, name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["runs"][0]["metrics"]["accuracy"] == pytest.approx(m["accuracy"])
    assert "| default | argmax |" in (out / "report.md").read_text()
    # the second evaluation reads logits and embeddings back from the cache and agrees exactly
    again = evaluate(fashion_test_60, ["default"], cache=True)
    np.testing.assert_allclose(again.runs[0].scores, result.runs[0].scores, atol=1e-6)


def test_mosaic_rules_compared_in_one_table(tmp_path, fashion_mnist_dir):
    folder = write_fashion_mosaic(tmp_path / "mosaic", 0, 0, 24, seed=1)
    data = load_dataset(f"fashion-mosaic:{folder}").split("test")
    result = evaluate(data, ["default"], ["threshold:0.3", "top-k:2", "oracle-k"], cache=False)
    table = result.table()
    assert [row["rule"] for row in table] == ["threshold:0.3", "top-k:2", "oracle-k"]
    by_rule = {r.rule: r.metrics for r in result.runs}
    assert by_rule["oracle-k"]["count-accuracy"] == 1.0  # k is the true count by construction
    assert by_rule["top-k:2"]["mean-predicted-count"] == 2.0
    assert all(0 <= row["H-F1"] <= 1 for row in table)
    out = write_report(result, tmp_path / "rep", gallery_size=6)
    assert (out / "label_counts.png").is_file() and not (out / "confusion.png").exists()
    assert len(json.loads((out / "metrics.json").read_text())["runs"]) == 3


def test_photo_manifest_with_a_broken_file(tmp_path, photos):
    rows = [
        {"path": str(photos["chelsea"]), "labels": ["cat"]},
        {"path": str(photos["coffee"]), "labels": ["espresso"]},
        {"path": str(photos["rocket"]), "labels": ["space shuttle"]},
    ]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    rows.append({"path": str(broken), "labels": ["cat"]})
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_dataset(str(tmp_path / "m.jsonl"))
    result = evaluate(data, ["default"], ["argmax"], cache=False)
    assert result.info["n_failed"] == 1 and str(broken) in result.errors
    assert len(result.dataset) == 3
    assert result.runs[0].metrics["accuracy"] == 1.0  # cat, espresso and shuttle are ImageNet's own concepts
    with pytest.raises(AutotagError, match="unknown decision rule 'best'.*threshold:T"):
        evaluate(data, ["default"], ["best"])
    with pytest.raises(AutotagError, match="'model' needs a trained model"):
        evaluate(data, ["default"], ["model"], cache=False)


def test_cli_eval_embed_and_mosaic(tmp_path, photos):
    runner = CliRunner()
    res = runner.invoke(app, ["mosaic", "--out", str(tmp_path / "fm"), "--train", "4", "--val", "2", "--test", "6"])
    if res.exit_code != 0 and "Fashion-MNIST" in res.output:
        pytest.skip("Fashion-MNIST missing")
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "fm" / "manifest.jsonl").read_text().splitlines()) == 12

    (tmp_path / "photos.csv").write_text(f"path,labels\n{photos['chelsea']},cat\n{photos['coffee']},espresso\n")
    args = ["eval", "--dataset", str(tmp_path / "photos.csv"), "--split", "all", "--rule", "argmax",
            "--rule", "top-k:2", "--out", str(tmp_path / "rep"), "--format", "jsonl"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert [r["rule"] for r in rows] == ["argmax", "top-k:2"] and rows[0]["accuracy"] == 1.0
    assert (tmp_path / "rep" / "gallery.png").is_file()

    res = runner.invoke(app, ["eval", "--dataset", str(tmp_path / "photos.csv"), "--split", "all", "--rule", "best"])
    assert res.exit_code == 2 and "unknown decision rule" in res.output

    for expected_cached in (None, 2):
        res = runner.invoke(app, ["embed", str(tmp_path / "photos.csv"), "--format", "json"])
        assert res.exit_code == 0, res.output
        summary = json.loads(res.stdout[res.stdout.index("[") :])[0]
        assert summary["images"] == 2 and summary["failed"] == 0
        if expected_cached is not None:
            assert summary["from_cache"] == expected_cached and summary["encoded"] == 0


def test_trained_model_columns_follow_the_dataset_labels(tmp_path, fashion_mnist_dir):
    from autotag.artifact import load_model, save_model
    from autotag.evaluate import encode_records
    from autotag.heads.estimators import CompositeTagger
    from autotag.pipeline import Tagger

    folder = write_fashion_mosaic(tmp_path / "mosaic", 60, 20, 16, seed=2)
    data = load_dataset(f"fashion-mosaic:{folder}")
    train, val, test = data.split("train"), data.split("val"), data.split("test")
    reversed_labels = data.labels[::-1]  # the model's column order differs from the dataset's
    tagger = Tagger.load()
    emb_train = encode_records(tagger, train.sources).embeddings
    emb_val = encode_records(tagger, val.sources).embeddings
    model = CompositeTagger(labels=reversed_labels, epochs=3, visual_hidden=32, tag_hidden=16, min_tag_count=1)
    model.fit(emb_train, train.label_matrix(reversed_labels), [r.user_tags for r in train.records],
              val=(emb_val, val.label_matrix(reversed_labels), [r.user_tags for r in val.records]))  # fmt: skip
    save_model(tmp_path / "run", model, encoder={"name": "efficientnet_lite0"}, decision={"rule": "top-k-predicted"})

    result = evaluate(test, [str(tmp_path / "run")], ["model", "top-k-predicted", "threshold:0.5"])
    assert [r.rule for r in result.runs] == ["model", "top-k-predicted", "threshold:0.5"]
    np.testing.assert_array_equal(result.runs[0].y_pred, result.runs[1].y_pred)  # the stored rule is top-k-predicted
    trained = load_model(tmp_path / "run")
    emb_test = encode_records(tagger, test.sources)
    direct = trained.predict_scores(emb_test.embeddings, emb_test.logits, [r.user_tags for r in test.records])
    np.testing.assert_allclose(result.runs[0].scores, np.asarray(direct)[:, ::-1], atol=1e-5)
