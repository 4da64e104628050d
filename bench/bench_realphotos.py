"""Real-photo benchmark (issue 13): run a tagger on the project's labelled real photos and art
(bench/realphotos/) and report, per split (fit / test) and per kind, what users would see:
hit@k, precision of the shown tags, coverage, the rate of clearly-wrong tags and of words outside the
benchmark's plain-word list; then a per-picture table of the shown tags with their marks
(+ right, ! clearly wrong, . neither, ~ suffix: not a plain word).

The tagger is today's `autotag tag` path: autotag.pipeline.Tagger with default TagOptions (override
with --top-k / --threshold / --no-ancestors). WordNet names such as "tabby, tabby cat" are matched
name by name (--no-synonyms to match the displayed string only).

Run: python bench/bench_realphotos.py [--dir .cache/realphotos] [--model NAME] [--json out.json] [--table]
Other code can reuse the scoring: autotag.evaluate.shown_tags_evaluation(dataset, shown, ...).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RIGHT_MARK = {"right": "+", "wrong": "!", "other": "."}


def load_benchmark(folder: Path, build: bool = True):  # -> autotag.data.Dataset
    """The benchmark, (re)built first by scripts/build_realphotos.py so its labels follow the manifest
    (pictures already built are kept, so this takes seconds)."""
    from autotag.data import load_dataset

    if build:
        sys.path.insert(0, str(ROOT / "scripts"))
        import build_realphotos

        if build_realphotos.main(["--out", str(folder)]) != 0:
            print("some pictures could not be built; scoring the rest", file=sys.stderr)
    return load_dataset(f"realphotos:{folder}")


def plain_words(dataset) -> list[str]:
    """Every word the labels use for any picture: the benchmark's list of plain words (jargon check).
    A consumer vocabulary would pass its own label and category names instead."""
    return sorted({t for r in dataset.records for t in r.labels})


def run_tagger(dataset, model: str | None, options) -> tuple[dict[str, list[str]], float]:
    """source -> shown tag names (best first), and seconds spent tagging."""
    from autotag.pipeline import Tagger

    tagger = Tagger.load(model)
    start = time.perf_counter()
    shown: dict[str, list[str]] = {}
    for pred in tagger.tag_many(dataset.sources, options=options):
        if pred.error:
            print(f"problem: {pred.path}: {pred.error}", file=sys.stderr)
        shown[pred.path] = [t.name for t in pred.tags]
    return shown, time.perf_counter() - start


def picture_rows(dataset, shown: dict[str, list[str]], allowed: list[str], synonyms: bool) -> list[dict]:
    from autotag.metrics import mark_shown_tags

    pictures = dataset.info["pictures"]
    rows = []
    for rec in dataset.records:
        pic = pictures[rec.source]
        marks = mark_shown_tags(shown[rec.source], rec.labels, pic.get("wrong", []), allowed, synonyms)
        rows.append(
            {
                "id": pic["id"],
                "split": rec.split,
                "kind": pic["kind"],
                "shown": [
                    {"tag": t, "mark": m, "jargon": j} for t, (m, j) in zip(shown[rec.source], marks, strict=True)
                ],
            }
        )
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = []
    for row in rows:
        chips = [f"{RIGHT_MARK[s['mark']]}{s['tag']}{'~' if s['jargon'] else ''}" for s in row["shown"]]
        lines.append(f"{row['id']:<26} {row['split']:<4} {row['kind']:<5} {' | '.join(chips) or '(nothing shown)'}")
    return "\n".join(lines)


def format_reports(reports: dict[str, dict], k: int) -> str:
    keys = [f"hit@{k}", "precision", "coverage", "wrong-rate", "pictures-with-wrong", "jargon-rate", "mean-shown"]
    head = f"{'set':<12} {'n':>4} " + " ".join(f"{key:>19}" for key in keys)
    lines = [head]
    for name in ("fit", "test", "test/photo", "test/art", "all"):
        if name not in reports:
            continue
        r = reports[name]
        cells = [f"{r[key]:>19.3f}" if key in r else f"{'-':>19}" for key in keys]
        lines.append(f"{name:<12} {r['counts']['pictures']:>4} " + " ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from autotag.evaluate import shown_tags_evaluation
    from autotag.pipeline import TagOptions

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=ROOT / ".cache" / "realphotos")
    ap.add_argument("--model", default=None, help="encoder name or trained model folder (default: settings)")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--top-k", type=int, default=TagOptions.top_k)
    ap.add_argument("--threshold", type=float, default=TagOptions.threshold)
    ap.add_argument("--no-ancestors", action="store_true")
    ap.add_argument("--no-synonyms", action="store_true", help="match the displayed string only")
    ap.add_argument("--no-build", action="store_true", help="score the folder as it is, without rebuilding")
    ap.add_argument("--table", action="store_true", help="print the per-picture table")
    ap.add_argument("--json", type=Path, help="write reports and the per-picture table here")
    args = ap.parse_args(argv)

    dataset = load_benchmark(args.dir, build=not args.no_build)
    options = TagOptions(top_k=args.top_k, threshold=args.threshold, categories=not args.no_ancestors)
    shown, seconds = run_tagger(dataset, args.model, options)
    allowed = plain_words(dataset)
    synonyms = not args.no_synonyms
    reports = shown_tags_evaluation(dataset, shown, k=args.k, allowed=allowed, synonyms=synonyms)
    rows = picture_rows(dataset, shown, allowed, synonyms)
    stamp = datetime.date.today().isoformat()
    print(
        f"real-photo benchmark: {len(dataset)} pictures, model {args.model or 'default'}, {options}, "
        f"synonyms={synonyms}; {stamp}, {platform.machine()} {os.cpu_count()} CPUs, tagging {seconds:.1f} s"
    )
    print(format_reports(reports, args.k))
    if args.table:
        print(format_rows(rows))
    if args.json:
        args.json.write_text(json.dumps({"date": stamp, "options": str(options), "reports": reports, "pictures": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
