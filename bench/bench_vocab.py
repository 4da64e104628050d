"""Hashtags and a user's own vocabulary through the consumer vocabulary, on the real-photo benchmark:
operating points fitted on the FIT split (target precision 0.9), precision and coverage on the TEST split,
for the shipped hashtags and for a wallpaper site's own 12 tags (bench/custom_vocab.yaml); the old
class-level hashtag suggester (flat fallback threshold, fitted on 19 bundled photos) side by side.

    nice -n 10 .venv/bin/python bench/bench_vocab.py [--dir .cache/realphotos] [--write] [--audit]

--audit measures the tag audit instead: each picture's right tags are typed tags to keep, its clearly
wrong tags typed tags to flag; the flag cut is fitted on the fit split (--write stores it).

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

from autotag.encoders.views import TAGGER_VIEWS  # noqa: E402
from bench_consumer import DEFAULT_DIR, load_set, on_plain_background, view_probabilities  # noqa: E402

TAXONOMY = ROOT / "src" / "autotag" / "taxonomy"
SCENES_OOF = ROOT / ".cache" / "bench" / "scenes_oof.json"  # scripts/train_scenes.py --oof
EMBEDDINGS = ROOT / ".cache" / "bench" / "scenes"  # shared with scripts/train_scenes.py
STYLES = ROOT / ".cache" / "bench" / "styles"  # each picture's style verdict, by content
STYLES_OOF = ROOT / ".cache" / "bench" / "styles_oof.json"  # scripts/train_style.py --fit-oof


def evaluate(suggester: Any, probs: np.ndarray, truth: np.ndarray, scenes: Any = None,
             styles: Any = None) -> dict[str, Any]:  # fmt: skip
    out = suggester.evaluate(probs, truth, scenes=scenes, styles=styles)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def consumer_mapping(vocab: Any, classes: Any = None) -> Any:
    from autotag.read import ART_STYLES
    from autotag.taxonomy.consumer import default_consumer
    from autotag.taxonomy.mapping import map_onto_consumer

    return map_onto_consumer(vocab, default_consumer(), classes, ART_STYLES)


def scene_words(entries: list[dict]) -> list[dict[str, float]] | None:
    """Each picture's scene words as the tagger sees them: on the FIT split from the scene models that
    did not see the picture (scripts/train_scenes.py --oof), on the TEST split from the shipped ones
    (embeddings cached per picture); no place word on a plain background (decisions.scenes_seen); None
    without the out-of-fold file (run train_scenes.py --oof)."""
    import hashlib

    from autotag.heads.scenes import scene_evidence
    from autotag.taxonomy.decisions import scenes_seen

    if not SCENES_OOF.is_file():
        print(f"no {SCENES_OOF}: hashtags without scene words (scripts/train_scenes.py --oof {SCENES_OOF})")
        return None
    oof = json.loads(SCENES_OOF.read_text())
    EMBEDDINGS.mkdir(parents=True, exist_ok=True)
    out, tagger = [], None
    for e in entries:
        if e["split"] == "fit":
            out.append(oof.get(e["id"], {}))
            continue
        digest = hashlib.sha1(Path(e["path"]).read_bytes()).hexdigest()[:20]
        f = EMBEDDINGS / f"efficientnet_lite0-{TAGGER_VIEWS}-{digest}.npy"  # train_scenes.py's name for it
        if not f.is_file():
            from autotag.pipeline import Tagger

            tagger = tagger or Tagger.load(None)
            np.save(f, tagger.embed([e["path"]])[0])
        out.append(scene_evidence(np.load(f)))
    return [scenes_seen(words, plain) for words, plain in zip(out, on_plain_background(entries), strict=True)]


def style_words(entries: list[dict], suggester: Any) -> list[dict[str, float]] | None:
    """Each picture's art style evidence as the tagger reads it ({style: P(art) * P(style | art)}, {} for a
    photo): on the FIT split from the style heads trained without it (scripts/train_style.py --fit-oof;
    the shipped head was trained on FIT, its verdicts there are in-sample), on the TEST split from the
    shipped head as `autotag hashtags` reads it for `suggester` (one whose tags read styles), cached per
    picture; None without the held-out file."""
    import hashlib

    from autotag.pipeline import Tagger
    from autotag.suggest.hashtags import style_words_reader

    if not STYLES_OOF.is_file():
        print(f"no {STYLES_OOF}: no picture styles (scripts/train_style.py --out /tmp/x.npz --fit-oof {STYLES_OOF})")
        return None
    oof = json.loads(STYLES_OOF.read_text())
    missing = [e["id"] for e in entries if e["split"] == "fit" and e["id"] not in oof]
    if missing:  # a FIT picture not in the file: a stale file, not a photo
        raise SystemExit(f"{STYLES_OOF} lacks FIT pictures {missing[:5]}: rerun scripts/train_style.py --fit-oof")
    STYLES.mkdir(parents=True, exist_ok=True)
    files = {i: STYLES / f"{TAGGER_VIEWS}-{hashlib.sha1(Path(e['path']).read_bytes()).hexdigest()[:20]}.json"
             for i, e in enumerate(entries) if e["split"] != "fit"}  # fmt: skip
    todo = [i for i, f in files.items() if not f.is_file()]
    if todo:
        tagger = Tagger.load(None)
        read = style_words_reader(tagger, suggester)
        paths = [entries[i]["path"] for i in todo]
        for i, item in zip(todo, tagger.stream(paths, decide=False, keep_images=True), strict=True):
            files[i].write_text(json.dumps(read(item)))
    return [oof[e["id"]] if e["split"] == "fit" else json.loads(files[i].read_text()) for i, e in enumerate(entries)]


def run(name: str, vocab: Any, mapping: Any, entries: list[dict], probs: np.ndarray,
        scenes: list[dict[str, float]] | None = None,
        styles: list[dict[str, float]] | None = None) -> tuple[Any, dict]:  # fmt: skip
    from autotag.suggest.hashtags import ConsumerHashtagSuggester, fit_on_pictures
    from autotag.taxonomy.mapping import tag_truth

    truth = tag_truth(mapping, vocab, [e["tags"] for e in entries])
    fit = np.array([e["split"] == "fit" for e in entries])
    photo = np.array([e["kind"] == "photo" for e in entries])

    def of(rows: np.ndarray, words: list[dict[str, float]] | None = scenes) -> list[dict[str, float]] | None:
        return None if words is None else [words[i] for i in np.flatnonzero(rows)]

    suggester = ConsumerHashtagSuggester(mapping)
    styles = styles if suggester.reads_styles else None
    points = fit_on_pictures(suggester, probs[fit], truth[fit], scenes=of(fit), styles=of(fit, styles), meta={
        "fitted_on": f"fit split of bench/realphotos ({int(fit.sum())} pictures), target precision 0.9"
                     + (", out-of-fold scene words" if scenes is not None else "")
                     + (", style verdicts of the style heads trained without fit" if styles else ""),
        "date": datetime.date.today().isoformat()})  # fmt: skip
    test = ~fit

    def score(rows: np.ndarray) -> dict[str, Any]:
        return evaluate(suggester, probs[rows], truth[rows], of(rows), of(rows, styles))

    row = {
        "vocabulary": name, "unreachable": mapping.unreachable(), "pooled threshold": round(points.default, 3),
        "per-tag": {k: round(v, 3) for k, v in points.per_tag.items()},
        "test": score(test), "test photos": score(test & photo), "fit": score(fit),
    }  # fmt: skip
    return suggester, row


def audit_rates(audits: list[list[Any]], truth: list[list[bool]]) -> dict[str, Any]:
    """Right tags (truth True) should pass, clearly-wrong ones (False) be flagged; 'cannot judge' apart."""
    pairs = [(a, t) for row, ts in zip(audits, truth, strict=True) for a, t in zip(row, ts, strict=True)]
    right = [a for a, t in pairs if t]
    wrong = [a for a, t in pairs if not t]

    def share(items: list[Any], test: Any) -> float:
        return round(sum(1 for a in items if test(a)) / max(len(items), 1), 3)

    return {
        "right tags": len(right), "right flagged": share(right, lambda a: a.flagged),
        "right cannot judge": share(right, lambda a: not a.judged),
        "wrong tags": len(wrong), "wrong flagged": share(wrong, lambda a: a.flagged),
        "wrong cannot judge": share(wrong, lambda a: not a.judged),
    }  # fmt: skip


def audit_bench(entries: list[dict], probs: np.ndarray, write: bool) -> list[dict[str, Any]]:
    """The audit with the benchmark's right tags as the tags to keep and its wrong tags as the ones to flag:
    the flag cut is fitted on the fit split (best flagged-wrong minus flagged-right), reported on test."""
    from autotag.suggest.audit import ConsumerAuditor, imagenet_auditor, imagenet_concepts
    from autotag.taxonomy.decisions import ConsumerParams, default_params

    tags = [e["tags"] + e["wrong"] for e in entries]
    truth = [[True] * len(e["tags"]) + [False] * len(e["wrong"]) for e in entries]
    split = {s: [i for i, e in enumerate(entries) if e["split"] == s] for s in ("fit", "test")}
    auditor = ConsumerAuditor()
    best = None
    for cut in (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5):
        r = audit_rates([auditor.audit(probs[i], tags[i], flag_below=cut) for i in split["fit"]],
                        [truth[i] for i in split["fit"]])  # fmt: skip
        gain = r["wrong flagged"] - r["right flagged"]
        if best is None or gain > best[0]:
            best = (gain, cut)
    cut = best[1]  # type: ignore[index]
    rows = []
    for name in ("fit", "test"):
        idx = split[name]
        new = [auditor.audit(probs[i], tags[i], flag_below=cut) for i in idx]
        rows.append({"audit": f"consumer (cut {cut}, fitted on fit)", "split": name,
                     **audit_rates(new, [truth[i] for i in idx])})  # fmt: skip
    old = imagenet_auditor()
    idx = split["test"]
    _, concept_scores = imagenet_concepts(probs[idx])
    rows.append({"audit": "before (text similarity to WordNet concepts, cut 0.15)", "split": "test",
                 **audit_rates([old.audit(concept_scores[k], tags[i]) for k, i in enumerate(idx)],
                               [truth[i] for i in idx])})  # fmt: skip
    if write:
        fitted = TAXONOMY / "consumer_fitted.json"
        params = default_params()
        raw = params.to_dict()
        raw["audit_flag_below"] = cut
        ConsumerParams.from_dict(raw).save(fitted)
        print(f"wrote audit_flag_below = {cut} into {fitted}")
    return rows


def main(argv: list[str] | None = None) -> int:
    from autotag.suggest.hashtags import ConsumerHashtagSuggester, HashtagSuggester
    from autotag.taxonomy.mapping import Mapping, map_labels, source_labels, tag_truth
    from autotag.taxonomy.vocabulary import load_vocabulary

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the built benchmark (make realphotos)")
    ap.add_argument("--custom", type=Path, default=ROOT / "bench" / "custom_vocab.yaml")
    ap.add_argument("--write", action="store_true", help="store the shipped hashtag mapping and operating points")
    ap.add_argument("--audit", action="store_true", help="only the audit (right tags kept, wrong tags flagged)")
    ap.add_argument("--no-scenes", action="store_true", help="hashtags from class probabilities alone (as before)")
    ap.add_argument("--no-styles", action="store_true", help="no picture styles (a site's 'abstract' unreachable)")
    args = ap.parse_args(argv)

    entries = load_set(args.dir)
    probs = view_probabilities(entries, TAGGER_VIEWS)
    if args.audit:
        for r in audit_bench(entries, probs, args.write):
            print(json.dumps(r))
        return 0
    rows = []
    hashtags = load_vocabulary()
    classes = Mapping.from_dict(json.loads((TAXONOMY / "hashtags_imagenet.json").read_text()))  # reviewed
    shipped_map = consumer_mapping(hashtags, classes)
    custom = load_vocabulary(args.custom)
    custom_classes = map_labels(source_labels("imagenet"), custom, use_text=False, source="imagenet")
    custom_map = consumer_mapping(custom, custom_classes)
    scenes = None if args.no_scenes else scene_words(entries)
    # the site's 'abstract' is earned by a style (the shipped hashtags read none)
    styles = None if args.no_styles else style_words(entries, ConsumerHashtagSuggester(custom_map))
    shipped, row = run("hashtags (shipped)", hashtags, shipped_map, entries, probs, scenes, styles)
    rows.append(row)
    _, row = run(f"{custom.name} (custom, 12 tags)", custom, custom_map, entries, probs, scenes, styles)
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
