"""Objects on the real-photo benchmark: which labelled COCO objects the default decisions count, put in
the objects facet and tag, with and without the classifier confirming weaker detections
(ConsumerParams.confirm_*) and naming objects alone (classifier_object_min / objects_classifier_min).

    PYTHONPATH=src python bench/bench_objects.py --dir .cache/realphotos [--splits fit] [--sweep]
                                                 [--sweep-classifier] [--speed] [--views center]

Every picture is decoded and run as the tagger does (bench_consumer's cached probabilities of the
tagger's classifier view, encoders/views.TAGGER_VIEWS, and detections; the detector at its candidate
floor). Per split and set (photo / all):
  counted   labelled objects (manifest `objects`) among the detections the decisions count
  facet     labelled objects in the objects facet (pipeline.named_objects; the manifest's kind stands
            in for the style head's photo-or-art verdict)
  tagged    labelled objects whose consumer word is among the shown tags (at most 5)
  extra     counted detections of a class the picture's labels do not list (person where people > 0
            is not extra); false people = pictures without people where a person is counted
  facet extra, wrong tags (shown tags the labels call clearly wrong), hit@5 / precision (bench_consumer)
Rules: "baseline" = detection_min alone (confirm off, classifier-alone off), "confirmed" = confirmation
only, "shipped" = the shipped parameters.
`--sweep` prints the FIT grid the confirm parameters were chosen from, `--sweep-classifier` the one for
the classifier-alone bars; `--speed` times the detector's decode at the old floor (0.4) and at the
candidate floor with the decisions, interleaved, medians.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_consumer as bc  # noqa: E402 - the benchmark's shared loaders and caches
from autotag.encoders.views import TAGGER_VIEWS  # noqa: E402

OFF = {"confirm_min": 1.0, "confirm_support": 1.0, "classifier_object_min": 1.01,
       "objects_confirm_min": 1.0, "objects_confirm_support": 1.0, "objects_classifier_min": 1.01}
PARAMS = ("detection_min", "confirm_min", "confirm_support", "objects_confirm_min", "objects_confirm_support",
          "classifier_object_min", "objects_classifier_min")  # fmt: skip
ALONE_OFF = {"classifier_object_min": 1.01, "objects_classifier_min": 1.01}


def counted_objects(probs: np.ndarray, dets: list[Any], params: Any) -> dict[str, float]:
    from autotag.taxonomy.consumer import default_consumer
    from autotag.taxonomy.decisions import evidence_for

    return evidence_for(probs, params, dets, default_consumer()).objects


def score(entries: list[dict], probs: np.ndarray, dets: list[list[Any]], params: Any) -> dict[str, Any]:
    from autotag.pipeline.decide import named_objects
    from autotag.taxonomy.consumer import default_consumer
    from autotag.taxonomy.decisions import consumer_tags

    vocab = default_consumer()
    listed = counted = tagged = extra = false_people = people = people_found = facet = facet_extra = 0
    misses, extras, facet_extras = [], [], []
    shown_all = []
    for e, p, d in zip(entries, probs, dets, strict=True):
        objects = set(e["objects"])
        rule = params if e["kind"] == "photo" else replace(params, **ALONE_OFF)  # as photo_params on art
        got = set(counted_objects(p, d, rule))
        boxes = {o.label for o in named_objects(d, p, rule) or ()}
        shown = [t.name for t in consumer_tags(p, d, params=rule)]
        shown_all.append(shown)
        listed += len(objects)
        counted += len(got & objects)
        facet += len(boxes & objects)
        tagged += sum(vocab.coco[o].label in shown for o in objects)
        has_people = e["people"] not in ("0", "")
        wrong = got - objects - ({"person"} if has_people else set())
        facet_wrong = boxes - objects - ({"person"} if has_people else set())
        extra += len(wrong)
        facet_extra += len(facet_wrong)
        false_people += "person" in wrong
        people += has_people
        people_found += has_people and "person" in got
        misses += [f"{e['id']}:{o}" for o in sorted(objects - boxes)]
        extras += [f"{e['id']}:{o}" for o in sorted(wrong)]
        facet_extras += [f"{e['id']}:{o}" for o in sorted(facet_wrong)]
    shown_report = bc.score(entries, shown_all, allowed=bc.allowed_words(entries))
    return {"counted": f"{counted}/{listed}", "facet": f"{facet}/{listed}", "tagged": f"{tagged}/{listed}",
            "extra": extra, "facet_extra": facet_extra, "false_people": false_people,
            "people": f"{people_found}/{people}", "wrong_tags": shown_report["counts"]["wrong"],
            "hit@5": round(shown_report["hit@5"], 3), "precision": round(shown_report["precision"], 3),
            "missed": misses, "extras": extras, "facet_extras": facet_extras}  # fmt: skip


def line(r: dict[str, Any]) -> str:
    return (f"counted {r['counted']} facet {r['facet']} tagged {r['tagged']} extra {r['extra']} facet extra "
            f"{r['facet_extra']} wrong tags {r['wrong_tags']} hit@5 {r['hit@5']:.3f} precision {r['precision']:.3f} "
            f"false people {r['false_people']} people {r['people']}")  # fmt: skip


def sweep_classifier(entries: list[dict], probs: np.ndarray, dets: list[list[Any]], base: Any) -> None:
    """The FIT grid behind the classifier-alone bars: the same bar for tags and facet, per set."""
    for kind in ("photo", "art", "all"):
        idx = [i for i, e in enumerate(entries) if kind in ("all", e["kind"])]
        print(f"sweep classifier-alone ({kind}, {len(idx)} pictures)")
        for bar in (1.01, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3):
            r = score([entries[i] for i in idx], probs[idx], [dets[i] for i in idx],
                      replace(base, classifier_object_min=bar, objects_classifier_min=bar))  # fmt: skip
            print(f"  bar {bar}: {line(r)}")
            print(f"      facet extra: {', '.join(r['facet_extras'])}")


def sweep(entries: list[dict], probs: np.ndarray, dets: list[list[Any]], base: Any) -> None:
    """The FIT grid behind the shipped confirm parameters: counted / extra per (confirm_min, support)."""
    for kind in ("photo", "all"):
        idx = [i for i, e in enumerate(entries) if kind in ("all", e["kind"])]
        print(f"sweep ({kind}, {len(idx)} pictures): counted/extra")
        for lo in (0.15, 0.2, 0.25, 0.3, 0.35):
            cells = []
            for support in (0.05, 0.1, 0.2, 0.3, 0.5, 0.7):
                r = score([entries[i] for i in idx], probs[idx], [dets[i] for i in idx],
                          replace(base, confirm_min=lo, confirm_support=support))  # fmt: skip
                cells.append(f"s{support}: {r['counted']} +{r['extra']}")
            print(f"  min {lo}: " + " | ".join(cells))


def speed(entries: list[dict], probs: np.ndarray, rounds: int, params: Any) -> dict[str, float]:
    """ms per picture: the detector (letter-box + network + decode) at floor 0.4 with the decisions
    ignoring confirmation, against the candidate floor with the confirming decisions; interleaved."""
    from autotag.encoders.detector import DEFAULT_MIN_SCORE, OBJECTS_MIN_SCORE, create_detector
    from autotag.ingest import decode_with_info, load_source
    from autotag.taxonomy.decisions import consumer_tags

    images = []
    for e in entries:
        im, _ = decode_with_info(load_source(e["path"]), min_side=224, max_pixels=bc.encoder_max_pixels(),
                                 min_long_side=384)  # fmt: skip
        images.append(im)
    old, new = create_detector(min_score=OBJECTS_MIN_SCORE), create_detector(min_score=DEFAULT_MIN_SCORE)
    variants = {
        f"floor {OBJECTS_MIN_SCORE}, confirm off": (old, replace(params, **OFF)),
        f"floor {DEFAULT_MIN_SCORE}, confirm on": (new, params),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for detector, _ in variants.values():
        detector.detect(images[:8])
    for r in range(rounds):
        for key in list(variants) if r % 2 == 0 else list(reversed(variants)):
            detector, rule = variants[key]
            start = time.perf_counter()
            for i in range(0, len(images), 8):
                found = detector.detect(images[i : i + 8])
                for j, d in enumerate(found):
                    consumer_tags(probs[i + j], d, params=rule)
            times[key].append(1000 * (time.perf_counter() - start) / len(images))
    return {k: float(np.median(v)) for k, v in times.items()}


EXTRA = Path(__file__).parent / "realphotos" / "objects_extra.yaml"


def extra_set(path: Path = EXTRA) -> list[dict[str, Any]]:
    """The single-subject GCompris photos of objects_extra.yaml as benchmark entries (split "extra"),
    their files unpacked once into the bench cache so the cached probabilities and detections apply."""
    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from train_style import read_rcc  # the Qt resource bundle reader the scene and style training use

    folder = bc.CACHE.parent / "objects_extra"
    folder.mkdir(parents=True, exist_ok=True)
    bundles: dict[str, dict[str, bytes]] = {}
    out = []
    for row in yaml.safe_load(path.read_text())["pictures"]:
        kind, bundle, inner = row["source"].split(":", 2)  # gcompris:BUNDLE.rcc:/path or deb:PACKAGE:/path
        name = f"{bundle.removesuffix('.rcc')}-{Path(inner).parent.name}-{Path(inner).name}"
        f = folder / name
        if not f.is_file():
            if kind == "deb":
                f.write_bytes(Path(inner).read_bytes())
            else:
                if bundle not in bundles:
                    bundles[bundle] = read_rcc(Path("/usr/share/gcompris-qt/rcc") / bundle)
                f.write_bytes(bundles[bundle][inner])
        out.append({"id": f"extra-{f.stem}", "path": str(f), "split": "extra", "kind": "photo", "tags": [],
                    "wrong": [], "people": "0", "objects": list(row["objects"])})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=bc.DEFAULT_DIR)
    parser.add_argument("--splits", default="fit", help="comma-separated: fit,test,extra (objects_extra.yaml)")
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--sweep-classifier", action="store_true")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--speed-pictures", type=int, default=24)
    parser.add_argument("--views", default=TAGGER_VIEWS, help=f"the classifier's views (the tagger's: {TAGGER_VIEWS})")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from autotag.taxonomy.decisions import default_params

    shipped = default_params()
    entries = bc.load_set(args.dir) + (extra_set() if "extra" in args.splits.split(",") else [])
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f} at start",
        "params": {k: getattr(shipped, k) for k in PARAMS},
    }
    print(json.dumps(results))
    for split in args.splits.split(","):
        part = [e for e in entries if e["split"] == split]
        probs = bc.view_probabilities(part, args.views)
        dets = bc.detections(part)
        if args.sweep and split == "fit":
            sweep(part, probs, dets, shipped)
        if args.sweep_classifier and split in ("fit", "extra"):
            sweep_classifier(part, probs, dets, shipped)
        for kind in ("photo", "all"):
            idx = [i for i, e in enumerate(part) if kind in ("all", e["kind"])]
            rules = (("baseline", replace(shipped, **OFF)), ("confirmed", replace(shipped, **ALONE_OFF)),
                     ("shipped", shipped))  # fmt: skip
            for rule, params in rules:
                r = score([part[i] for i in idx], probs[idx], [dets[i] for i in idx], params)
                results.setdefault("rows", []).append({"split": split, "set": kind, "rule": rule, **r})
                print(f"{split} {kind:5s} {rule:9s} {line(r)}")
                print(f"    not in facet: {', '.join(r['missed'])}\n    facet extra: {', '.join(r['facet_extras'])}")
        if args.speed and split == "fit":
            photos = [i for i, e in enumerate(part) if e["kind"] == "photo"][: args.speed_pictures]
            ms = speed([part[i] for i in photos], probs[photos], args.rounds, shipped)
            results["speed_ms_per_picture"] = ms
            for key, value in ms.items():
                print(f"speed {key}: {value:.1f} ms/picture")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
