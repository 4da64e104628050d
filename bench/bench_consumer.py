"""The consumer vocabulary on the real-photo benchmark: today's tagger and the consumer decisions, side by
side in one run, per split (fit / test), plus what extra views of wide pictures buy and cost.

    nice -n 10 .venv/bin/python bench/bench_consumer.py [--dir .cache/realphotos] [--views center+full]
                                                        [--compare-views] [--speed] [--table] [--splits fit]

The pictures come from bench/realphotos (built by `make realphotos` into .cache/realphotos); scoring is
the benchmark's own (autotag.metrics.shown_tags_report), with one more count: pictures showing an
animal word while nothing in them is an animal. Class
probabilities of every view set are cached in .cache/bench/consumer (keyed by picture file and view
set), so fitting (scripts/fit_consumer.py) and reruns do not run the model again.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench" / "consumer"
os.environ.setdefault("AUTOTAG_CACHE_DIR", str(ROOT / ".cache" / "test"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

VIEW_SETS = ("center", "center+full", "thirds", "thirds+full", "whole-if-plain")
DEFAULT_DIR = ROOT / ".cache" / "realphotos"


def load_set(folder: Path = DEFAULT_DIR, build: bool = False) -> list[dict[str, Any]]:
    """The benchmark's pictures as dicts (id, path, split, kind, tags, wrong), via the realphotos reader."""
    from autotag.data import load_dataset

    if build:
        sys.path.insert(0, str(ROOT / "scripts"))
        import build_realphotos

        build_realphotos.main(["--out", str(folder)])
    dataset = load_dataset(f"realphotos:{folder}")
    pictures = dataset.info["pictures"]
    return [{"id": pictures[r.source]["id"], "path": r.source, "split": r.split, "kind": pictures[r.source]["kind"],
             "tags": list(r.labels), "wrong": list(pictures[r.source].get("wrong", [])),
             "people": str(pictures[r.source].get("people", "0")),
             "objects": list(pictures[r.source].get("objects", []))}
            for r in dataset.records]  # fmt: skip


def _digest(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]


def view_probabilities(entries: Sequence[dict[str, Any]], view_set: str, merge: str = "mean") -> np.ndarray:
    """(N, 1000) merged class probabilities of each picture under a view set (cached per picture)."""
    from autotag.encoders import create_encoder
    from autotag.encoders.views import merge_views, views
    from autotag.ingest import decode_with_info, load_source
    from autotag.pipeline import softmax

    CACHE.mkdir(parents=True, exist_ok=True)
    encoder = None
    out = []
    for e in entries:
        f = CACHE / f"{e['id']}-{_digest(e['path'])}-{view_set.replace('+', '_')}.npy"
        if not f.is_file():
            encoder = encoder or create_encoder("efficientnet_lite0")
            im, _ = decode_with_info(load_source(e["path"]), max_pixels=encoder_max_pixels())
            logits, _ = encoder.run(views(im, encoder.spec, view_set))
            np.save(f, softmax(logits).astype(np.float32))
        out.append(merge_views(np.load(f), merge))
    return np.stack(out)


def on_plain_background(entries: Sequence[dict[str, Any]]) -> list[bool]:
    """Whether each picture's subject sits on a plain background (encoders/views.plain_background: the
    tagger then sees a wide one whole and earns no place word on it), decoded as the tagger does."""
    from autotag.encoders.views import plain_background
    from autotag.ingest import decode_with_info, load_source
    from autotag.pipeline.tagger import KEPT_SIDE

    return [plain_background(decode_with_info(load_source(e["path"]), min_side=224, max_pixels=encoder_max_pixels(),
                                              min_long_side=KEPT_SIDE)[0]) is not None
            for e in entries]  # fmt: skip


