"""Hashtags and a user's own vocabulary through the consumer vocabulary, on the real-photo benchmark:
operating points fitted on the FIT split (target precision 0.9), precision and coverage on the TEST split,
for the shipped hashtags and for a wallpaper site's own 12 tags (bench/custom_vocab.yaml); the old
class-level hashtag suggester (flat fallback threshold, fitted on 19 bundled photos) side by side.

    nice -n 10 .venv/bin/python bench/bench_vocab.py [--dir .cache/realphotos] [--write]

--write stores the shipped files: taxonomy/hashtags_consumer.json (the hashtags over the consumer
vocabulary) and taxonomy/hashtags_consumer_points.json (their fitted operating points).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_consumer import DEFAULT_DIR, load_set, view_probabilities  # noqa: E402

TAXONOMY = ROOT / "src" / "autotag" / "taxonomy"


def evaluate(suggester: Any, probs: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    out = suggester.evaluate(probs, truth)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def consumer_mapping(vocab: Any, classes: Any = None) -> Any:
    from autotag.taxonomy.consumer import default_consumer
    from autotag.taxonomy.mapping import map_onto_consumer

    return map_onto_consumer(vocab, default_consumer(), classes)


def run(name: str, vocab: Any, mapping: Any, entries: list[dict], probs: np.ndarray) -> tuple[Any, dict]:
    from autotag.suggest.hashtags import ConsumerHashtagSuggester, fit_on_pictures
    from autotag.taxonomy.mapping import tag_truth

    truth = tag_truth(mapping, vocab, [e["tags"] for e in entries])
    fit = np.array([e["split"] == "fit" for e in entries])
    photo = np.array([e["kind"] == "photo" for e in entries])
    suggester = ConsumerHashtagSuggester(mapping)
    points = fit_on_pictures(suggester, probs[fit], truth[fit], meta={
        "fitted_on": f"fit split of bench/realphotos ({int(fit.sum())} pictures), target precision 0.9",
        "date": datetime.date.today().isoformat()})  # fmt: skip
    test = ~fit
    row = {
        "vocabulary": name, "unreachable": mapping.unreachable(), "pooled threshold": round(points.default, 3),
        "per-tag": {k: round(v, 3) for k, v in points.per_tag.items()},
        "test": evaluate(suggester, probs[test], truth[test]),
        "test photos": evaluate(suggester, probs[test & photo], truth[test & photo]),
        "fit": evaluate(suggester, probs[fit], truth[fit]),
    }  # fmt: skip
    return suggester, row


def main(argv: list[str] | None = None) -> int:
    from autotag.suggest.hashtags import HashtagSuggester
    from autotag.taxonomy.mapping import Mapping, map_labels, source_labels, tag_truth
    from autotag.taxonomy.vocabulary import load_vocabulary

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the built benchmark (make realphotos)")
    ap.add_argument("--custom", type=Path, default=ROOT / "bench" / "custom_vocab.yaml")
    ap.add_argument("--write", action="store_true", help="store the shipped hashtag mapping and operating points")
    args = ap.parse_args(argv)

    entries = load_set(args.dir)
    probs = view_probabilities(entries, "center")
    rows = []
    hashtags = load_vocabulary()
    classes = Mapping.from_dict(json.loads((TAXONOMY / "hashtags_imagenet.json").read_text()))  # reviewed
    shipped_map = consumer_mapping(hashtags, classes)
    shipped, row = run("hashtags (shipped)", hashtags, shipped_map, entries, probs)
    rows.append(row)
    custom = load_vocabulary(args.custom)
    custom_classes = map_labels(source_labels("imagenet"), custom, use_text=False, source="imagenet")
    _, row = run(f"{custom.name} (custom, 12 tags)", custom, consumer_mapping(custom, custom_classes), entries, probs)
    rows.append(row)
    # before: the class-level suggester as shipped (mass over mapped classes, 19-photo operating points)
    old = HashtagSuggester.default()
    old_map = shipped_map  # truth from the same words, so both are judged alike
    truth = tag_truth(old_map, hashtags, [e["tags"] for e in entries])
    test = np.array([e["split"] == "test" for e in entries])
    rows.append({"vocabulary": "hashtags (before: class mass, flat fallback)",
                 "test": evaluate(old, probs[test], truth[test])})  # fmt: skip
    for r in rows:
        print(json.dumps(r))
    if args.write:
        (TAXONOMY / "hashtags_consumer.json").write_text(json.dumps(shipped_map.to_dict(), indent=1) + "\n")
        shipped.points.save(TAXONOMY / "hashtags_consumer_points.json")
        print(f"wrote {TAXONOMY / 'hashtags_consumer.json'} and hashtags_consumer_points.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
