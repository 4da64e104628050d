"""Photo or art, and the style of art: two small linear heads on the default encoder's embedding.

The weights ship as `style_head.npz` beside this file (made by scripts/train_style.py, which records
the data it was trained on); inference is numpy only. One head says photo or art, a second one,
trained on art alone, says which style: abstract, illustration, 3d render or pattern.

A head may also read a few texture statistics of the decoded picture beside the embedding (see
`texture_statistics`): a 224 px ImageNet embedding does not tell a product photo cut out onto white
from clip art, the pixels' noise and flat fills do. And a few more of a centre patch of the picture at
the resolution it was decoded at, before the downscale averages sensor noise away (`patch_statistics`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from autotag.types import AutotagError

KINDS = ("photo", "art")
ART_STYLES = ("abstract", "illustration", "3d render", "pattern")
STYLE_NAMES = ("photo", *ART_STYLES)
HEAD_PATH = Path(__file__).with_name("style_head.npz")
# Art whose content an ImageNet/COCO tag can still describe (a drawn dog is a dog); abstract and
# pattern pictures have no content to tag, so the style stands in for it.
STYLES_WITH_CONTENT = ("illustration", "3d render")
ART_CONTENT_MIN_SCORE = 0.5  # classifiers trained on photos guess wildly on art: keep only sure tags

T = TypeVar("T")

# The texture statistics, in the order `texture_statistics` returns them.
TEXTURE_STATS = ("flat_share", "noise_share", "top8_colour_share", "colours_used", "backdrop_share")
BACKDROP_LEVEL = 245  # a pixel with every channel at least this bright is near-white backdrop
# The statistics of the decoded-resolution centre patch, in the order `patch_statistics` returns them.
PATCH_STATS = ("zero_residual_share", "noise_level", "small_residual_share", "residual_channel_corr",
               "block_edges", "distinct_colours", "edge_crispness")  # fmt: skip
PATCH_SIDE = 256  # the patch's side at most: bounds the statistics' cost whatever the picture's size


def texture_statistics(image: Any) -> np.ndarray:
    """Five statistics of the picture's pixels outside a near-white backdrop (cut-outs are shot or
    flattened onto white, so the backdrop would say "flat fill" for a photo too):
    the share of exactly equal neighbouring pixels (flat fills: drawn art), of 1-3 level steps (sensor
    noise: photos), of the 8 commonest colours (at 5 bits per channel), the number of such colours
    used (log-scaled to 0-1), and the backdrop's share of the picture. Read on the picture the pipeline
    keeps for its readers (long side 512); training must read the same form."""
    a = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, np.uint8)
    # planar uint8 channels: |x - y| as max - min needs no wider copy (ten times faster than int16 HxWx3)
    r, g, b = (np.ascontiguousarray(a[..., k]) for k in range(3))
    backdrop = (r >= BACKDROP_LEVEL) & (g >= BACKDROP_LEVEL) & (b >= BACKDROP_LEVEL)
    inside = ~backdrop if np.count_nonzero(~backdrop) >= 100 else np.ones_like(backdrop)

    def largest_step(axis: int) -> np.ndarray:  # per neighbour pair, the largest step over the channels
        out = None
        for c in (r, g, b):
            x, y = (c[:, 1:], c[:, :-1]) if axis == 1 else (c[1:, :], c[:-1, :])
            step = np.maximum(x, y) - np.minimum(x, y)
            out = step if out is None else np.maximum(out, step)
        return out

    dx, dy = largest_step(1), largest_step(0)
    mx, my = inside[:, 1:] & inside[:, :-1], inside[1:, :] & inside[:-1, :]
    pairs = max(1, np.count_nonzero(mx) + np.count_nonzero(my))
    flat = (np.count_nonzero((dx == 0) & mx) + np.count_nonzero((dy == 0) & my)) / pairs
    # steps of 1-3 levels: in uint8 a step of 0 minus 1 wraps to 255
    step = (np.count_nonzero((dx - 1 <= 2) & mx) + np.count_nonzero((dy - 1 <= 2) & my)) / pairs
    code = ((r >> 3).astype(np.uint16) << 10) | ((g >> 3).astype(np.uint16) << 5) | (b >> 3)
    counts = np.bincount(code[inside], minlength=32768)
    counts = counts[counts > 0]
    top8 = np.sort(counts)[::-1][:8].sum() / max(1, counts.sum())
    return np.array([flat, step, top8, np.log1p(len(counts)) / np.log(32768), backdrop.mean()], np.float32)


def centre_patch(image: Any, side: int = PATCH_SIDE) -> np.ndarray:
    """The centre side x side pixels of a picture (fewer if it is smaller) as an HxWx3 uint8 array, the
    corner on the 8-pixel grid so that a JPEG's blocks keep their place."""
    w, h = min(side, image.width), min(side, image.height)
    x0, y0 = (image.width - w) // 2 // 8 * 8, (image.height - h) // 2 // 8 * 8
    return np.asarray(image.crop((x0, y0, x0 + w, y0 + h)).convert("RGB"))


