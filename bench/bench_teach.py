"""Teach a tag by example (autotag.heads.learned_tag): few-shot curve, accept/reject rounds, speed.

Libraries (embeddings of the default encoder, from and into the embedding cache):
- Fashion-MNIST: the 10,000 test images; each class in turn is the tag, taught with 1, 2, 5, 10 and 20
  random examples (several draws); the score is the average precision of finding the rest of the
  class among the other images. Baseline in the same run: the default model's ImageNet classes mapped
  onto the garment (autotag.evaluate.default_model_scores, what `autotag eval` reports), and the class
  prototype (cosine to the examples' mean), the simplest learner.
- FashionMosaic: the 5,000 test mosaics of `autotag mosaic` (seed 0); a garment class is the tag
  (an image may hold several). Baselines: the ImageNet mapping, and the uploaders' own noisy tags
  (an image carrying one of the class's words ranks first).
- The real-photo benchmark (bench/realphotos, `make realphotos`): the concepts sky, plant, water,
  mountain, flower, food, people over all its pictures. Baseline: the default tagger's own tag
  (consumer vocabulary + detector) with its score, 0 when it does not say the word.

Rounds: from 2 examples, a simulated owner judges 10 suggestions per round (accepts the right ones,
rejects the others) and the tag is retrained; AP on the images not yet judged, and the precision and
recall of the tag as applied (score >= threshold) against the fitted threshold's target.

Speed: teach -> every library image scored and ranked, on the 10,000-image library, median of
repeats, interleaved with the prototype (wall and CPU time: the machine is shared).

Every choice of the learner was made on a development library (the first 6,000 Fashion-MNIST train
images, `--dev`), never on these.

    PYTHONPATH=src python bench/bench_teach.py [--draws 5] [--sets fashion,mosaic,realphotos]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from autotag.heads.learned_tag import BACKGROUND_SAMPLE, TeachingSpace, fit_logistic, regularisation, suggestion_order
from autotag.metrics import average_precision

SHOTS = (1, 2, 5, 10, 20)
CONCEPTS = ("sky", "plant", "water", "mountain", "flower", "food", "people")
ROUNDS, PER_ROUND, ROUND_START = 5, 10, 2


# --------------------------------------------------------------------------------------- libraries


def _encode(sources: Sequence[str], progress: bool) -> tuple[np.ndarray, np.ndarray]:
    from autotag.evaluate import encode_records
    from autotag.pipeline import Tagger

    encoded = encode_records(Tagger.load(objects=False), list(sources), cache=True, progress=progress)
    if not encoded.ok.all():
        raise SystemExit(f"{int((~encoded.ok).sum())} images could not be encoded: {encoded.errors}")
    return encoded.embeddings, encoded.logits


def _cache_dir() -> Path:
    from autotag.config import load_settings

    return Path(load_settings().cache_dir)


def fashion_library(
    split: str = "test", limit: int | None = None, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Fashion-MNIST split as a library: (class index (N,), embeddings, logits). The test split
    (10,000 images) is the evaluation library; the first images of the train split are the
    development library on which every choice of the learner was made.

    The images are written once as PNGs into the cache folder; encoder outputs come from (and fill)
    the embedding cache, so only the first run pays for the encoder.
    """
    from PIL import Image

    from autotag.data.fashion_mnist import read_fashion_mnist

    images, labels = read_fashion_mnist(None, split)
    images, labels = images[:limit], labels[:limit]
    folder = _cache_dir() / "datasets" / f"fashion-mnist-{split}"
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for i, img in enumerate(images):
        path = folder / f"{split}_{i:05d}.png"
        if not path.exists():
            buf = io.BytesIO()
            Image.fromarray(img, mode="L").save(buf, format="PNG")
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(buf.getvalue())
            os.replace(tmp, path)
        sources.append(str(path))
    embeddings, logits = _encode(sources, progress)
    return labels, embeddings, logits


def one_hot(labels: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=bool)[labels]


