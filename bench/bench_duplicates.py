"""Near-duplicate detection on real photos and edited copies of them.

Every bundled real photo (scikit-image + scikit-learn samples) gets five edited copies: JPEG
quality 20, half size, 10% crop, 4-degree rotation, colour shift. The originals are the distinct
photos the copies are mixed with. Truth: two items are duplicates iff they come from the same photo.
Prints pair-level precision and recall of `find_duplicates` at the default threshold (and a sweep),
for the embedding test alone, the hash test alone and both together.

    nice -n 10 .venv/bin/python bench/bench_duplicates.py
"""

from __future__ import annotations

import argparse
import io
import itertools
import time

import numpy as np
from PIL import Image, ImageEnhance

SKIMAGE_PHOTOS = (
    "astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field", "immunohistochemistry", "moon",
    "motorcycle_left", "page", "retina", "rocket", "text", "brick", "grass", "gravel", "cell",
    "microaneurysms", "clock",
)


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


def jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def edits(im: Image.Image) -> dict[str, Image.Image]:
    w, h = im.size
    dx, dy = round(w * 0.05), round(h * 0.05)
    r, g, b = (np.asarray(im, dtype=np.float32) * np.array([1.15, 1.0, 0.85])).clip(0, 255).astype(np.uint8).T
    shifted = Image.fromarray(np.stack([r, g, b]).T)
    return {
        "jpeg20": jpeg(im, 20),
        "half": im.resize((w // 2, h // 2), Image.LANCZOS),
        "crop10": im.crop((dx, dy, w - dx, h - dy)),
        "rotate4": im.rotate(4, resample=Image.BILINEAR, expand=False, fillcolor=(128, 128, 128)),
        "colour": ImageEnhance.Brightness(shifted).enhance(1.1),
    }


def pair_scores(groups, families: np.ndarray) -> tuple[float, float]:
    predicted = set()
    for g in groups:
        predicted.update(itertools.combinations(sorted(g.ids), 2))
    n = len(families)
    truth = {(i, j) for i in range(n) for j in range(i + 1, n) if families[i] == families[j]}
    hit = len(predicted & truth)
    return (hit / len(predicted) if predicted else 1.0), hit / len(truth)


def main() -> None:
    from autotag.encoders import create_encoder
    from autotag.index.duplicates import DEFAULT_HASH_DISTANCE, DEFAULT_THRESHOLD, find_duplicates, phash

    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", default="efficientnet_lite0")
    args = parser.parse_args()

    photos = real_photos()
    images, families, kinds = [], [], []
    for fam, (_name, im) in enumerate(sorted(photos.items())):
        for kind, edited in {"original": im, **edits(im)}.items():
            images.append(edited)
            families.append(fam)
            kinds.append(kind)
    families_arr = np.array(families)
    print(f"{len(photos)} distinct photos x 6 versions = {len(images)} images")

    encoder = create_encoder(args.encoder)
    t0 = time.perf_counter()
    vectors = np.concatenate([encoder.encode(images[i : i + 16])[1] for i in range(0, len(images), 16)])
    t_embed = time.perf_counter() - t0
    t0 = time.perf_counter()
    hashes = np.array([phash(im) for im in images], dtype=np.uint64)
    t_hash = time.perf_counter() - t0
    print(f"embedding {t_embed / len(images) * 1000:.1f} ms/image, pHash {t_hash / len(images) * 1000:.2f} ms/image")

    from autotag.index.vector import normalize_rows

    unit = normalize_rows(vectors)
    sims = unit @ unit.T
    same = families_arr[:, None] == families_arr[None, :]
    off = ~np.eye(len(images), dtype=bool)
    within = sims[same & off]
    print(f"cosine, same photo:      min {within.min():.3f}  5th pct {np.percentile(within, 5):.3f}")
    print(f"cosine, different photo: max {sims[~same].max():.3f}  99th pct {np.percentile(sims[~same], 99):.3f}")
    for kind in ("jpeg20", "half", "crop10", "rotate4", "colour"):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        orig = [families.index(families[i]) for i in idx]  # each family's first image is its original
        s = np.array([sims[i, o] for i, o in zip(idx, orig, strict=True)])
        d = np.array([int(np.bitwise_count(hashes[i] ^ hashes[o])) for i, o in zip(idx, orig, strict=True)])
        print(
            f"  {kind:8s} vs original: cosine min {s.min():.3f} mean {s.mean():.3f}; "
            f"pHash bits max {d.max()} mean {d.mean():.1f}"
        )
    ids = np.arange(len(images))
    print("\nthreshold  precision  recall   (embedding + pHash)")
    for t in (0.70, 0.75, 0.80, 0.85, 0.90):
        p, r = pair_scores(find_duplicates(ids, vectors, hashes, threshold=t), families_arr)
        print(f"  {t:.2f}      {p:.3f}      {r:.3f}{'   <- default' if t == DEFAULT_THRESHOLD else ''}")
    p_e, r_e = pair_scores(find_duplicates(ids, vectors, None), families_arr)
    p_h, r_h = pair_scores(find_duplicates(ids, None, hashes), families_arr)
    p, r = pair_scores(find_duplicates(ids, vectors, hashes), families_arr)
    print(f"\nAt the defaults (cosine >= {DEFAULT_THRESHOLD}, pHash <= {DEFAULT_HASH_DISTANCE} bits):")
    print(f"  pHash only:       precision {p_h:.3f} recall {r_h:.3f}")
    print(f"  embedding only:   precision {p_e:.3f} recall {r_e:.3f}")
    print(f"  both (default):   precision {p:.3f} recall {r:.3f}")


if __name__ == "__main__":
    main()