def _correlation(u: np.ndarray, v: np.ndarray) -> float:
    u, v = u - u.mean(), v - v.mean()
    d = float(np.sqrt(float(u @ u) * float(v @ v)))
    return float(u @ v) / d if d > 0 else 0.0


def patch_statistics(patch: np.ndarray) -> np.ndarray:
    """Seven statistics of a centre patch at the decoded resolution (`centre_patch`), read where the
    pixel and its four neighbours are off a near-white backdrop. From the Laplacian residual (the
    pixel against its neighbours' mean; rendered fills and ramps leave none, sensor noise always some):
    the share of pixels with none in any channel, its median (log-scaled), the share with a small one
    (1-8), and how much the residuals of neighbouring channels correlate where they are small
    (demosaicing and JPEG's shared luma tie a photo's channels' noise together). Then block edges: the
    step across every 8th column against the others (log ratio; JPEG's 8x8 blocks at full scale, and
    also a drawn pattern whose period fits the grid), the share of distinct 24-bit
    colours on every other pixel, and how crisp edges are (one-pixel steps over 48 levels per
    channel among those over 8: drawn edges jump, photographed ones ramp)."""
    h, w = patch.shape[:2]
    if h < 8 or w < 8:
        return np.zeros(len(PATCH_STATS), np.float32)
    ch = [patch[..., k].astype(np.int16) for k in range(3)]
    off = (ch[0] < BACKDROP_LEVEL) | (ch[1] < BACKDROP_LEVEL) | (ch[2] < BACKDROP_LEVEL)
    m = off[1:-1, 1:-1] & off[:-2, 1:-1] & off[2:, 1:-1] & off[1:-1, :-2] & off[1:-1, 2:]
    if np.count_nonzero(m) < 64:  # (almost) all backdrop: read it all
        m[:] = True
    res = [4 * c[1:-1, 1:-1] - c[:-2, 1:-1] - c[2:, 1:-1] - c[1:-1, :-2] - c[1:-1, 2:] for c in ch]
    largest = np.maximum(np.maximum(np.abs(res[0]), np.abs(res[1])), np.abs(res[2]))
    counts = np.bincount(largest[m], minlength=4 * 255 + 1)  # a histogram is cheaper than a median
    n = max(1, int(counts.sum()))
    median = int(np.searchsorted(np.cumsum(counts), (n + 1) / 2))
    small = np.flatnonzero(m & (largest < 32))  # noise, not edges
    if len(small) > 32:
        r, g, b = (x.ravel()[small].astype(np.float32) for x in res)
        corr = (_correlation(r, g) + _correlation(g, b)) / 2
    else:
        corr = 0.0
    s = ch[0] + ch[1] + ch[2]
    dx = np.abs(s[:, 1:] - s[:, :-1])
    w8 = dx.shape[1] // 8 * 8
    if w8 >= 16:
        by_column = dx[:, :w8].reshape(h, -1, 8).mean((0, 1))  # mean step at each column mod 8
        blocks = float(np.log((by_column[7] + 1) / (np.delete(by_column, 7).mean() + 1)))
    else:
        blocks = 0.0
    q = patch[1:-1:2, 1:-1:2]
    code = ((q[..., 0].astype(np.uint32) << 16) | (q[..., 1].astype(np.uint32) << 8) | q[..., 2])[m[::2, ::2]]
    code.sort()
    distinct = (1 + np.count_nonzero(code[1:] != code[:-1])) / max(1, code.size)
    crisp = np.count_nonzero(dx >= 144) / max(1, np.count_nonzero(dx >= 24))
    return np.array([counts[0] / n, np.log1p(median) / np.log(4 * 255 + 1), counts[1:9].sum() / n, corr, blocks,
                     distinct, crisp], np.float32)  # fmt: skip


