"""A 2-D map of a collection: openTSNE projection of the embeddings, drawn as a PNG (dots coloured by
tag, a legend of the top tags, thumbnails of a spread-out sample) and as one self-contained HTML page
(inline SVG, base64 JPEG thumbnails shown on hover, no network).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from autotag.types import AutotagError

UNLABELLED = "(none)"


def project_2d(vectors: np.ndarray, *, seed: int = 0, perplexity: float = 30.0, n_jobs: int = 1) -> np.ndarray:
    """(N, D) embeddings -> (N, 2) t-SNE coordinates (cosine affinities). Tiny inputs fall back to PCA."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise AutotagError(f"map needs an (N, D) array of embeddings, got shape {x.shape}")
    n = len(x)
    if n == 0:
        return np.zeros((0, 2), np.float32)
    if n < 10:  # t-SNE needs a neighbourhood; for a handful of points the two main axes say as much
        centred = x - x.mean(axis=0)
        if n == 1 or not np.any(centred):
            return np.zeros((n, 2), np.float32)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        coords = centred @ vt[:2].T
        return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1]))).astype(np.float32)
    from openTSNE import TSNE

    tsne = TSNE(
        n_components=2,
        perplexity=float(min(perplexity, (n - 1) / 3)),
        metric="cosine",
        initialization="pca",
        random_state=seed,
        n_jobs=n_jobs,
        verbose=False,
    )
    return np.asarray(tsne.fit(x), dtype=np.float32)


def _palette(labels: Sequence[str]) -> dict[str, str]:
    import matplotlib

    names = sorted(set(labels), key=lambda s: (s in (UNLABELLED, OTHER), s))
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    colours = {}
    for i, name in enumerate(names):
        r, g, b, _ = cmap(i % cmap.N)
        colours[name] = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
    if UNLABELLED in colours:
        colours[UNLABELLED] = "#9e9e9e"
    if OTHER in colours:
        colours[OTHER] = "#c8c8c8"
    return colours


OTHER = "(other tags)"
LEGEND_TOP = 12  # tags with their own colour on the PNG; the rest share one grey
THUMB_SIDE = 96  # px, the PNG's thumbnails


def legend_entries(labels: Sequence[str], top: int = LEGEND_TOP) -> list[tuple[str, int, str]]:
    """(tag, images, colour) for the PNG legend: the `top` most frequent tags, then one entry for the rest."""
    from collections import Counter

    counts = Counter(lab or UNLABELLED for lab in labels)
    ranked = [name for name, _ in sorted(counts.items(), key=lambda kv: (kv[0] == UNLABELLED, -kv[1], kv[0]))]
    shown = [n for n in ranked if n != UNLABELLED][:top]
    rest = sum(c for n, c in counts.items() if n not in shown and n != UNLABELLED)
    names = shown + ([OTHER] if rest else []) + ([UNLABELLED] if UNLABELLED in counts else [])
    colours = _palette(names)
    sizes = {**counts, OTHER: rest}
    return [(n, sizes[n], colours[n]) for n in names]


def thumbnail_sample(coords: np.ndarray, cells: int = 7) -> list[int]:
    """Indices of points spread over the map, at most one per cell of a cells x cells grid: the point
    nearest its cell's centre, so the thumbnails drawn on the PNG do not pile up on each other."""
    coords = np.asarray(coords, dtype=np.float64)
    if len(coords) == 0:
        return []
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    unit = (coords - lo) / span
    cell = np.minimum((unit * cells).astype(int), cells - 1)
    centre_dist = np.linalg.norm(unit - (cell + 0.5) / cells, axis=1)
    chosen: dict[tuple[int, int], int] = {}
    for i in np.argsort(centre_dist, kind="stable"):
        chosen.setdefault((int(cell[i, 0]), int(cell[i, 1])), int(i))
    return sorted(chosen.values())


