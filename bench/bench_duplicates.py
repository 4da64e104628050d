"""Duplicate detection on real wallpapers and real photos, with generated copies of each.

Pictures: the Debian wallpapers of bench/wallpaper_set.py (gnome-backgrounds, lomiri-wallpapers*,
sway-backgrounds, xfdesktop4-data, desktop-base: photographs, gradients, stripes, soft waves, flat
colours) and the bundled scikit-image / scikit-learn photos. Every picture gets eight seeded copies:
JPEG re-encode (quality 30-90), WebP q60, half size, 320 px JPEG thumbnail, 10% crop (random offset),
brightness x1.25 and x0.8, and (beyond the issue's list) a 4-degree rotation. Truth: two images are
duplicates iff they come from the same picture. GNOME's light and dark editions of one design
(blobs-d / blobs-l ...) are different pictures here, the hardest negatives of the set.

Thresholds were chosen on the dev half (every other design, light/dark editions kept together);
the test half and the photos are reported apart. The previous rule (pHash <= 6 bits or cosine >= 0.80,
joined by union-find) runs on the same embeddings as the baseline.

Other crop: the recompositions a package ships of one design for other screens (desktop-base themes at
5:4 and 21:9, sway's portrait editions), and a portrait window cut from each landscape original
(full height, 9:16, a third of the area), are matched against the originals with find_other_crops.

    nice -n 10 .venv/bin/python bench/bench_duplicates.py
"""

from __future__ import annotations

import argparse
import io
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wallpaper_set import wallpapers  # noqa: E402

SKIMAGE_PHOTOS = (
    "astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field", "immunohistochemistry", "moon",
    "motorcycle_left", "page", "retina", "rocket", "text", "brick", "grass", "gravel", "cell",
    "microaneurysms", "clock",
)
COPY_KINDS = ("jpeg", "webp", "half", "thumb320", "crop10", "bright", "dark", "rotate4")


def real_photos() -> dict[str, Image.Image]:
    from skimage import data
    from sklearn.datasets import load_sample_images

    loaders = {name: getattr(data, name, None) for name in SKIMAGE_PHOTOS}
    loaders["motorcycle_left"] = lambda: data.stereo_motorcycle()[0]
    photos = {name: Image.fromarray(load()).convert("RGB") for name, load in loaders.items()}
    sample = load_sample_images()
    for fname, arr in zip(sample.filenames, sample.images, strict=True):
        photos[fname.rsplit("/", 1)[-1].split(".")[0]] = Image.fromarray(arr).convert("RGB")
    return photos