@dataclass(frozen=True)
class Style:
    kind: str  # photo | art
    style: str  # "photo", or an art style (ART_STYLES)
    score: float  # the head's probability of `kind` (photo or art)
    style_score: float  # probability of `style` among the art styles (equals score for photos)

    def evidence(self) -> dict[str, float]:
        """{art style: P(art) * P(style | art)} for art, as the tagger's style tag scores it; {} for a
        photo. What a target tag mapped to a style (a site's "abstract") reads."""
        return {self.style: float(self.score) * float(self.style_score)} if self.kind == "art" else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "style": self.style,
            "score": round(float(self.score), 4),
            "style_score": round(float(self.style_score), 4),
        }


class LinearHead:
    """Softmax over `classes` of (x' - mean) / scale @ coef.T + intercept, where x' is the embedding
    scaled to unit length followed by `extra` further features (texture statistics) as they are."""

    def __init__(self, classes: Sequence[str], mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                 intercept: np.ndarray, extra: int = 0) -> None:  # fmt: skip
        if coef.shape != (len(classes), mean.shape[0]) or intercept.shape != (len(classes),):
            raise AutotagError(f"style head: weights of shape {coef.shape} do not fit {len(classes)} classes")
        if not 0 <= extra < mean.shape[0]:
            raise AutotagError(f"style head: {extra} extra features do not fit {mean.shape[0]} inputs")
        self.classes, self.extra = tuple(classes), int(extra)
        self.mean, self.scale = mean.astype(np.float32), scale.astype(np.float32)
        self.coef, self.intercept = coef.astype(np.float32), intercept.astype(np.float32)

    @property
    def dim(self) -> int:
        """Inputs per row: the embedding's size plus the extra features."""
        return int(self.mean.shape[0])

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise AutotagError(f"style head expects (N, {self.dim}) inputs, got {x.shape}")
        n = self.dim - self.extra
        emb = x[:, :n] / np.maximum(np.linalg.norm(x[:, :n], axis=1, keepdims=True), 1e-12)
        x = np.hstack([emb, x[:, n:]])
        z = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}_classes": np.array(json.dumps(self.classes)),
            f"{prefix}_mean": self.mean, f"{prefix}_scale": self.scale,
            f"{prefix}_coef": self.coef, f"{prefix}_intercept": self.intercept,
            f"{prefix}_extra": np.array(self.extra),
        }  # fmt: skip

    @classmethod
    def from_arrays(cls, data: Any, prefix: str) -> LinearHead:
        return cls(
            json.loads(str(data[f"{prefix}_classes"])), data[f"{prefix}_mean"], data[f"{prefix}_scale"],
            data[f"{prefix}_coef"], data[f"{prefix}_intercept"],
            int(data[f"{prefix}_extra"]) if f"{prefix}_extra" in data.files else 0,  # heads before texture
        )  # fmt: skip