def render_png(
    coords: np.ndarray,
    labels: Sequence[str],
    out: str | Path,
    title: str = "",
    thumbnails: dict[int, Image.Image] | None = None,
) -> Path:
    """The map as a picture: every image a dot coloured by its tag (the top tags named in the legend with
    their counts, the rest grey), and thumbnails of a spread-out sample (`thumbnails`: point index ->
    picture, e.g. for `thumbnail_sample(coords)`) drawn at their points with a border of their tag's colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    labels = [lab or UNLABELLED for lab in labels]
    entries = legend_entries(labels)
    colour_of = {name: colour for name, _, colour in entries}
    shown = {name for name, _, _ in entries}
    drawn = [lab if lab in shown else OTHER for lab in labels]
    coords = np.asarray(coords, dtype=np.float64)
    dpi = 110
    fig, ax = plt.subplots(figsize=(13, 9), dpi=dpi)
    arr = np.asarray(drawn)
    for name, count, colour in reversed(entries):  # the biggest tags drawn last, on top
        pts = coords[arr == name]
        ax.scatter(pts[:, 0], pts[:, 1], s=14, c=colour, label=f"{name} ({count})", alpha=0.85, linewidths=0)
    for i, picture in sorted((thumbnails or {}).items()):
        im = picture.convert("RGB")
        im.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.BILINEAR)
        box = AnnotationBbox(
            OffsetImage(np.asarray(im), zoom=72 / dpi),  # one image pixel per output pixel: sharp
            (coords[i, 0], coords[i, 1]),
            frameon=True,
            pad=0.15,
            bboxprops={"edgecolor": colour_of[drawn[i]], "linewidth": 2.5},
        )
        ax.add_artist(box)
    ax.margins(0.08)  # room for the thumbnails of points on the edge
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{len(coords)} images", fontsize=14)
    handles, names = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], names[::-1], loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=11,
              markerscale=2.5, frameon=False, title="top tags (images)", title_fontsize=11)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def thumbnail_data_uri(image: Image.Image, size: int = 128) -> str:
    """A small JPEG of the image as a data: URI."""
    im = image.convert("RGB")
    im.thumbnail((size, size), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#fafafa;color:#222}
header{padding:8px 14px;font-size:14px} #wrap{position:relative}
svg{display:block;background:#fff;border-top:1px solid #ddd;border-bottom:1px solid #ddd}
circle{stroke:#fff;stroke-width:.5;cursor:pointer} circle:hover{stroke:#000;stroke-width:1.5}
#tip{position:absolute;pointer-events:none;background:#fff;border:1px solid #888;padding:4px;
     font-size:12px;display:none;max-width:220px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
#tip img{display:block;max-width:200px;max-height:200px} .key{display:inline-block;margin-right:12px}
.sw{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px}
</style></head><body>
<header><b>__TITLE__</b> &middot; hover a point to see the image<div id="legend"></div></header>
<div id="wrap"><svg id="map" width="__W__" height="__H__" viewBox="0 0 __W__ __H__"></svg><div id="tip"></div></div>
<script>
const POINTS = __POINTS__;
const COLOURS = __COLOURS__;
const svg = document.getElementById("map"), tip = document.getElementById("tip");
const NS = "http://www.w3.org/2000/svg";
POINTS.forEach((p, i) => {
  const c = document.createElementNS(NS, "circle");
  c.setAttribute("cx", p.x); c.setAttribute("cy", p.y); c.setAttribute("r", 4);
  c.setAttribute("fill", COLOURS[p.label] || "#999"); c.dataset.i = i;
  svg.appendChild(c);
});
svg.addEventListener("mousemove", e => {
  const i = e.target.dataset ? e.target.dataset.i : undefined;
  if (i === undefined) { tip.style.display = "none"; return; }
  const p = POINTS[i];
  tip.innerHTML = "";
  if (p.thumb) { const im = document.createElement("img"); im.src = p.thumb; tip.appendChild(im); }
  const t = document.createElement("div"); t.textContent = p.label + " \\u00b7 " + p.title; tip.appendChild(t);
  tip.style.left = (e.offsetX + 14) + "px"; tip.style.top = (e.offsetY + 14) + "px"; tip.style.display = "block";
});
svg.addEventListener("mouseleave", () => { tip.style.display = "none"; });
const legend = document.getElementById("legend");
Object.entries(COLOURS).forEach(([name, col]) => {
  const s = document.createElement("span"); s.className = "key";
  const w = document.createElement("span"); w.className = "sw"; w.style.background = col;
  s.appendChild(w); s.appendChild(document.createTextNode(name)); legend.appendChild(s);
});
</script></body></html>
"""


def render_html(
    coords: np.ndarray,
    labels: Sequence[str],
    titles: Sequence[str],
    thumbnails: Sequence[str | None],
    out: str | Path,
    title: str = "autotag map",
    size: tuple[int, int] = (1000, 760),
) -> Path:
    """Self-contained page: every point an SVG circle; hovering shows its thumbnail (data URI) and title."""
    if not (len(coords) == len(labels) == len(titles) == len(thumbnails)):
        raise AutotagError("map: coordinates, labels, titles and thumbnails must have the same length")
    labels = [lab or UNLABELLED for lab in labels]
    width, height = size
    pad = 20
    coords = np.asarray(coords, dtype=np.float64)
    if len(coords):
        lo, hi = coords.min(axis=0), coords.max(axis=0)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        scaled = (coords - lo) / span * [width - 2 * pad, height - 2 * pad] + pad
    else:
        scaled = coords.reshape(0, 2)
    points = [
        {"x": round(float(x), 1), "y": round(float(y), 1), "label": lab, "title": str(t), "thumb": th}
        for (x, y), lab, t, th in zip(scaled, labels, titles, thumbnails, strict=True)
    ]
    # "</" inside a JSON string would end the <script> element early; escape it.
    page = (
        _PAGE.replace("__TITLE__", html.escape(title))
        .replace("__W__", str(width))
        .replace("__H__", str(height))
        .replace("__COLOURS__", json.dumps(_palette(labels)).replace("</", "<\\/"))
        .replace("__POINTS__", json.dumps(points).replace("</", "<\\/"))
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