def _reencode(im: Image.Image, fmt: str, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, fmt, quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def copies(im: Image.Image, rng: np.random.Generator) -> dict[str, Image.Image]:
    w, h = im.size
    cw, ch = round(w * 0.9), round(h * 0.9)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    small = im.copy()
    small.thumbnail((320, 320), Image.BICUBIC)
    return {
        "jpeg": _reencode(im, "JPEG", int(rng.integers(30, 91))),
        "webp": _reencode(im, "WEBP", 60),
        "half": im.resize((max(1, w // 2), max(1, h // 2)), Image.LANCZOS),
        "thumb320": _reencode(small, "JPEG", 85),
        "crop10": im.crop((x, y, x + cw, y + ch)),
        "bright": ImageEnhance.Brightness(im).enhance(1.25),
        "dark": ImageEnhance.Brightness(im).enhance(0.8),
        # beyond the list: a 4-degree turn, corners filled grey
        "rotate4": im.rotate(4, resample=Image.BILINEAR, fillcolor=(128, 128, 128)),
    }


def portrait_window(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A full-height 9:16 window of a landscape picture at a random position."""
    w, h = im.size
    cw = round(h * 9 / 16)
    x = int(rng.integers(0, w - cw + 1))
    return im.crop((x, 0, x + cw, h))


def design_of(name: str) -> str:
    """GNOME ships light and dark editions of one design as name-l / name-d."""
    stem = name.rsplit(".", 1)[0]
    return stem[:-2] if name.startswith("gnome/") and stem[-2:] in ("-l", "-d") else stem


def baseline_groups(vectors: np.ndarray, hashes: np.ndarray) -> list[list[int]]:
    """The previous rule: pHash <= 6 bits or cosine >= 0.80, joined by union-find."""
    from autotag.index.duplicates import hamming
    from autotag.index.vector import normalize_rows

    unit = normalize_rows(vectors)
    linked = (unit @ unit.T >= 0.80) | (hamming(hashes[:, None], hashes[None, :]) <= 6)
    parent = list(range(len(vectors)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in zip(*np.nonzero(np.triu(linked, k=1)), strict=True):
        parent[find(int(i))] = find(int(j))
    groups: dict[int, list[int]] = {}
    for i in range(len(vectors)):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def pair_scores(groups: list[list[int]], families: np.ndarray, subset: np.ndarray) -> tuple[float, float, int]:
    """Pair precision, recall and the number of groups mixing pictures, over the images in subset."""
    keep = set(np.flatnonzero(subset).tolist())
    predicted = set()
    mixed = 0
    for g in groups:
        g = sorted(i for i in g if i in keep)
        predicted.update(itertools.combinations(g, 2))
        mixed += len({families[i] for i in g}) > 1
    members = sorted(keep)
    truth = {(i, j) for i, j in itertools.combinations(members, 2) if families[i] == families[j]}
    hit = len(predicted & truth)
    return (hit / len(predicted) if predicted else 1.0), hit / len(truth), mixed


def main() -> None:
    from autotag.encoders import create_encoder
    from autotag.index.duplicates import DEFAULT_THRESHOLD, find_duplicates, fingerprint

    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", default="efficientnet_lite0")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    originals, recompositions = wallpapers()
    designs = sorted({design_of(w.name) for w, _ in originals})
    dev_designs = set(designs[::2])
    images: list[Image.Image] = []
    family, kind, part = [], [], []  # part: "dev" / "test" wallpapers, "photo"
    sources = [(w.name, im, "dev" if design_of(w.name) in dev_designs else "test") for w, im in originals]
    sources += [(name, im, "photo") for name, im in sorted(real_photos().items())]
    for f, (_name, im, where) in enumerate(sources):
        for k, c in {"original": im, **copies(im, rng)}.items():
            images.append(c)
            family.append(f)
            kind.append(k)
            part.append(where)
    families, kinds, parts = np.array(family), np.array(kind), np.array(part)
    names = [s[0] for s in sources]
    light_dark = np.array([names[f].startswith("gnome/") and design_of(names[f]) != names[f].rsplit(".", 1)[0]
                           for f in families])
    print(f"{len(originals)} wallpapers ({len(dev_designs)} of {len(designs)} designs in dev) + "
          f"{len(sources) - len(originals)} photos, x {1 + len(COPY_KINDS)} versions = {len(images)} images")

    encoder = create_encoder(args.encoder)
    t0 = time.perf_counter()
    vectors = np.concatenate([encoder.encode(images[i : i + 16])[1] for i in range(0, len(images), 16)])
    t_embed = time.perf_counter() - t0
    t0 = time.perf_counter()
    prints = [fingerprint(im) for im in images]
    t_print = time.perf_counter() - t0
    hashes = np.array([p.phash for p in prints], dtype=np.uint64)
    per_image = 1000 / len(images)
    print(f"embedding {t_embed * per_image:.1f} ms/image, fingerprint {t_print * per_image:.2f} ms/image")
    ids = np.arange(len(images))
    t0 = time.perf_counter()
    new = [g.ids for g in find_duplicates(ids, vectors, prints)]
    t_find = time.perf_counter() - t0
    old = baseline_groups(vectors, hashes)
    print(f"find_duplicates over {len(images)} images: {t_find * 1000:.0f} ms\n")

    print("set                  rule                         precision  recall  groups mixing pictures")
    subsets = {"wallpapers dev": parts == "dev", "wallpapers test": parts == "test",
               "wallpapers all": parts != "photo", "photos": parts == "photo"}
    for label, subset in subsets.items():
        for rule, groups in (("previous (pHash or cos 0.80)", old), ("fingerprint + embedding", new)):
            p, r, mixed = pair_scores(groups, families, subset)
            print(f"{label:20s} {rule:28s} {p:9.3f} {r:7.3f}  {mixed}")
    # copy recall per edit kind (pairs original-copy found in one group) and the light/dark editions
    group_of = {i: k for k, g in enumerate(new) for i in g}
    firsts = {f: int(np.flatnonzero(families == f)[0]) for f in np.unique(families)}
    print("\ncopy found with its original, by edit (all sets):")
    for k in COPY_KINDS:
        idx = np.flatnonzero(kinds == k)
        found = [i in group_of and group_of.get(firsts[families[i]]) == group_of[i] for i in idx]
        print(f"  {k:9s} {np.mean(found):.3f}")
    ld = np.flatnonzero(light_dark)
    cross = [(i, j) for i, j in itertools.combinations(ld, 2) if design_of(names[families[i]]) ==
             design_of(names[families[j]]) and families[i] != families[j]]
    joined = sum(i in group_of and group_of.get(j) == group_of[i] for i, j in cross)
    print(f"GNOME light/dark editions put together: {joined} of {len(cross)} pairs")

    # the originals alone (no copies): every group found is a false one
    only = np.flatnonzero(kinds == "original")
    alone = find_duplicates(only, vectors[only], [prints[i] for i in only])
    old_alone = [[only[i] for i in g] for g in baseline_groups(vectors[only], hashes[only])]
    print(f"\nthe {len(only)} originals alone: {len(alone)} false groups (previous rule: {len(old_alone)})")
    for g in alone:
        print("   ", " + ".join(names[families[i]] for i in g.ids))

    # other crop: recompositions shipped by the packages and generated portrait windows
    from autotag.index.vector import normalize_rows

    family_of_design = {w.family: f for f, (w, _) in enumerate(originals)}
    queries = [(im, family_of_design[w.family], "shipped") for w, im in recompositions]
    queries += [(portrait_window(im, rng), f, "portrait window")
                for f, (w, im) in enumerate(originals) if im.width / im.height > 1.3]
    orig_idx = np.array([firsts[f] for f in range(len(originals))])
    qv = np.concatenate([encoder.encode([q for q, _, _ in queries[i : i + 16]])[1] for i in range(0, len(queries), 16)])
    sims = normalize_rows(qv) @ normalize_rows(vectors[orig_idx]).T
    print(f"\nother crop: {len(queries)} queries against the {len(originals)} wallpaper originals (cosine)")
    for what in ("shipped", "portrait window"):
        rows = [k for k, q in enumerate(queries) if q[2] == what]
        top1 = sum(int(np.argmax(sims[k])) == queries[k][1] for k in rows)
        over = sum(sims[k, queries[k][1]] >= DEFAULT_THRESHOLD for k in rows)
        wrong = sum(int(np.sum(np.delete(sims[k], queries[k][1]) >= DEFAULT_THRESHOLD)) for k in rows)
        print(f"  {what:16s} nearest original right {top1}/{len(rows)}, cosine >= {DEFAULT_THRESHOLD} with its "
              f"original {over}/{len(rows)} (with other originals: {wrong})")


if __name__ == "__main__":
    main()