def mosaic_library(progress: bool = False) -> dict:
    """The 5,000 FashionMosaic test mosaics (the test split does not depend on the train size)."""
    from autotag.data import load_dataset, write_fashion_mosaic
    from autotag.data.mosaic import CLASS_WORDS

    folder = write_fashion_mosaic(_cache_dir() / "datasets" / "fashion-mosaic-test", n_train=0, n_val=0, n_test=5000)
    data = load_dataset(f"fashion-mosaic:{folder}")
    embeddings, logits = _encode(data.sources, progress)
    labels = list(data.labels)
    words = {c: set(CLASS_WORDS[c]) for c in labels}
    user = np.array([[bool(words[c] & set(r.user_tags)) for c in labels] for r in data.records], np.float32)
    return {"Y": data.label_matrix().astype(bool), "labels": labels, "emb": embeddings, "logits": logits, "user": user}


def realphoto_library(root: str, progress: bool = False) -> dict:
    """The real-photo benchmark: concept matrix, embeddings, and the default tagger's score of each concept."""
    from autotag.data import load_dataset
    from autotag.pipeline import Tagger

    data = load_dataset(f"realphotos:{root}")
    embeddings, _ = _encode(data.sources, progress)
    Y = np.array([[c in r.labels for c in CONCEPTS] for r in data.records], bool)
    said = np.zeros(Y.shape, np.float32)
    for i, item in enumerate(Tagger.load().stream(data.sources)):
        scores = {t.name: t.score for t in item.tags or []}
        said[i] = [scores.get(c, 0.0) for c in CONCEPTS]
    return {"Y": Y, "labels": list(CONCEPTS), "emb": embeddings, "said": said}


def imagenet_mass(logits: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """(N, L) ImageNet probability mass on the classes mapped to each label (multi-label: not renormalised)."""
    from autotag.evaluate import imagenet_label_mapping
    from autotag.pipeline import softmax

    matrix, _ = imagenet_label_mapping(list(labels))
    return softmax(logits.astype(np.float64)) @ matrix


# ----------------------------------------------------------------------------------------- methods

Scorer = Callable[[TeachingSpace, np.ndarray, np.ndarray], tuple[np.ndarray, float | None]]


def learned(space: TeachingSpace, examples: np.ndarray, rejected: np.ndarray) -> tuple[np.ndarray, float | None]:
    """The learner; `examples` and `rejected` are row numbers of the library the space was built from."""
    emb = space.embeddings
    judged = np.r_[examples, rejected].astype(np.int64)
    model = space.teach("tag", emb[examples], emb[rejected] if len(rejected) else None, judged_rows=judged)
    return space.scores(model), model.threshold


def prototype(space: TeachingSpace, examples: np.ndarray, rejected: np.ndarray) -> tuple[np.ndarray, float | None]:
    """Cosine to the examples' mean in the same features (the learner's limit under strong regularisation)."""
    mean = space.features[examples].mean(0)
    return space.features @ (mean / np.linalg.norm(mean)), None


GRAPH_NEIGHBOURS = 10


def graph_features(features: np.ndarray, k: int = GRAPH_NEIGHBOURS, block: int = 1024) -> np.ndarray:
    """Measured, not shipped (`--graph`): each picture's features plus the mean of its k nearest
    library neighbours' and of their neighbours' (two hops over the library's k-NN graph), centred and
    unit length. The learner over these ranks with the library's structure, but the graph needs every
    pair's similarity (N^2 D: seconds on 10,000 pictures, redone when the library changes) and a new
    picture is scored only with the library at hand."""
    n = len(features)
    nn = np.empty((n, k), np.int64)
    for s in range(0, n, block):
        sims = features[s : s + block] @ features.T
        sims[np.arange(len(sims)), np.arange(s, s + len(sims))] = -np.inf
        nn[s : s + block] = np.argpartition(sims, -k, axis=1)[:, -k:]

    def neighbour_mean(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x[nn[s : s + block]].mean(1) for s in range(0, n, block)])

    one = neighbour_mean(features)
    g = features + one + neighbour_mean(one)
    g -= g.mean(0)
    return (g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32)