class StyleHead:
    """Photo-or-art head plus art-style head, with the metadata of their training run.

    The kind head is trained with balanced classes; `art_threshold` moves its decision to the share
    of photos among real pictures (a balanced head's p(art) must beat the photo prior's odds)."""

    def __init__(
        self, kind: LinearHead, style: LinearHead, meta: dict[str, Any] | None = None, art_threshold: float = 0.5
    ) -> None:
        if tuple(kind.classes) != KINDS or set(style.classes) != set(ART_STYLES):
            raise AutotagError(f"style head: classes {kind.classes} / {style.classes} are not {KINDS} / {ART_STYLES}")
        if kind.dim - kind.extra != style.dim - style.extra:
            raise AutotagError("style head: the two heads expect embeddings of different sizes")
        if {kind.extra, style.extra} - {0, len(TEXTURE_STATS), len(TEXTURE_STATS) + len(PATCH_STATS)}:
            raise AutotagError(f"style head: {kind.extra}/{style.extra} extra inputs are not the texture statistics")
        if not 0 < art_threshold < 1:
            raise AutotagError(f"style head: art threshold {art_threshold} is not between 0 and 1")
        self.kind, self.style, self.meta, self.art_threshold = kind, style, meta or {}, float(art_threshold)

    @property
    def encoder(self) -> str:
        """The encoder whose embeddings the heads read."""
        return str(self.meta.get("encoder", "efficientnet_lite0"))

    @property
    def reads_texture(self) -> bool:
        """Whether the heads need the decoded pictures (for their texture statistics) beside the embeddings."""
        return bool(self.kind.extra or self.style.extra)

    @property
    def reads_patch(self) -> bool:
        """Whether the heads also need the centre patches at the decoded resolution (`centre_patch`)."""
        return max(self.kind.extra, self.style.extra) > len(TEXTURE_STATS)

    def predict(
        self, embeddings: np.ndarray, images: Sequence[Any] | None = None, patches: Sequence[np.ndarray] | None = None
    ) -> list[Style]:
        """(N, D) embeddings of the head's encoder -> one Style per row. A head that reads texture also
        needs the N decoded pictures as the pipeline keeps them for readers (long side 512), and one that
        reads the patch statistics their centre patches at the decoded resolution (`centre_patch` of the
        picture before it was scaled down; the pipeline keeps it as `Item.patch`)."""
        x = np.asarray(embeddings, dtype=np.float32)
        n = self.style.dim - self.style.extra
        if x.ndim != 2 or x.shape[1] != n:
            raise AutotagError(f"style head expects (N, {n}) embeddings, got {x.shape}")
        if self.reads_texture:
            if images is None or len(images) != len(x):
                raise AutotagError("style head reads texture: give the decoded picture of every embedding")
            x = np.hstack([x, np.stack([texture_statistics(im) for im in images]).reshape(len(x), -1)])
        if self.reads_patch:
            if patches is None or len(patches) != len(x):
                raise AutotagError("style head reads the decoded-resolution patch: give the patch of every embedding")
            x = np.hstack([x, np.stack([patch_statistics(p) for p in patches]).reshape(len(x), -1)])
        # the extra columns come last (texture, then patch): a head reads as many as it was trained on
        p_kind = self.kind.predict_proba(x[:, : self.kind.dim])
        p_style = self.style.predict_proba(x[:, : self.style.dim])
        out = []
        for pk, ps in zip(p_kind, p_style, strict=True):
            if pk[1] <= self.art_threshold:
                out.append(Style("photo", "photo", float(pk[0]), float(pk[0])))
            else:
                j = int(np.argmax(ps))
                out.append(Style("art", self.style.classes[j], float(pk[1]), float(ps[j])))
        return out

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path, **self.kind.arrays("kind"), **self.style.arrays("style"), meta=np.array(json.dumps(self.meta)),
            art_threshold=np.array(self.art_threshold),
        )  # fmt: skip

    @classmethod
    def load(cls, path: Path | str = HEAD_PATH) -> StyleHead:
        path = Path(path)
        if not path.is_file():
            raise AutotagError(f"style head {path} is missing: run scripts/train_style.py to make it")
        with np.load(path, allow_pickle=False) as data:
            return cls(
                LinearHead.from_arrays(data, "kind"), LinearHead.from_arrays(data, "style"),
                json.loads(str(data["meta"])), float(data["art_threshold"]),
            )  # fmt: skip


_default: StyleHead | None = None
_lock = threading.Lock()


def default_style_head() -> StyleHead:
    """The shipped head, loaded once."""
    global _default
    with _lock:
        if _default is None:
            _default = StyleHead.load()
        return _default


def picture_styles(
    embeddings: np.ndarray, images: Sequence[Any] | None = None, patches: Sequence[np.ndarray] | None = None
) -> list[Style]:
    """Photo or art (and the art style) of each row of default-encoder embeddings; `images`: the
    decoded pictures as the pipeline keeps them for readers (long side 512), `patches`: their centre
    patches at the decoded resolution, when the head reads them (see StyleHead.predict)."""
    return default_style_head().predict(embeddings, images, patches)


def keep_content_tags(style: Style, tags: Sequence[T], score_of: Any = lambda t: t.score) -> list[T]:
    """The content tags worth showing on a picture of this style.

    Photos keep them all. Abstract and pattern pictures keep none (their style is their tag: an
    ImageNet "jellyfish" or "honeycomb" on a swirl wallpaper is noise). Illustrations and 3D renders
    keep only tags the classifier is sure of (a drawn cat is still a cat)."""
    if style.kind == "photo":
        return list(tags)
    if style.style not in STYLES_WITH_CONTENT:
        return []
    return [t for t in tags if score_of(t) >= ART_CONTENT_MIN_SCORE]
