"""Metrics: agreement with scikit-learn on random data, edge cases, published-table arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from autotag import metrics as M


def _random_multilabel(seed: int, n: int = 300, n_labels: int = 12):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((n, n_labels)) < rng.uniform(0.05, 0.4, n_labels)).astype(np.uint8)
    # scores correlated with the truth, with ties (rounding) to exercise the threshold handling
    scores = np.round(np.clip(0.35 * y_true + rng.random((n, n_labels)) * 0.8, 0, 1), 2)
    y_pred = M.threshold_indicator(scores, 0.5)
    return y_true, y_pred, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_report_agrees_with_sklearn(seed):
    from sklearn import metrics as skm

    y_true, y_pred, scores = _random_multilabel(seed)
    rep = M.multilabel_report(y_true, y_pred, scores)
    kw = {"zero_division": 0}
    assert rep["O-P"] == pytest.approx(skm.precision_score(y_true, y_pred, average="micro", **kw))
    assert rep["O-R"] == pytest.approx(skm.recall_score(y_true, y_pred, average="micro", **kw))
    assert rep["micro-F1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="micro", **kw))
    assert rep["C-P"] == pytest.approx(skm.precision_score(y_true, y_pred, average="macro", **kw))
    assert rep["C-R"] == pytest.approx(skm.recall_score(y_true, y_pred, average="macro", **kw))
    assert rep["macro-F1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", **kw))
    assert rep["hamming-loss"] == pytest.approx(skm.hamming_loss(y_true, y_pred))
    assert rep["exact-match"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    per_class_ap = [c["ap"] for c in rep["per_class"]]
    expected_ap = [skm.average_precision_score(y_true[:, j], scores[:, j]) for j in range(y_true.shape[1])]
    np.testing.assert_allclose(per_class_ap, expected_ap, rtol=1e-12)
    assert rep["mAP"] == pytest.approx(skm.average_precision_score(y_true, scores, average="macro"))
    # C-F1 is the harmonic mean of C-P and C-R, which differs from the mean of per-class F1
    assert rep["C-F1"] == pytest.approx(2 * rep["C-P"] * rep["C-R"] / (rep["C-P"] + rep["C-R"]))
    assert rep["C-F1"] != pytest.approx(rep["macro-F1"], abs=1e-6)
    assert rep["H-F1"] == pytest.approx(2 * rep["C-F1"] * rep["O-F1"] / (rep["C-F1"] + rep["O-F1"]))


def test_precision_recall_curve_matches_sklearn():
    from sklearn.metrics import precision_recall_curve

    rng = np.random.default_rng(5)
    y = rng.random(200) < 0.3
    s = np.round(rng.random(200) + 0.3 * y, 1)
    precision, recall, thresholds = M.precision_recall_curve(y, s)
    sk_p, sk_r, sk_t = precision_recall_curve(y, s)
    # scikit-learn lists thresholds ascending and appends the (P=1, R=0) end point
    np.testing.assert_allclose(thresholds[::-1], sk_t)
    np.testing.assert_allclose(precision[::-1], sk_p[:-1])
    np.testing.assert_allclose(recall[::-1], sk_r[:-1])


def test_single_label_metrics_agree_with_sklearn():
    from sklearn import metrics as skm

    rng = np.random.default_rng(3)
    n, c = 400, 7
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    rep = M.single_label_report(y, probs)
    pred = probs.argmax(1)
    assert rep["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert rep["per-class-accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert rep["top5-accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, probs, k=5))
    np.testing.assert_array_equal(rep["confusion"], skm.confusion_matrix(y, pred, labels=range(c)))
    assert 0 < rep["ECE"] < 1


def test_edge_cases_class_never_predicted_and_image_without_labels():
    y_true = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]])
    y_pred = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1]])
    rep = M.multilabel_report(y_true, y_pred, labels=["a", "b", "c"])
    by = {c["label"]: c for c in rep["per_class"]}
    # b: has positives, never predicted -> P = R = F1 = 0, counted in the class means
    assert by["b"]["precision"] == 0 and by["b"]["recall"] == 0 and by["b"]["predicted"] == 0
    # c: no positives, one false positive -> P = 0, R = 0 by definition
    assert by["c"]["support"] == 0 and by["c"]["precision"] == 0 and by["c"]["recall"] == 0
    assert rep["C-P"] == pytest.approx(1 / 3)
    assert rep["C-R"] == pytest.approx(1 / 3)
    assert rep["O-P"] == pytest.approx(2 / 3)
    assert rep["O-R"] == pytest.approx(2 / 3)
    assert rep["classes_never_predicted"] == 1
    assert rep["classes_without_positives"] == 1
    # the empty image predicted one label: its count is wrong; image 2 also wrong (2 true, 1 predicted)
    assert rep["count-accuracy"] == pytest.approx(1 / 3)
    assert rep["count-MAE"] == pytest.approx(2 / 3)
    assert rep["mean-true-count"] == pytest.approx(1.0)


def test_edge_cases_nothing_predicted_and_ap_without_positives():
    y_true = np.array([[1, 0], [0, 0]])
    y_pred = np.zeros((2, 2), np.uint8)
    scores = np.array([[0.9, 0.2], [0.1, 0.3]])
    rep = M.multilabel_report(y_true, y_pred, scores)
    assert rep["O-P"] == 0 and rep["O-F1"] == 0 and rep["C-F1"] == 0 and rep["H-F1"] == 0
    assert rep["per_class"][1]["ap"] is None  # no positive: AP undefined, left out of mAP
    assert rep["mAP"] == pytest.approx(1.0)
    empty = M.multilabel_report(np.zeros((0, 3)), np.zeros((0, 3)))
    assert empty["n_images"] == 0 and empty["O-F1"] == 0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        M.multilabel_report(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="0 and 1"):
        M.multilabel_report(np.full((2, 2), 2), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="thresholds"):
        M.per_class_threshold_indicator(np.zeros((2, 3)), [0.5, 0.5])
    with pytest.raises(ValueError, match="probabilities"):
        M.expected_calibration_error([1.5], [1])


def test_indicator_functions():
    scores = np.array([[0.9, 0.8, 0.1, 0.8], [0.2, 0.3, 0.4, 0.1]])
    np.testing.assert_array_equal(M.threshold_indicator(scores, 0.5), [[1, 1, 0, 1], [0, 0, 0, 0]])
    # ties keep the lower column
    np.testing.assert_array_equal(M.topk_indicator(scores, 2), [[1, 1, 0, 0], [0, 1, 1, 0]])
    np.testing.assert_array_equal(M.per_image_k_indicator(scores, [1, 0]), [[1, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(M.per_image_k_indicator(scores, [9, 4]).sum(1), [4, 4])
    np.testing.assert_array_equal(
        M.per_class_threshold_indicator(scores, [0.95, 0.25, 0.0, 0.5]), [[0, 1, 1, 1], [0, 1, 1, 0]]
    )
    assert M.topk_indicator(scores, 3).sum() == 6


def test_calibration_perfect_and_overconfident():
    rng = np.random.default_rng(0)
    conf = rng.random(20000)
    hits = rng.random(20000) < conf  # calibrated by construction
    assert M.expected_calibration_error(conf, hits) < 0.02
    assert M.expected_calibration_error(np.full(1000, 0.9), np.zeros(1000)) == pytest.approx(0.9)
    bins = M.reliability_bins(conf, hits, n_bins=10)
    assert bins["count"].sum() == 20000 and len(bins["accuracy"]) == 10


# Published COCO-2014 figures, in percent, from Table 1 of Chen et al., "Multi-Label Image Recognition
# with Graph Convolutional Networks" (ML-GCN, CVPR 2019): (C-P, C-R, C-F1, O-P, O-R, O-F1).
# The table has no H-F1 column, so H-F1 is derived here from the published C-F1 and O-F1; the check
# that the table's own F1 columns are recomputed from its P and R columns (to the printed rounding)
# proves the definitions we use are the ones the literature uses (C-F1 = hm(C-P, C-R), not mean F1).
PUBLISHED_COCO = {
    "CNN-RNN (top-3)": (66.0, 55.6, 60.4, 69.2, 66.4, 67.8),
    "ResNet-101 (all)": (80.2, 66.7, 72.8, 83.9, 70.8, 76.8),
    "ML-GCN (all)": (85.1, 72.0, 78.0, 85.8, 75.4, 80.3),
}
DERIVED_H_F1 = {"CNN-RNN (top-3)": 63.89, "ResNet-101 (all)": 74.75, "ML-GCN (all)": 79.13}


@pytest.mark.parametrize("row", sorted(PUBLISHED_COCO))
def test_published_table_f1_columns_and_h_f1(row):
    cp, cr, cf1, op, orr, of1 = PUBLISHED_COCO[row]
    # P and R are printed to 0.1, so recomputed F1 may differ from the printed one by a little over 0.05
    assert M.harmonic_mean(cp, cr) == pytest.approx(cf1, abs=0.06)
    assert M.harmonic_mean(op, orr) == pytest.approx(of1, abs=0.06)
    assert M.harmonic_mean(cf1, of1) == pytest.approx(DERIVED_H_F1[row], abs=0.005)


# --------------------------------------------------------------------------------------------
# shown-tag metrics of the real-photo benchmark, checked against counts worked out by hand


def test_shown_tags_report_counts_by_hand():
    shown = [
        ["cat", "sofa", "dog"],  # right, other, wrong; hit@1
        ["leaf", "animal", "insect"],  # right, wrong, wrong
        [],  # nothing shown: no hit, not covered
        ["broom", "tool"],  # wrong, right at rank 2
    ]
    right = [["cat", "pet", "animal"], ["leaf", "plant"], ["astronaut"], ["paintbrush", "tool"]]
    wrong = [["dog"], ["animal", "insect"], ["sled"], ["broom"]]
    r = M.shown_tags_report(shown, right, wrong, k=5)
    assert r["hit@5"] == pytest.approx(3 / 4)
    assert r["precision"] == pytest.approx(3 / 8)
    assert r["coverage"] == pytest.approx(3 / 4)
    assert r["wrong-rate"] == pytest.approx(4 / 8)
    assert r["pictures-with-wrong"] == pytest.approx(3 / 4)
    assert r["other-rate"] == pytest.approx(1 / 8)
    assert "jargon-rate" not in r
    # k counts positions: the right "tool" of picture 4 sits second, so hit@1 misses it
    assert M.shown_tags_report(shown, right, wrong, k=1)["hit@1"] == pytest.approx(2 / 4)


def test_shown_tags_right_wins_over_wrong_and_case_is_ignored():
    marks = M.mark_shown_tags(["Cat", "Tabby_Cat", "x"], right=["cat", "tabby cat"], wrong=["cat", "x"])
    assert [m for m, _ in marks] == [M.RIGHT, M.RIGHT, M.WRONG]


def test_shown_tags_synonyms_and_jargon_hook():
    shown = [["tabby, tabby cat", "spermatophyte, phanerogam, seed plant", "animal, animate being, beast"]]
    allowed = ["cat", "tabby", "animal", "plant"]
    plain = M.shown_tags_report(shown, [["tabby", "cat"]], [["plant"]], allowed=allowed)
    # without synonym splitting the WordNet strings match nothing and are all outside the plain words
    assert plain["precision"] == 0 and plain["wrong-rate"] == 0 and plain["jargon-rate"] == 1
    split = M.shown_tags_report(shown, [["tabby", "cat"]], [["animal"]], allowed=allowed, synonyms=True)
    assert split["precision"] == pytest.approx(1 / 3)
    assert split["wrong-rate"] == pytest.approx(1 / 3)
    assert split["jargon-rate"] == pytest.approx(1 / 3)  # only the seed plant has no plain name
    assert split["pictures-with-jargon"] == 1


def test_shown_tags_report_empty_and_mismatched():
    r = M.shown_tags_report([], [], [])
    assert r["hit@5"] == 0 and r["precision"] == 0 and r["coverage"] == 0
    with pytest.raises(ValueError):
        M.shown_tags_report([["a"]], [], [])
