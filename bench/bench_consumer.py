"""The consumer vocabulary on the real-photo benchmark: today's tagger and the consumer decisions, side by
side in one run, per split (fit / test), plus what extra views of wide pictures buy and cost.

    nice -n 10 .venv/bin/python bench/bench_consumer.py [--manifest M] [--images DIR] [--views center+full]
                                                        [--speed] [--table]

The pictures come from bench/realphotos (built by `make realphotos` into .cache/realphotos). Class
probabilities of every view set are cached in .cache/bench/consumer (keyed by picture file and view
set), so fitting (scripts/fit_consumer.py) and reruns do not run the model again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench" / "consumer"
DEFAULT_MANIFEST = ROOT / "bench" / "realphotos" / "manifest.yaml"
DEFAULT_IMAGES = ROOT / ".cache" / "realphotos"
os.environ.setdefault("AUTOTAG_CACHE_DIR", str(ROOT / ".cache" / "test"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

VIEW_SETS = ("center", "center+full", "thirds", "thirds+full")


def load_set(manifest: Path = DEFAULT_MANIFEST, images: Path = DEFAULT_IMAGES) -> list[dict[str, Any]]:
    """Manifest entries with `path` set to the built picture; a missing picture is a one-line exit."""
    import yaml

    if not manifest.is_file():
        sys.exit(f"bench_consumer: no manifest at {manifest} (pass --manifest)")
    raw = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    entries = raw["pictures"] if isinstance(raw, dict) else raw
    files = {p.stem: p for p in images.iterdir()} if images.is_dir() else {}
    missing = [e["id"] for e in entries if e["id"] not in files]
    if missing:
        sys.exit(f"bench_consumer: {len(missing)} pictures not built in {images} (make realphotos): {missing[:5]}")
    for e in entries:
        e["path"] = str(files[e["id"]])
    return entries


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


def encoder_max_pixels() -> int:
    from autotag.config import load_settings

    return load_settings().max_pixels


# -- what each tagger shows ---------------------------------------------------------------------------
def today_tags(probs: np.ndarray) -> list[list[str]]:
    """What `autotag tag` shows today (leaf classes + WordNet ancestors), names only."""
    from autotag.pipeline import TagOptions, imagenet_tags

    return [[t.name for t in imagenet_tags(p, TagOptions())] for p in probs]


def consumer_names(probs: np.ndarray, params: Any = None) -> list[list[str]]:
    from autotag.taxonomy.decisions import consumer_tags

    return [[t.name for t in consumer_tags(p, (), params=params)] for p in probs]


# -- metrics --------------------------------------------------------------------------------------------
def animal_words() -> frozenset[str]:
    """Every word that says 'there is an animal': the animal category, categories implying it, members."""
    from autotag.taxonomy.consumer import default_consumer

    vocab = default_consumer()
    cats = {c for e in vocab.imagenet for c in e.categories if "animal" in vocab.entry(e.key).categories}
    return frozenset({"animal", *cats, *vocab.members("animal")}) - {"people", "sea", "water", "food"}


def score(entries: Sequence[dict[str, Any]], shown: Sequence[Sequence[str]], k: int = 5) -> dict[str, Any]:
    """hit@k, precision of shown tags, coverage, clearly-wrong tags, jargon, animal words on animal-free pictures."""
    from autotag.taxonomy.consumer import default_consumer

    allowed = default_consumer().words()
    animals = animal_words()
    n = len(entries)
    hits = covered = n_shown = n_right = n_wrong = n_jargon = animal_false = 0
    for e, tags in zip(entries, shown, strict=True):
        truth, wrong = set(e.get("tags") or []), set(e.get("wrong") or [])
        covered += bool(tags)
        hits += bool(set(tags[:k]) & truth)
        n_shown += len(tags)
        n_right += len(set(tags) & truth)
        n_wrong += len(set(tags) & wrong)
        n_jargon += sum(1 for t in tags if t not in allowed)
        if not truth & animals and set(tags) & animals:
            animal_false += 1
    return {
        "pictures": n, "hit@5": hits / max(n, 1), "precision": n_right / max(n_shown, 1),
        "coverage": covered / max(n, 1), "tags_per_picture": n_shown / max(n, 1), "wrong_tags": n_wrong,
        "jargon_tags": n_jargon, "animal_word_without_animal": animal_false,
    }  # fmt: skip


def report(entries: list[dict[str, Any]], shown: dict[str, list[list[str]]]) -> list[dict[str, Any]]:
    rows = []
    for split in ("fit", "test"):
        for kind in ("photo", "all"):
            idx = [i for i, e in enumerate(entries) if e["split"] == split and (kind == "all" or e["kind"] == kind)]
            for name, tags in shown.items():
                rows.append({"split": split, "set": kind, "tagger": name,
                             **score([entries[i] for i in idx], [tags[i] for i in idx])})  # fmt: skip
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    print("| split | set | tagger | n | hit@5 | precision | coverage | tags/pic | wrong | jargon | animal w/o animal |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['split']} | {r['set']} | {r['tagger']} | {r['pictures']} | {r['hit@5']:.1%} | "
              f"{r['precision']:.1%} | {r['coverage']:.1%} | {r['tags_per_picture']:.1f} | {r['wrong_tags']} | "
              f"{r['jargon_tags']} | {r['animal_word_without_animal']} |")  # fmt: skip


def speed(entries: Sequence[dict[str, Any]], view_sets: Sequence[str], rounds: int = 5) -> dict[str, float]:
    """Median seconds per picture (decode + views + encoder), interleaved rounds over the same pictures."""
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
                im, _ = decode_with_info(raw, max_pixels=encoder_max_pixels())
                encoder.run(views(im, encoder.spec, v))
            times[v].append((time.perf_counter() - start) / len(data))
    return {v: statistics.median(t) for v, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("--views", default="center", help=f"view set of the consumer tagger: {', '.join(VIEW_SETS)}")
    ap.add_argument("--merge", default="mean")
    ap.add_argument("--compare-views", action="store_true", help="every view set, side by side")
    ap.add_argument("--speed", action="store_true", help="time every view set (interleaved rounds)")
    ap.add_argument("--table", action="store_true", help="per-picture table of the test split")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)

    entries = load_set(args.manifest, args.images)
    center = view_probabilities(entries, "center")
    shown = {"today": today_tags(center), f"consumer ({args.views})": consumer_names(
        view_probabilities(entries, args.views, args.merge))}  # fmt: skip
    if args.compare_views:
        for v in VIEW_SETS:
            for merge in ("mean", "max"):
                shown[f"consumer ({v}, {merge})"] = consumer_names(view_probabilities(entries, v, merge))
    rows = report(entries, shown)
    print_rows(rows)
    if args.table:
        name = f"consumer ({args.views})"
        for i, e in enumerate(entries):
            if e["split"] == "test":
                tags = shown[name][i]
                marks = ["+" if t in e["tags"] else ("WRONG" if t in (e.get("wrong") or []) else "?") for t in tags]
                print(f"{e['id']:28s} {', '.join(f'{t}{m}' for t, m in zip(tags, marks, strict=True)) or '(not sure)'}")
    if args.speed:
        wide = [e for e in entries][:40]
        timing = speed(wide, VIEW_SETS)
        base = timing["center"]
        for v, s in timing.items():
            print(f"speed {v:12s} {s * 1000:7.1f} ms/picture  x{s / base:.2f} of centre-only")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