def graph_smoothed(space: TeachingSpace, examples: np.ndarray, rejected: np.ndarray) -> tuple[np.ndarray, None]:
    """The learner's logistic regression (same weights, regularisation and prototype start) over the
    graph-smoothed features; ranking only (no threshold)."""
    if getattr(space, "graph", None) is None:
        space.graph = graph_features(space.features)  # type: ignore[attr-defined]
        size = min(BACKGROUND_SAMPLE, len(space))
        space.graph_sample = np.random.default_rng(0).choice(len(space), size, replace=False)  # type: ignore[attr-defined]
    h = space.graph  # type: ignore[attr-defined]
    judged = np.r_[examples, rejected].astype(np.int64)
    background = space.graph_sample[~np.isin(space.graph_sample, judged)]  # type: ignore[attr-defined]
    z = np.concatenate([h[examples], h[rejected], h[background]])
    y = np.r_[np.ones(len(examples)), np.zeros(len(rejected) + len(background))]
    weights = np.r_[np.full(len(examples), 1 / len(examples)), np.full(len(rejected), 1 / len(examples)),
                    np.full(len(background), 1 / BACKGROUND_SAMPLE)].astype(np.float32)  # fmt: skip
    prior = h[examples].mean(0)
    w, b = fit_logistic(z, y, weights, regularisation(len(examples)), prior / np.linalg.norm(prior))
    return h @ w[:, 0] + b[0], None


METHODS: dict[str, Scorer] = {"learned": learned, "prototype": prototype}


def make_space(emb: np.ndarray) -> TeachingSpace:
    space = TeachingSpace(emb)
    space.embeddings = emb  # type: ignore[attr-defined]  (the bench's methods take row numbers)
    return space


# ---------------------------------------------------------------------------------------- measures


def few_shot(emb: np.ndarray, Y: np.ndarray, shots: Sequence[int], draws: int, seed: int = 0) -> dict:
    """{method: {shots: {"ap": mean AP, "per_label": [...], "precision", "recall" at the threshold}}}."""
    out: dict = {m: {} for m in METHODS}
    rng = np.random.default_rng(seed)
    space = make_space(emb)
    for k in shots:
        rows: dict[str, list] = {m: [[] for _ in range(Y.shape[1])] for m in METHODS}
        cut: list[tuple[float, float]] = []
        for c in range(Y.shape[1]):
            members = np.flatnonzero(Y[:, c])
            if len(members) < k + 1:
                continue
            for _ in range(draws):
                examples = rng.choice(members, k, replace=False)
                rest = np.ones(len(Y), bool)
                rest[examples] = False
                for name, method in METHODS.items():
                    scores, threshold = method(space, examples, np.zeros(0, np.int64))
                    rows[name][c].append(average_precision(Y[rest, c], scores[rest]))
                    if threshold is not None:
                        cut.append(_precision_recall(Y[rest, c], scores[rest] >= threshold))
        for name in METHODS:
            per_label = [float(np.mean(r)) if r else float("nan") for r in rows[name]]
            entry = {"ap": float(np.nanmean(per_label)), "per_label": per_label}
            if name == "learned" and cut:
                entry["precision"] = float(np.mean([p for p, _ in cut]))
                entry["recall"] = float(np.mean([r for _, r in cut]))
            out[name][k] = entry
    return out


def _precision_recall(truth: np.ndarray, tagged: np.ndarray) -> tuple[float, float]:
    precision = float(truth[tagged].mean()) if tagged.any() else 1.0
    return precision, float(truth[tagged].sum() / max(1, truth.sum()))


def baseline_ap(scores: np.ndarray, Y: np.ndarray) -> list[float]:
    return [average_precision(Y[:, c], scores[:, c]) if Y[:, c].any() else float("nan") for c in range(Y.shape[1])]


