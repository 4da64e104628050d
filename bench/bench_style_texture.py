"""Photo-or-art on training data only: the embedding alone vs the embedding plus five texture statistics.

    PYTHONPATH=src python bench/bench_style_texture.py [--realphotos DIR]

The training pictures of scripts/train_style.py (the benchmark's FIT half, scripts/style_training.yaml,
the generated art; whole pictures, no crops), embedded as it does (its embedding cache). Texture of the
picture outside a near-white backdrop (cut-outs are shot or flattened onto white): the share of exactly
equal neighbouring pixels (flat fills), of 1-3 level steps (sensor noise), of the 8 commonest colours,
the number of colours used, and the backdrop's share. Reported per regularisation C: grouped 5-fold CV
(balanced accuracy) and the check train_style makes (trained without the FIT half, measured on it at
the FIT half's photo share). The benchmark's TEST half is not read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import train_style as ts  # noqa: E402 - the training script's loaders, CV and head


def texture(im: Image.Image) -> np.ndarray:
    from autotag.read.style import texture_statistics  # the statistics the shipped head reads

    return texture_statistics(im)


def main() -> None:
    from autotag.read.style import KINDS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realphotos", type=Path, default=ts.DEFAULT_REALPHOTOS)
    args = ap.parse_args()
    in_benchmark = {e["source"] for e in ts.read_yaml(ts.DEFAULT_MANIFEST)["pictures"]}
    pictures = ts.manifest_pictures(ts.DEFAULT_MANIFEST, args.realphotos, "fit")
    pictures += ts.listed_pictures(ts.DATA_LIST, in_benchmark) + ts.generated_pictures()
    x = ts.embed([p.image for p in pictures], ROOT / ".cache" / "style_embeddings.npz")
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    tex = np.stack([texture(p.image) for p in pictures])
    y = np.array([KINDS.index(p.kind) for p in pictures])
    groups = np.array([p.group for p in pictures])
    bench = np.array([g.startswith("bench:") for g in groups])
    threshold = float(np.mean(y[bench] == 0))
    print(f"{len(pictures)} pictures ({bench.sum()} of the FIT half)")
    for name, feats in (("embedding", x), ("embedding + texture", np.hstack([x, tex])),
                        ("embedding + texture x5", np.hstack([x, np.repeat(tex, 5, 1)]))):  # fmt: skip
        for c in (0.01, 0.03, 0.1):
            cv = ts.grouped_cv(feats, y, groups, np.ones(len(y), bool), KINDS, c)
            head = ts.fit_head(feats[~bench], y[~bench], KINDS, c)
            wrong = int(np.sum((head.predict_proba(feats[bench])[:, 1] > threshold) != (y[bench] == 1)))
            print(f"{name:24s} C={c}: CV {cv:.4f}  FIT half held out: {wrong} wrong of {bench.sum()}")


if __name__ == "__main__":
    main()
