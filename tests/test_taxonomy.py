"""Vocabulary mapping, hashtag suggestion with abstention, out-of-domain scores and tag audit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from autotag.suggest.hashtags import HashtagSuggester, OperatingPoints, precision_first_threshold
from autotag.suggest.ood import EmbeddingDistanceOOD, auroc, ood_score
from autotag.taxonomy.mapping import Mapping, SourceLabel, load_overrides, map_labels, review_document, write_mapping
from autotag.taxonomy.vocabulary import load_vocabulary, parse_vocabulary
from autotag.types import AutotagError

TENNIS_BALL, TABBY, TOILET_TISSUE, SHOVEL = "n04409515", "n02123045", "n15075141", "n04208210"


def imagenet_subset(*ids: str) -> list[SourceLabel]:
    from autotag.taxonomy.mapping import imagenet_labels

    return [label for label in imagenet_labels() if label.id in ids]


def test_vocabulary_file_forms_and_errors(tmp_path):
    vocab = parse_vocabulary(
        {"name": "v", "tags": {"cats": ["domestic_cat.n.01"], "sport": {"synsets": "ball.n.01", "aliases": ["sports"]}}}
    )
    assert vocab.names == ["cats", "sport"] and vocab.tag("sport").synsets == ("ball.n.01",)
    assert vocab.resolve("#Sports") == "sport" and vocab.resolve("other") == "other" and vocab.resolve("x") is None
    with pytest.raises(AutotagError, match="not a WordNet synset"):
        parse_vocabulary({"tags": {"cats": ["housecat"]}})
    with pytest.raises(AutotagError, match="unknown keys"):
        parse_vocabulary({"tags": {"cats": {"synset": ["domestic_cat.n.01"]}}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("tags: [unclosed\n")
    with pytest.raises(AutotagError, match="not valid YAML"):
        load_vocabulary(bad)
    shipped = load_vocabulary()
    assert 18 <= len(shipped.tags) <= 30 and {"nature", "sport", "food", "architecture", "cars"} <= set(shipped.names)


def test_hypernym_mapping_of_known_classes(wordnet_ready):
    vocab = load_vocabulary()
    mapping = map_labels(imagenet_subset(TENNIS_BALL, TABBY, TOILET_TISSUE), vocab, use_text=False)
    assert "sport" in mapping.tags_of(TENNIS_BALL)
    assert {"animals", "cats", "pets"} <= set(mapping.tags_of(TABBY)) and "dogs" not in mapping.tags_of(TABBY)
    tabby = next(e for e in mapping.entries if e.label.id == TABBY)
    assert tabby.status == "mapped" and "domestic_cat.n.01" in tabby.reason
    # nothing in the vocabulary is a toilet tissue: it lands in `other` and in the report
    assert mapping.tags_of(TOILET_TISSUE) == ["other"]
    report = review_document(mapping)
    assert report["labels"][TOILET_TISSUE]["status"] in {"unmapped", "ambiguous"}
    assert report["labels"][TOILET_TISSUE]["reason"] and report["counts"]["in_other"] == 1


def test_overrides_win_and_review_round_trip(wordnet_ready, tmp_path):
    vocab = load_vocabulary()
    labels = imagenet_subset(TENNIS_BALL, TABBY, SHOVEL)
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(f"tabby cat: [art]\n{TENNIS_BALL}: other\n")
    mapping = map_labels(labels, vocab, load_overrides(overrides, vocab), use_text=False)
    assert mapping.tags_of(TABBY) == ["art"] and mapping.tags_of(TENNIS_BALL) == ["other"]
    assert next(e for e in mapping.entries if e.label.id == TABBY).status == "override"

    # a person edits the review file, marks one entry reviewed and feeds it back
    paths = write_mapping(map_labels(labels, vocab, use_text=False), tmp_path / "out")
    import yaml

    review = yaml.safe_load(paths["review"].read_text())
    review["labels"][SHOVEL].update(tags=["interior"], status="reviewed")
    paths["review"].write_text(yaml.safe_dump(review))
    again = map_labels(labels, vocab, load_overrides(paths["review"], vocab), use_text=False)
    assert again.tags_of(SHOVEL) == ["interior"] and "sport" in again.tags_of(TENNIS_BALL)
    assert Mapping.load(paths["mapping"]).label_ids == [label.id for label in labels]

    overrides.write_text("tabby cat: [no-such-tag]\n")
    with pytest.raises(AutotagError, match="unknown tag 'no-such-tag'"):
        load_overrides(overrides, vocab)


def test_trained_model_labels_map_by_name(wordnet_ready, tmp_path):
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("sneaker\ntrouser\nbicycle\nzzqx\n")
    from autotag.taxonomy.mapping import map_vocabulary

    mapping = map_vocabulary(None, labels_file, use_text=False)
    assert mapping.tags_of("sneaker") == ["fashion"] and mapping.tags_of("trouser") == ["fashion"]
    assert mapping.tags_of("bicycle") == ["bikes"] and mapping.tags_of("zzqx") == ["other"]


def test_shipped_mapping_and_abstention():
    suggester = HashtagSuggester.default()  # package data only: no WordNet, no text model
    col = suggester.tag_names.index
    ids = suggester.mapping.label_ids
    assert len(ids) == 1000 and suggester.weights[ids.index(TENNIS_BALL), col("sport")] == 1
    assert suggester.weights[ids.index(TABBY), col("cats")] == 1

    probs = np.full((3, 1000), 1e-5, np.float32)
    probs[0, ids.index(TABBY)] = 0.97  # sure: a tabby
    probs[1, ids.index(TABBY)] = 0.35  # unsure: a tabby or a tennis ball
    probs[1, ids.index(TENNIS_BALL)] = 0.35
    probs[2] = 1.0 / 1000  # no idea
    suggester = HashtagSuggester(suggester.mapping, OperatingPoints(default=0.6, per_tag={"cats": 0.9}))
    out = suggester.suggest(probs)
    assert [t.name for t in out[0]][:1] == ["cats"] and {"animals", "pets"} <= {t.name for t in out[0]}
    assert all(t.kind == "hashtag" and t.id == f"#{t.name}" for t in out[0])
    assert out[1] == [] and out[2] == []
    # the same tabby just below the cats operating point: cats abstains, animals still sure
    probs[0, ids.index(TABBY)] = 0.85
    names = {t.name for t in suggester.suggest(probs[:1])[0]}
    assert "cats" not in names and "animals" in names

    # the out-of-domain gate silences everything
    gated = HashtagSuggester(suggester.mapping, OperatingPoints(default=0.6, ood_kind="max_logit", ood_threshold=-5.0))
    logits = np.zeros((2, 1000), np.float32)
    logits[0, ids.index(TABBY)] = 12.0  # confident: max logit 12 -> score -12 < -5
    logits[1, ids.index(TABBY)] = 2.0  # weak: score -2 > -5 -> out of domain
    out = gated.suggest(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), logits=logits)
    assert out[0] and out[1] == []


def test_operating_points_reach_target_precision():
    rng = np.random.default_rng(0)
    positives = rng.random(2000) < 0.3
    scores = np.where(positives, rng.beta(5, 2, 2000), rng.beta(2, 5, 2000))
    t = precision_first_threshold(scores, positives, 0.9)
    assert t is not None
    kept = scores >= t
    assert positives[kept].mean() >= 0.9 and kept.sum() > 100
    assert precision_first_threshold(scores, np.zeros(2000, bool), 0.9) is None

    suggester = HashtagSuggester.default()
    ids, col = suggester.mapping.label_ids, suggester.tag_names.index
    probs = np.full((400, 1000), 1e-6, np.float32)
    truth = np.zeros((400, len(suggester.tag_names)), np.uint8)
    p = rng.uniform(0.2, 1.0, 400)
    is_cat = rng.random(400) < p  # a calibrated model: P(cat) = p
    probs[:, ids.index(TABBY)] = p
    for tag in ("cats", "pets", "animals"):
        truth[is_cat, col(tag)] = 1
    points = suggester.fit_operating_points(probs, truth, target_precision=0.9, min_positives=20)
    assert 0.5 < points.per_tag["cats"] < 1.0
    assert suggester.evaluate(probs, truth)["precision"] >= 0.9


def test_ood_scores_and_auroc():
    rng = np.random.default_rng(1)
    train = rng.normal(0, 1, (300, 16)) + 4 * np.eye(16)[0]
    near = rng.normal(0, 1, (100, 16)) + 4 * np.eye(16)[0]
    far = rng.normal(0, 1, (100, 16)) - 4 * np.eye(16)[0]
    det = EmbeddingDistanceOOD(k=5).fit(train)
    assert auroc(det.score(near), det.score(far)) > 0.95
    assert auroc(np.array([0.0, 0.1]), np.array([0.0, 0.1])) == pytest.approx(0.5)
    sure, flat = np.zeros((1, 10)), np.zeros((1, 10))
    sure[0, 3] = 10.0
    for kind in ("energy", "max_logit", "msp", "entropy"):
        assert ood_score(flat, kind)[0] > ood_score(sure, kind)[0]
    with pytest.raises(AutotagError, match="valid: energy"):
        ood_score(flat, "nope")


def test_grounding_separates_filler_from_label_words():
    from autotag.suggest.audit import TagAuditor, fit_grounding

    rng = np.random.default_rng(2)
    y = (rng.random((500, 2)) < 0.5).astype(np.uint8)
    tags = [(["kicks"] if row[0] and rng.random() < 0.6 else []) + (["instagood"] if rng.random() < 0.3 else [])
            for row in y]  # fmt: skip
    grounding = fit_grounding(tags, y)
    assert grounding["kicks"][0] > 0.9 and grounding["instagood"].max() < 0.2
    auditor = TagAuditor(["sneaker", "bag"], grounding, use_text=False)
    res = {a.tag: a for a in auditor.audit(np.array([0.95, 0.02]), ["kicks", "instagood"])}
    assert not res["kicks"].flagged and res["instagood"].flagged


def test_hashtags_and_audit_on_real_photos(photos, wordnet_ready):
    from autotag.pipeline import Tagger
    from autotag.suggest.audit import audit_user_tags
    from autotag.suggest.hashtags import suggest_hashtags

    tagger = Tagger.default()
    rows = suggest_hashtags([photos["chelsea"], photos["coffee"]], tagger=tagger)
    assert "cats" in [t["name"] for t in rows[0]["tags"]] and not rows[0]["out_of_domain"]
    assert "dogs" not in [t["name"] for t in rows[0]["tags"]]
    assert "coffee" in [t["name"] for t in rows[1]["tags"]]

    audit = {a.tag: a for a in audit_user_tags(photos["chelsea"], "cat, car, instagood", tagger=tagger)}
    assert audit["car"].flagged and not audit["cat"].flagged
    assert not audit["instagood"].flagged and not audit["instagood"].judged  # no concept: cannot judge, not flagged
    assert audit["cat"].relevance > 0.5 > audit["car"].relevance


def test_cli_vocab_map_hashtags_and_audit(photos, wordnet_ready, tmp_path):
    from autotag.cli import app

    runner = CliRunner()
    target = tmp_path / "mini.yaml"
    target.write_text("name: mini\ntags:\n  cats: [domestic_cat.n.01]\n  sport: [ball.n.01]\n")
    labels = tmp_path / "labels.txt"
    labels.write_text("tabby\ntennis ball\nshovel\n")
    res = runner.invoke(app, ["vocab", "map", "--target", str(target), "--source", str(labels), "--no-text",
                              "--out", str(tmp_path / "m")])  # fmt: skip
    assert res.exit_code == 0, res.output
    mapping = json.loads((tmp_path / "m" / "mapping.json").read_text())
    assert {e["name"]: e["tags"] for e in mapping["entries"]} == {
        "tabby": ["cats"],
        "tennis ball": ["sport"],
        "shovel": [],
    }
    assert "shovel" in (tmp_path / "m" / "review.yaml").read_text()

    res = runner.invoke(app, ["vocab", "map", "--target", str(tmp_path / "missing.yaml"), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "does not exist" in res.output

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    res = runner.invoke(app, ["hashtags", str(photos["chelsea"]), str(broken), "--format", "json"])
    assert res.exit_code == 1  # one bad file is reported, the batch goes on
    rows = json.loads(res.stdout)
    assert "cats" in [t["name"] for t in rows[0]["tags"]] and rows[1]["error"]

    res = runner.invoke(app, ["audit", str(photos["chelsea"]), "--user-tags", "cat, car", "--format", "json"])
    assert res.exit_code == 0, res.output
    flagged = {r["tag"]: r["flagged"] for r in json.loads(res.stdout)}
    assert flagged == {"cat": False, "car": True}


def test_wordnet_and_the_text_model_load_without_noise_on_stderr(wordnet_ready, tmp_path):
    """NLTK's 'multilingual functions' warning and the text model's 'Loading weights' bar were printed
    beside every `vocab map` and `audit`; a fresh process (fresh caches) must print nothing."""
    import os
    import subprocess
    import sys

    pytest.importorskip("sentence_transformers")
    code = ("from autotag.taxonomy.wordnet import wordnet, synset_from_wnid\n"
            "from autotag.taxonomy.text import embed_texts\n"
            "assert synset_from_wnid('n02123045').name() == 'tabby.n.01'\n"
            "assert embed_texts(['a cat on a sofa']).shape == (1, 384)\n")  # fmt: skip
    env = {**os.environ, "AUTOTAG_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""


def test_hashtags_mapping_that_is_missing_or_not_json_is_one_line(tmp_path, photos):
    from autotag.cli import app

    runner = CliRunner()
    walls = tmp_path / "walls.yaml"
    walls.write_text("name: walls\ntags:\n  sunset: [sunset]\n")
    for mapping, message in ((tmp_path / "nomap.json", "does not exist; make one with `autotag vocab map`"),
                             (walls, "is not JSON (line 1: Expecting value); pass the mapping.json")):
        res = runner.invoke(app, ["hashtags", str(photos["chelsea"]), "--mapping", str(mapping)])
        assert res.exit_code == 2 and message in res.output and str(mapping) in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