def rounds(
    emb: np.ndarray, Y: np.ndarray, strategy: str, draws: int, seed: int = 0, n_rounds: int = ROUNDS
) -> list[dict]:
    """Accept/reject rounds from ROUND_START examples: per round the mean AP on images not yet judged and
    the precision/recall of the applied tag (over every image not given as an example)."""
    rng = np.random.default_rng(seed)
    space = TeachingSpace(emb)
    per_round: list[list[tuple[float, float, float, int]]] = [[] for _ in range(n_rounds + 1)]
    for c in range(Y.shape[1]):
        members = np.flatnonzero(Y[:, c])
        if len(members) < ROUND_START + 1:
            continue
        for _ in range(draws):
            accepted = list(rng.choice(members, ROUND_START, replace=False))
            rejected: list[int] = []
            for r in range(n_rounds + 1):
                model = space.teach(
                    "tag", emb[accepted], emb[rejected] if rejected else None, judged_rows=accepted + rejected
                )
                scores = space.scores(model)
                judged = np.array(accepted + rejected, np.int64)
                rest = np.ones(len(Y), bool)
                rest[judged] = False
                ap = average_precision(Y[rest, c], scores[rest])
                tagged = scores >= model.threshold
                tagged[accepted] = True
                tagged[rejected] = False
                precision, recall = _precision_recall(Y[:, c], tagged)
                per_round[r].append((ap, precision, recall, len(rejected)))
                if r == n_rounds:
                    break
                if strategy == "top":
                    order = np.argsort(-scores, kind="stable")
                    order = order[~np.isin(order, judged)]
                else:
                    order = suggestion_order(scores, model.threshold, judged)
                for i in order[:PER_ROUND]:
                    (accepted if Y[i, c] else rejected).append(int(i))
    return [
        {
            "round": r,
            "ap": float(np.nanmean([a for a, _, _, _ in rows])),
            "precision": float(np.mean([p for _, p, _, _ in rows])),
            "recall": float(np.mean([q for _, _, q, _ in rows])),
            "rejections": float(np.mean([n for _, _, _, n in rows])),
        }
        for r, rows in enumerate(per_round)
    ]


def timing(emb: np.ndarray, Y: np.ndarray, repeats: int, shots: int = 10) -> dict:
    """Seconds from example ids to every library image scored and ranked, wall and CPU, median of
    repeats. "warm": the library's TeachingSpace is already built (a library keeps it between
    teachings); "cold": building it is included. Learner and prototype alternate, so both see the
    same machine load."""
    rng = np.random.default_rng(1)
    samples: dict[str, list[tuple[float, float]]] = {}
    for i in range(repeats):
        examples = rng.choice(np.flatnonzero(Y[:, i % Y.shape[1]]), shots, replace=False)
        wall, cpu = time.perf_counter(), time.process_time()
        space = make_space(emb)
        built = (time.perf_counter() - wall, time.process_time() - cpu)
        for name in ("learned", "prototype"):
            method = METHODS[name]
            wall, cpu = time.perf_counter(), time.process_time()
            scores, _ = method(space, examples, np.zeros(0, np.int64))
            np.argsort(-scores)
            warm = (time.perf_counter() - wall, time.process_time() - cpu)
            samples.setdefault(f"{name} (warm)", []).append(warm)
            samples.setdefault(f"{name} (cold)", []).append((warm[0] + built[0], warm[1] + built[1]))
    return {
        name: {
            "wall": statistics.median(w for w, _ in s),
            "cpu": statistics.median(c for _, c in s),
            "repeats": repeats,
        }
        for name, s in samples.items()
    }


def library_timing(emb: np.ndarray, Y: np.ndarray, logits: np.ndarray, repeats: int, shots: int = 10) -> dict:
    """The whole road through the library object on a 10,000-image SQLite library: Library.teach with
    library ids -> model fitted, stored as a new version with the tag's predictions, images ranked and
    suggestions picked. The library is filled from the cached encoder outputs (Library.add_items, as a
    batch import does); each repeat teaches a new tag in a process that keeps the library open (a
    server), and the first one, which also builds the TeachingSpace, is reported apart."""
    import tempfile

    from autotag.library import IngestReport, Library
    from autotag.pipeline import Item

    folder = Path(tempfile.mkdtemp(prefix="bench-teach-"))
    rng = np.random.default_rng(2)
    with Library.open(str(folder / "library.db")) as library:
        items = [Item(f"fashion-{i:05d}.png", f"{i:064x}", {"width": 28, "height": 28}, embedding=e, logits=lg)
                 for i, (e, lg) in enumerate(zip(emb, logits, strict=True))]  # fmt: skip
        for start in range(0, len(items), 1000):
            library.add_items(items[start : start + 1000], library.model_name, IngestReport())
        ids = library.index.ids()
        walls, cpus = [], []
        for r in range(repeats + 1):
            examples = rng.choice(np.flatnonzero(Y[:, r % Y.shape[1]]), shots, replace=False)
            wall, cpu = time.perf_counter(), time.process_time()
            taught = library.teach(f"tag{r}", [int(ids[i]) for i in examples])
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            assert len(taught.suggestions) > 0
    return {
        "first": {"wall": walls[0], "cpu": cpus[0]},
        "warm": {"wall": statistics.median(walls[1:]), "cpu": statistics.median(cpus[1:]), "repeats": repeats},
    }


