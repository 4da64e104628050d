"""Colours, picture facts and photo-or-art on the real-photo benchmark, per split.

    PYTHONPATH=src python bench/bench_signals.py [--manifest M] [--realphotos DIR] [--split fit,test]
        [--heads A.npz,B.npz]

--heads: photo-or-art heads to measure side by side in the same run (default: the shipped one).

Each picture is decoded the way the pipeline decodes it for its readers (JPEG draft keeping the long
side >= 512 px, EXIF turned, RGB, then scaled to a long side of at most 512 px), so colours are
measured on the picture the pipeline hands over; embeddings come from the pipeline itself.

Colour agreement with the labels (`colors`, 1-3 names a person gave):
  top:     the first colour named is among the labelled ones
  overlap: at least one named colour is among the labelled ones
Photo or art: accuracy of `kind` over all pictures, against always answering "photo"; style
accuracy over the art pictures. Speed: median CPU milliseconds (this thread's time, which a busy
shared machine does not inflate as it does wall time) per picture of dominant_colors and of
picture_properties and of the style head's texture statistics (512 px picture) and patch statistics
(256 px centre patch at the decoded resolution), interleaved with the decode they follow (the
baseline), plus the wall-time median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from autotag.ingest import decode_with_info
from autotag.read import dominant_colors, picture_properties
from autotag.read.style import HEAD_PATH, PATCH_SIDE, StyleHead, centre_patch, patch_statistics, texture_statistics

ROOT = Path(__file__).resolve().parents[1]
KEPT_SIDE = 512  # the pipeline's readers get the decoded picture at about this long side


def load_manifest(path: Path) -> list[dict]:
    import yaml

    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)["pictures"]


def picture_file(folder: Path, entry_id: str) -> Path:
    found = sorted(folder.glob(f"{entry_id}.*"))
    if not found:
        raise SystemExit(f"{entry_id} is not built in {folder}: run scripts/build_realphotos.py")
    return found[0]


def run(manifest: Path, folder: Path, splits: list[str], head: StyleHead, timed: dict | None = None) -> dict[str, dict]:
    from autotag.pipeline import Tagger

    tagger = Tagger.load("efficientnet_lite0")
    entries = load_manifest(manifest)
    results: dict[str, dict] = {}
    for split in splits:
        rows, files, pictures, patches = [], [], [], []
        t_decode, t_colors, t_props, wall_colors, t_texture, t_patch = [], [], [], [], [], []
        for entry in (e for e in entries if e["split"] == split):
            path = picture_file(folder, entry["id"])
            data = path.read_bytes()
            start = time.thread_time()
            im, meta = decode_with_info(data, min_side=tagger.encoder.spec.input_size, min_long_side=KEPT_SIDE)
            patch = centre_patch(im)  # as the pipeline cuts it: before the downscale
            if max(im.size) > KEPT_SIDE:
                scale = KEPT_SIDE / max(im.size)
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BILINEAR, reducing_gap=2.0)
            t_decode.append(time.thread_time() - start)
            start, wall = time.thread_time(), time.perf_counter()
            colors = dominant_colors(im)
            t_colors.append(time.thread_time() - start)
            wall_colors.append(time.perf_counter() - wall)
            start = time.thread_time()
            picture_properties(int(meta["width"]), int(meta["height"]), im)
            t_props.append(time.thread_time() - start)
            start = time.thread_time()
            texture_statistics(im)
            t_texture.append(time.thread_time() - start)
            start = time.thread_time()
            patch_statistics(patch)
            t_patch.append((time.thread_time() - start, patch.shape[:2] == (PATCH_SIDE, PATCH_SIDE)))
            rows.append((entry, [c.name for c in colors]))
            files.append(str(path))
            pictures.append(im)
            patches.append(patch)
        if timed is None or split not in timed:
            embeddings = tagger.embed(files)
            if timed is not None:
                timed[split] = embeddings
        else:
            embeddings = timed[split]
        styles = head.predict(embeddings, pictures, patches)
        n = len(rows)
        top = sum(bool(names) and names[0] in e["colors"] for e, names in rows)
        overlap = sum(bool(set(names) & set(e["colors"])) for e, names in rows)
        kind_ok = [s.kind == e["kind"] for (e, _), s in zip(rows, styles, strict=True)]
        art = [(e, s) for (e, _), s in zip(rows, styles, strict=True) if e["kind"] == "art"]
        named = [(e["id"], e["colors"], names) for e, names in rows]
        paired = list(zip(rows, styles, kind_ok, strict=True))
        results[split] = {
            "pictures": n,
            "colors_top": top / n,
            "colors_overlap": overlap / n,
            "kind_accuracy": float(np.mean(kind_ok)),
            "kind_always_photo": sum(e["kind"] == "photo" for e, _ in rows) / n,
            "art_pictures": len(art),
            "style_accuracy": float(np.mean([s.style == e.get("style") for e, s in art])) if art else float("nan"),
            "ms_decode": 1000 * statistics.median(t_decode),
            "ms_colors": 1000 * statistics.median(t_colors),
            "ms_properties": 1000 * statistics.median(t_props),
            "ms_texture": 1000 * statistics.median(t_texture),
            "ms_patch": 1000 * statistics.median(t for t, _ in t_patch),
            # the pictures of at least 256 x 256 px, whose patch is full size (most tuxpaint stamps are smaller)
            "ms_patch_full": 1000 * statistics.median([t for t, full in t_patch if full] or [float("nan")]),
            "full_patches": sum(full for _, full in t_patch),
            "ms_colors_wall": 1000 * statistics.median(wall_colors),
            "colour_misses": [m for m in named if not set(m[2]) & set(m[1])],
            "colour_top_misses": [m for m in named if m[2][:1] and m[2][0] not in m[1]],
            "kind_errors": [(e["id"], e["kind"], s.to_dict()) for (e, _), s, ok in paired if not ok],
            "style_errors": [
                (e["id"], e["style"], s.style) for e, s in art if s.kind == "art" and s.style != e["style"]
            ],
        }  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, default=ROOT / "bench" / "realphotos" / "manifest.yaml")
    ap.add_argument("--realphotos", type=Path, default=ROOT / ".cache" / "realphotos")
    ap.add_argument("--split", default="fit,test")
    ap.add_argument("--heads", default=str(HEAD_PATH), help="comma-separated style_head.npz files")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    embeddings: dict = {}  # one embedding per picture, shared by the heads
    for path in args.heads.split(","):
        results = run(args.manifest, args.realphotos, args.split.split(","), StyleHead.load(path), embeddings)
        print(f"\nstyle head: {path}")
        print("| split | pictures | colour top in labels | colour overlap | photo-or-art acc. (always photo) "
              "| style acc. (art) | colours CPU ms (wall) | properties CPU ms | texture CPU ms "
              "| patch CPU ms (full 256 px patches) | decode CPU ms |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for split, r in results.items():
            print(
                f"| {split} | {r['pictures']} | {r['colors_top']:.1%} | {r['colors_overlap']:.1%} "
                f"| {r['kind_accuracy']:.1%} ({r['kind_always_photo']:.1%}) "
                f"| {r['style_accuracy']:.1%} of {r['art_pictures']} "
                f"| {r['ms_colors']:.2f} ({r['ms_colors_wall']:.2f}) | {r['ms_properties']:.2f} "
                f"| {r['ms_texture']:.2f} | {r['ms_patch']:.2f} ({r['ms_patch_full']:.2f} on {r['full_patches']}) "
                f"| {r['ms_decode']:.2f} |"
            )
        for split, r in results.items():
            for key in ("colour_misses", "colour_top_misses", "kind_errors", "style_errors"):
                for item in r[key]:
                    print(f"{path} {split} {key}: {item}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