def detections(entries: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """Each picture's detections by the default object detector (label, score, box), cached per picture
    as JSON; decoded as the tagger does (long side at least the detector's input, letter-boxed)."""
    from autotag.config import load_settings
    from autotag.ingest import decode_with_info, load_source
    from autotag.pipeline import load_detector
    from autotag.types import Detection

    CACHE.mkdir(parents=True, exist_ok=True)
    detector = load_detector(load_settings())  # keyed by its input size and floor: the default may change
    out = []
    for e in entries:
        f = CACHE / f"{e['id']}-{_digest(e['path'])}-detections-{detector.input_size}-{detector.min_score}.json"
        if not f.is_file():
            im, _ = decode_with_info(load_source(e["path"]), min_side=224, max_pixels=encoder_max_pixels(),
                                     min_long_side=detector.input_size)  # fmt: skip
            f.write_text(json.dumps([d.to_dict() for d in detector.detect([im])[0]]))
        out.append([Detection(d["label"], d["score"], tuple(d["box"])) for d in json.loads(f.read_text())])
    return out


def encoder_max_pixels() -> int:
    from autotag.config import load_settings

    return load_settings().max_pixels


# -- what each tagger shows ---------------------------------------------------------------------------
def today_tags(probs: np.ndarray) -> list[list[str]]:
    """What `autotag tag` showed before the consumer vocabulary (leaf classes + WordNet ancestors)."""
    from autotag.pipeline import TagOptions, imagenet_tags

    return [[t.name for t in imagenet_tags(p, TagOptions())] for p in probs]


def consumer_names(probs: np.ndarray, params: Any = None,
                   dets: Sequence[Sequence[Any]] | None = None) -> list[list[str]]:  # fmt: skip
    from autotag.taxonomy.decisions import consumer_tags

    dets = dets if dets is not None else [()] * len(probs)
    return [[t.name for t in consumer_tags(p, d, params=params)] for p, d in zip(probs, dets, strict=True)]


PEOPLE_WORDS = frozenset({"person", "people", "1 person", "2 people", "group of people"})


def people_and_objects(entries: Sequence[dict[str, Any]], shown: Sequence[Sequence[str]],
                       dets: Sequence[Sequence[Any]]) -> dict[str, Any]:  # fmt: skip
    """People: pictures with a visible person (manifest `people` > 0) whose shown tags say person/people.
    Objects: the manifest's COCO `objects` found by the detections the decisions keep (detection_min),
    and kept detections of a class the manifest does not list (extra; may be small, unlisted things)."""
    from autotag.taxonomy.decisions import default_params

    cut = default_params().detection_min
    with_people = [i for i, e in enumerate(entries) if e["people"] not in ("0", "")]
    found = sum(1 for i in with_people if PEOPLE_WORDS & {w.strip() for t in shown[i] for w in t.split(",")})
    listed = hit = extra = 0
    for e, d in zip(entries, dets, strict=True):
        kept = {x.label for x in d if x.score >= cut}
        listed += len(e["objects"])
        hit += len(kept & set(e["objects"]))
        extra += len(kept - set(e["objects"]))
    return {"people": f"{found}/{len(with_people)}", "objects": f"{hit}/{listed}", "extra objects": extra}


# -- metrics --------------------------------------------------------------------------------------------
def animal_words() -> frozenset[str]:
    """Every word that says 'there is an animal': the animal category, the categories implying it, members."""
    from autotag.taxonomy.consumer import default_consumer

    vocab = default_consumer()
    implying = {c for e in vocab.imagenet for c in e.categories if "animal" in e.categories}
    return frozenset({"animal", *vocab.members("animal")} | (implying - {"sea", "water", "food", "people"}))


def allowed_words(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Plain words: every word the benchmark's labels use, plus the consumer vocabulary's own words."""
    from autotag.taxonomy.consumer import default_consumer

    return sorted({t for e in entries for t in e["tags"] + e["wrong"]} | default_consumer().words())


def score(entries: Sequence[dict[str, Any]], shown: Sequence[Sequence[str]], k: int = 5,
          allowed: Sequence[str] | None = None, synonyms: bool = False) -> dict[str, Any]:  # fmt: skip
    """The benchmark's shown-tag report (autotag.metrics) plus pictures with an animal word but no animal."""
    from autotag.metrics import shown_tags_report
    from autotag.usertags import normalise_user_tag

    out = shown_tags_report(shown, [e["tags"] for e in entries], [e["wrong"] for e in entries], k=k,
                            allowed=allowed, synonyms=synonyms)  # fmt: skip
    animals = animal_words()
    false_animal = 0
    for e, tags in zip(entries, shown, strict=True):
        names = {normalise_user_tag(n) for t in tags for n in (t.split(",") if synonyms else [t])}
        false_animal += bool(names & animals and not set(e["tags"]) & animals)
    out["animal-without-animal"] = false_animal
    return out


def report(entries: list[dict[str, Any]], shown: dict[str, list[list[str]]]) -> list[dict[str, Any]]:
    allowed = allowed_words(entries)
    rows = []
    for split in ("fit", "test"):
        for kind in ("photo", "art", "all"):
            idx = [i for i, e in enumerate(entries) if e["split"] == split and kind in ("all", e["kind"])]
            for name, tags in shown.items():
                picked = [entries[i] for i in idx]
                r = score(picked, [tags[i] for i in idx], allowed=allowed, synonyms=name == "today")
                rows.append({"split": split, "set": kind, "tagger": name, "n": len(idx), **r})
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    print("| split | set | tagger | n | hit@5 | precision | coverage | tags/pic | wrong tags | jargon tags "
          "| animal word, no animal |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["counts"]
        print(f"| {r['split']} | {r['set']} | {r['tagger']} | {r['n']} | {r['hit@5']:.1%} | {r['precision']:.1%} | "
              f"{r['coverage']:.1%} | {r['mean-shown']:.1f} | {c['wrong']} | {c['jargon']} | "
              f"{r['animal-without-animal']} |")  # fmt: skip


def speed(entries: Sequence[dict[str, Any]], view_sets: Sequence[str], rounds: int = 5) -> dict[str, float]:
    """Median seconds per picture (decode as the pipeline does + views + encoder, one picture per run),
    rounds interleaved over the same pictures so every view set sees the same machine load."""
    from autotag.encoders import create_encoder
    from autotag.encoders.views import views
    from autotag.ingest import decode_with_info, load_source

    encoder = create_encoder("efficientnet_lite0")
    data = [load_source(e["path"]) for e in entries]
    times: dict[str, list[float]] = {v: [] for v in view_sets}
    for _ in range(rounds):
        for v in view_sets:
            start = time.perf_counter()
            for raw in data:
                im, _ = decode_with_info(raw, min_side=encoder.spec.input_size, max_pixels=encoder_max_pixels())
                encoder.run(views(im, encoder.spec, v))
            times[v].append((time.perf_counter() - start) / len(data))
    return {v: statistics.median(t) for v, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the built benchmark (make realphotos)")
    ap.add_argument("--build", action="store_true", help="(re)build the benchmark into --dir first")
    ap.add_argument("--views", default="center+full", help=f"view set of the consumer tagger: {', '.join(VIEW_SETS)}")
    ap.add_argument("--merge", default="mean")
    ap.add_argument("--compare-views", action="store_true", help="every view set, side by side")
    ap.add_argument("--splits", default="fit,test", help="which splits to print (fit while fitting)")
    ap.add_argument("--speed", action="store_true", help="time every view set (interleaved rounds)")
    ap.add_argument("--table", action="store_true", help="per-picture table of the printed splits")
    ap.add_argument("--objects", action="store_true",
                    help="also the default tagger with the object detector (detections cached per picture)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)

    entries = load_set(args.dir, args.build)
    center = view_probabilities(entries, "center")
    name = f"consumer ({args.views})"
    probs = view_probabilities(entries, args.views, args.merge)
    shown = {"today": today_tags(center), name: consumer_names(probs)}
    dets = None
    if args.objects:  # the default tagger: the same decisions with the detector's detections
        dets = detections(entries)
        shown[f"{name} + objects"] = consumer_names(probs, dets=dets)
    if args.compare_views:
        for v in VIEW_SETS:
            for merge in ("mean", "max"):
                shown[f"consumer ({v}, {merge})"] = consumer_names(view_probabilities(entries, v, merge))
    splits = args.splits.split(",")
    rows = [r for r in report(entries, shown) if r["split"] in splits]
    print(f"real-photo benchmark, {len(entries)} pictures, {datetime.date.today()}, {platform.machine()} "
          f"{os.cpu_count()} CPUs (shared)")  # fmt: skip
    print_rows(rows)
    if dets is not None:
        for split in splits:
            for kind in ("photo", "all"):
                idx = [i for i, e in enumerate(entries) if e["split"] == split and kind in ("all", e["kind"])]
                for tagger, tags in shown.items():
                    po = people_and_objects([entries[i] for i in idx], [tags[i] for i in idx], [dets[i] for i in idx])
                    print(f"{split} {kind} {tagger}: people found {po['people']}, objects found {po['objects']} "
                          f"(+{po['extra objects']} unlisted)")  # fmt: skip
    if args.table:
        for i, e in enumerate(entries):
            if e["split"] in splits:
                tags = shown[name][i]
                marks = ["+" if t in e["tags"] else ("!" if t in e["wrong"] else ".") for t in tags]
                chips = " | ".join(f"{m}{t}" for t, m in zip(tags, marks, strict=True))
                print(f"{e['id']:<26} {e['split']:<4} {e['kind']:<5} {chips or '(not sure)'}")
    if args.speed:
        timing = speed([e for e in entries if e["kind"] == "photo"][:40], VIEW_SETS)
        for v, s in timing.items():
            print(f"speed {v:12s} {s * 1000:7.1f} ms/picture  x{s / timing['center']:.2f} of centre-only")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