# ------------------------------------------------------------------------------------------ report


def curve_table(
    title: str, curve: dict, baselines: dict[str, float], labels: Sequence[str], shots: Sequence[int]
) -> str:
    lines = [f"### {title}", "", "| method | " + " | ".join(f"{k} ex." for k in shots) + " |",
             "|---|" + "---:|" * len(shots)]  # fmt: skip
    for name in METHODS:
        lines.append(f"| {name} | " + " | ".join(f"{curve[name][k]['ap']:.3f}" for k in shots) + " |")
    for name, value in baselines.items():
        lines.append(f"| {name} (no examples) | " + " | ".join(f"{value:.3f}" for _ in shots) + " |")
    cut = [curve["learned"][k] for k in shots]
    if any("precision" in c for c in cut):
        pairs = [f"{c.get('precision', float('nan')):.2f} / {c.get('recall', float('nan')):.2f}" for c in cut]
        lines.append("| learned: precision / recall at its threshold | " + " | ".join(pairs) + " |")
    per_label = [f"{lab} " + "/".join(f"{c['per_label'][j]:.2f}" for c in cut) for j, lab in enumerate(labels)]
    lines += ["", "Per label (learned, AP): " + ", ".join(per_label)]
    return "\n".join(lines)


def realphoto_table(n: int, positives: np.ndarray, base: list[float], curve: dict, shots: Sequence[int]) -> str:
    """Per concept: its pictures, the default tagger's AP, the learner's AP by examples ("-": too few
    pictures to hold the examples and one more to find); the mean only over concepts every column has."""
    lines = [f"### Real photos ({n} pictures; every concept taught in turn)", "",
             "| concept | pictures | default tagger | " + " | ".join(f"{k} ex." for k in shots) + " |",
             "|---|---:|---:|" + "---:|" * len(shots)]  # fmt: skip
    for j, concept in enumerate(CONCEPTS):
        cells = [curve["learned"][k]["per_label"][j] for k in shots]
        shown = " | ".join("-" if np.isnan(c) else f"{c:.2f}" for c in cells)
        lines.append(f"| {concept} | {int(positives[j])} | {base[j]:.2f} | {shown} |")
    full = [j for j in range(len(CONCEPTS)) if not any(np.isnan(curve["learned"][k]["per_label"][j]) for k in shots)]
    if full:
        means = " | ".join(f"{np.mean([curve['learned'][k]['per_label'][j] for j in full]):.2f}" for k in shots)
        names = ", ".join(CONCEPTS[j] for j in full)
        lines.append(f"| mean of {names} | | {np.mean([base[j] for j in full]):.2f} | {means} |")
    return "\n".join(lines)


def rounds_table(title: str, by_strategy: dict[str, list[dict]]) -> str:
    lines = [f"### {title}", "", "| strategy | round | judged | rejections | AP (unjudged) | precision | recall |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for strategy, rows in by_strategy.items():
        for row in rows:
            judged = ROUND_START + PER_ROUND * row["round"]
            lines.append(f"| {strategy} | {row['round']} | {judged} | {row['rejections']:.1f} | {row['ap']:.3f} | "
                         f"{row['precision']:.2f} | {row['recall']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="fashion,mosaic,realphotos")
    parser.add_argument("--draws", type=int, default=5, help="random example draws per label and size")
    parser.add_argument("--shots", default=",".join(map(str, SHOTS)))
    parser.add_argument("--rounds", default="top,uncertain", help="accept/reject strategies ('' for none)")
    parser.add_argument("--repeats", type=int, default=15, help="timing repeats")
    parser.add_argument("--realphotos", default=".cache/realphotos", help="built real-photo benchmark folder")
    parser.add_argument("--dev", action="store_true", help="the development library instead of the test split")
    parser.add_argument("--json", help="write every figure here")
    parser.add_argument("--graph", action="store_true", help="also measure the graph-smoothed learner (not shipped)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the example draws")
    parser.add_argument("--encode-only", action="store_true", help="fill the embedding cache and stop")
    args = parser.parse_args()
    if args.graph:
        METHODS["graph-smoothed (not shipped)"] = graph_smoothed
    shots = [int(s) for s in args.shots.split(",") if s]
    strategies = [s for s in args.rounds.split(",") if s]
    sets = set(args.sets.split(","))
    report: dict = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "load": os.getloadavg()}
    out: list[str] = []

    if "fashion" in sets:
        split, limit = ("train", 6000) if args.dev else ("test", None)
        labels, emb, logits = fashion_library(split, limit, progress=True)
        if args.encode_only:
            return
        from autotag.data import FASHION_MNIST_CLASSES
        from autotag.evaluate import default_model_scores

        Y = one_hot(labels, len(FASHION_MNIST_CLASSES))
        mapped, _ = default_model_scores(logits, FASHION_MNIST_CLASSES)
        base = float(np.nanmean(baseline_ap(mapped, Y)))
        curve = few_shot(emb, Y, shots, args.draws, args.seed)
        name = f"Fashion-MNIST ({split}, {len(Y)} images)"
        out.append(curve_table(name, curve, {"ImageNet mapping": base}, FASHION_MNIST_CLASSES, shots))
        report["fashion"] = {"curve": curve, "imagenet_mapping": base}
        if strategies:
            by = {s: rounds(emb, Y, s, max(1, args.draws // 2)) for s in strategies}
            out.append(rounds_table(f"{name}: accept/reject rounds", by))
            report["fashion"]["rounds"] = by
        if args.repeats:
            speed = timing(emb, Y, args.repeats)
            report["speed"] = speed
            whole = library_timing(emb, Y, logits, max(3, args.repeats // 3))
            speed["Library.teach (first, builds the space)"] = whole["first"]
            speed["Library.teach (library open)"] = whole["warm"]
            lines = [f"- {n}: {s['wall'] * 1000:.0f} ms wall, {s['cpu'] * 1000:.0f} ms CPU" for n, s in speed.items()]
            out.append(
                f"### Speed ({len(Y)}-image library, 10 examples, median of {args.repeats})\n\n" + "\n".join(lines)
            )
        print("\n\n".join(out), flush=True)

    if "mosaic" in sets and not args.dev:
        lib = mosaic_library(progress=True)
        Y = lib["Y"]
        bases = {
            "ImageNet mapping": float(np.nanmean(baseline_ap(imagenet_mass(lib["logits"], lib["labels"]), Y))),
            "uploaders' tags": float(np.nanmean(baseline_ap(lib["user"], Y))),
        }
        curve = few_shot(lib["emb"], Y, shots, args.draws)
        name = f"FashionMosaic (test, {len(Y)} mosaics)"
        blocks = [curve_table(name, curve, bases, lib["labels"], shots)]
        report["mosaic"] = {"curve": curve, **bases}
        if strategies:
            by = {s: rounds(lib["emb"], Y, s, max(1, args.draws // 2)) for s in strategies}
            blocks.append(rounds_table(f"{name}: accept/reject rounds", by))
            report["mosaic"]["rounds"] = by
        out += blocks
        print("\n\n".join(blocks), flush=True)

    if "realphotos" in sets and not args.dev:
        lib = realphoto_library(args.realphotos, progress=True)
        Y = lib["Y"]
        base = baseline_ap(lib["said"], Y)
        small = [k for k in shots if k <= 10]
        curve = few_shot(lib["emb"], Y, small, args.draws * 2)
        out.append(realphoto_table(len(Y), Y.sum(0), base, curve, small))
        report["realphotos"] = {"curve": curve, "default_tagger": base, "positives": Y.sum(0).tolist()}
        print(out[-1], flush=True)

    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
