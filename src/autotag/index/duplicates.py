"""Near-duplicate detection: exact copies, then pairs two signals agree on, then groups that do not chain.

Signals. A fingerprint of each picture (a DCT perceptual hash, how much of that hash the picture's detail
actually decides, and its mean brightness) and the encoder's embedding. Each is weak somewhere: the hash
of a flat or smooth picture (gradients, soft waves, one-colour wallpapers) is decided by noise, so two
different smooth pictures can hash alike; a 10% crop moves the hash by ~15 of 64 bits; the embedding
sees abstract wallpapers of one style as alike (cosine 0.8-0.88 between different pictures).

A pair is a duplicate when
- both files have the same bytes (exact copies, listed first), or
- the brightness of the two is within MAX_BRIGHTNESS_RATIO of each other (the light and dark editions
  of one design are different pictures; a brightness edit of a copy stays inside), where a hash is not
  trusted their colour (red and green shares) within MAX_COLOUR_SHIFT, and either
  * the embedding alone is sure (cosine >= threshold), or
  * the hash matches where both pictures have enough detail to trust it (distance <= max_hash_distance,
    detail >= MIN_HASH_DETAIL) and the embedding agrees (cosine >= CONFIRMED_SIMILARITY).

Groups are built from the strongest pairs down, and two groups merge only if every member of one is
linked to every member of the other (complete linkage: brightness compatible and a cosine of at least
CONFIRMED_SIMILARITY or a trusted hash match), so a chain a~b~c~d of look-alikes never becomes a group
unless a and d look alike too. Figures: bench/bench_duplicates.py, BENCHMARKS.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

# Chosen on the dev half of bench/bench_duplicates.py (real wallpapers and photos + edited copies).
DEFAULT_THRESHOLD = 0.84  # cosine at which the embedding alone calls a pair a duplicate
CONFIRMED_SIMILARITY = 0.55  # cosine needed beside a trusted hash match, and between any two group members
DEFAULT_HASH_DISTANCE = 8  # of 64 bits; copies land at 0-6, unrelated detailed pictures around 32
MIN_HASH_DETAIL = 0.5  # fraction of the hash's comparisons decided by a clear margin
MAX_BRIGHTNESS_RATIO = 1.6  # brighter / darker mean grey of two copies (+ a small floor for black)
MAX_COLOUR_SHIFT = 0.04  # largest difference in mean red or green share between a flat picture and its copy

_HASH_SIDE = 32
_HASH_KEEP = 8
_DETAIL_MARGIN = 4.0  # DCT units (32x32 orthonormal; ~0.25 grey levels of a pattern's amplitude)
_DARK_FLOOR = 8.0  # grey levels added before a brightness ratio, so near-black pictures compare sanely


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II basis: row k holds cos(pi * (2i + 1) * k / 2n)."""
    i = np.arange(n)
    m = np.cos(np.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT = _dct_matrix(_HASH_SIDE)


@dataclass(frozen=True)
class Fingerprint:
    """What duplicate detection keeps of a picture besides its embedding (a few bytes)."""

    phash: int  # 64-bit DCT perceptual hash
    detail: float  # 0 (flat: the hash is noise) .. 1 (every hash bit decided by a clear margin)
    brightness: float  # mean grey level, 0..255
    colour: tuple[float, float] = (math.nan, math.nan)  # mean red and green share of r+g+b (brightness-free)

    @property
    def trusted(self) -> bool:
        return self.detail >= MIN_HASH_DETAIL

    def to_dict(self) -> dict[str, Any]:
        return {"phash": f"{self.phash:016x}", "detail": round(self.detail, 4), "brightness": round(self.brightness, 2),
                "colour": [round(c, 4) for c in self.colour]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fingerprint:
        colour = d.get("colour") or (math.nan, math.nan)
        return cls(int(d["phash"], 16), float(d["detail"]), float(d["brightness"]),
                   (float(colour[0]), float(colour[1])))


def fingerprint(image: Image.Image) -> Fingerprint:
    """pHash (low-frequency 8x8 DCT coefficients of a 32x32 grey image vs their median), detail, brightness."""
    grey = np.asarray(image.convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.LANCZOS), dtype=np.float64)
    coeffs = (_DCT @ grey @ _DCT.T)[:_HASH_KEEP, :_HASH_KEEP].reshape(-1)
    # The DC term only measures brightness; comparing the rest against their median keeps the hash
    # balanced (about half the bits set) whatever the overall exposure.
    median = np.median(coeffs[1:])
    bits = coeffs > median
    detail = float(np.mean(np.abs(coeffs[1:] - median) > _DETAIL_MARGIN))
    rgb = np.asarray(image.convert("RGB").resize((_HASH_SIDE, _HASH_SIDE), Image.BILINEAR), dtype=np.float64)
    total = rgb.sum(axis=2) + 3.0  # + a little, so black pixels count as grey
    share = ((rgb[..., 0] + 1.0) / total).mean(), ((rgb[..., 1] + 1.0) / total).mean()
    bits_int = int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])
    return Fingerprint(bits_int, detail, float(grey.mean()), (float(share[0]), float(share[1])))


def phash(image: Image.Image) -> int:
    """64-bit DCT perceptual hash (see fingerprint)."""
    return fingerprint(image).phash


def hamming(a: int | np.ndarray, b: int | np.ndarray) -> np.ndarray:
    """Bit differences between 64-bit hashes (broadcasts)."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    return np.bitwise_count(x).astype(np.int64)


def hash_pairs(hashes: np.ndarray, max_distance: int = DEFAULT_HASH_DISTANCE) -> list[tuple[int, int, int]]:
    """All index pairs (i, j, distance), i < j, whose hashes differ in at most max_distance bits.

    Pigeonhole: split the 64 bits into max_distance + 1 segments; two hashes that close agree exactly
    on at least one segment, so only hashes sharing a segment value are compared.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    if n < 2:
        return []
    if n <= 4096:  # small: all pairs at once is simpler and just as fast
        d = hamming(hashes[:, None], hashes[None, :])
        i, j = np.nonzero(np.triu(d <= max_distance, k=1))
        return [(int(a), int(b), int(d[a, b])) for a, b in zip(i, j, strict=True)]
    segments = max_distance + 1
    bounds = np.linspace(0, 64, segments + 1).astype(int)
    found: dict[tuple[int, int], int] = {}
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        mask = np.uint64(((1 << (hi - lo)) - 1) << lo)
        keys = (hashes & mask) >> np.uint64(lo)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], n]
        for s, e in zip(starts, ends, strict=True):
            if e - s < 2:
                continue
            members = order[s:e]
            d = hamming(hashes[members][:, None], hashes[members][None, :])
            a, b = np.nonzero(np.triu(d <= max_distance, k=1))
            for x, y in zip(members[a], members[b], strict=True):
                key = (int(min(x, y)), int(max(x, y)))
                found[key] = int(hamming(hashes[key[0]], hashes[key[1]]))
    return [(a, b, dist) for (a, b), dist in sorted(found.items())]


@dataclass
class DuplicatePair:
    a: int
    b: int
    similarity: float  # embedding cosine similarity (nan when no embedding was given)
    hash_distance: int | None = None  # pHash bit distance when the hash was trusted and matched
    exact: bool = False  # the same bytes

    def to_dict(self) -> dict[str, Any]:
        sim = None if np.isnan(self.similarity) else round(float(self.similarity), 6)
        return {"a": self.a, "b": self.b, "similarity": sim, "hash_distance": self.hash_distance, "exact": self.exact}


@dataclass
class DuplicateGroup:
    ids: list[int]
    pairs: list[DuplicatePair] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """Every member has the same bytes."""
        return bool(self.pairs) and all(p.exact for p in self.pairs) and len(self.pairs) >= len(self.ids) - 1

    @property
    def max_similarity(self) -> float:
        sims = [p.similarity for p in self.pairs if not np.isnan(p.similarity)]
        return max(sims) if sims else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"ids": self.ids, "exact": self.exact, "pairs": [p.to_dict() for p in self.pairs]}


class _Signals:
    """Pairwise tests over positions 0..n-1 of the caller's arrays."""

    def __init__(
        self,
        unit: np.ndarray | None,
        prints: Sequence[Fingerprint | int] | None,
        digests: Sequence[str | None] | None,
        max_hash_distance: int,
        link_similarity: float,
    ) -> None:
        self.unit = unit
        self.hashes = self.trusted = self.brightness = self.colour = None
        if prints is not None:
            # A bare pHash (stored before fingerprints had detail) cannot say whether its bits mean
            # anything, so it is never trusted; its brightness is unknown and never blocks a pair.
            full = [p if isinstance(p, Fingerprint) else Fingerprint(int(p), 0.0, math.nan) for p in prints]
            self.hashes = np.array([p.phash for p in full], dtype=np.uint64)
            self.trusted = np.array([p.trusted for p in full], dtype=bool)
            self.brightness = np.array([p.brightness for p in full], dtype=np.float64)
            self.colour = np.array([p.colour for p in full], dtype=np.float64)
        self.digests = digests
        self.max_hash_distance = max_hash_distance
        self.link_similarity = link_similarity
        self.max_log_ratio = math.log(MAX_BRIGHTNESS_RATIO)

    def similarity(self, i: int, j: int) -> float:
        return float(self.unit[i] @ self.unit[j]) if self.unit is not None else float("nan")

    def same_bytes(self, i: int, j: int) -> bool:
        return self.digests is not None and self.digests[i] is not None and self.digests[i] == self.digests[j]

    def brightness_compatible(self, i: int, j: int) -> bool:
        if self.brightness is None or np.isnan(self.brightness[i]) or np.isnan(self.brightness[j]):
            return True
        ratio = (self.brightness[i] + _DARK_FLOOR) / (self.brightness[j] + _DARK_FLOOR)
        return abs(math.log(ratio)) <= self.max_log_ratio

    def colour_compatible(self, i: int, j: int) -> bool:
        """Where a hash cannot be trusted (flat, smooth pictures) the embedding cannot tell one colour from
        another either: such pictures must also share their colour."""
        if self.colour is None or (self.trusted[i] and self.trusted[j]):
            return True
        diff = np.abs(self.colour[i] - self.colour[j])
        return bool(np.all(np.isnan(diff)) or np.nanmax(diff) <= MAX_COLOUR_SHIFT)

    def trusted_hash_distance(self, i: int, j: int) -> int | None:
        """The hash distance when both hashes are trusted and close enough, else None."""
        if self.hashes is None or not (self.trusted[i] and self.trusted[j]):
            return None
        d = int(hamming(self.hashes[i], self.hashes[j]))
        return d if d <= self.max_hash_distance else None

    def linked(self, i: int, j: int) -> bool:
        """May i and j sit in one group (complete-linkage test)."""
        if self.same_bytes(i, j):
            return True
        if not (self.brightness_compatible(i, j) and self.colour_compatible(i, j)):
            return False
        if self.trusted_hash_distance(i, j) is not None:
            return True
        return self.unit is not None and self.similarity(i, j) >= self.link_similarity


def find_duplicates(
    ids: np.ndarray | list[int],
    vectors: np.ndarray | None = None,
    fingerprints: Sequence[Fingerprint | int] | None = None,
    *,
    digests: Sequence[str | None] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    max_hash_distance: int = DEFAULT_HASH_DISTANCE,
    neighbours: int = 20,
    index: Any = None,
) -> list[DuplicateGroup]:
    """Groups of ids that are duplicates: groups of exact copies first, then the largest.

    vectors: embeddings in the same order as ids; fingerprints: `fingerprint()` of each picture, same order
    (a bare pHash int is accepted and never trusted);
    digests: content hashes (same bytes = exact copies); any of the three may be missing.
    threshold: the cosine at which the embedding alone decides (a trusted hash match lowers it to
    CONFIRMED_SIMILARITY, or to threshold if that is lower).
    index: an existing VectorIndex holding these ids, to avoid building a temporary exact one.
    Only the `neighbours` most similar items of each item are considered for the embedding test.
    """
    from autotag.index.vector import VectorIndex, normalize_rows

    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    if len(np.unique(ids)) != n:
        raise ValueError("find_duplicates needs distinct ids")
    for name, seq in (("vectors", vectors), ("fingerprints", fingerprints), ("digests", digests)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"find_duplicates: {len(seq)} {name} for {n} ids")
    confirmed = min(CONFIRMED_SIMILARITY, threshold)
    unit = normalize_rows(vectors) if vectors is not None and n else None
    signals = _Signals(unit, fingerprints, digests, max_hash_distance, confirmed)
    position = {int(x): k for k, x in enumerate(ids)}
    pairs: dict[tuple[int, int], DuplicatePair] = {}  # keyed by positions, i < j

    def consider(i: int, j: int) -> None:
        i, j = min(i, j), max(i, j)
        if (i, j) in pairs:
            return
        sim = signals.similarity(i, j)
        if signals.same_bytes(i, j):
            pairs[(i, j)] = DuplicatePair(int(ids[i]), int(ids[j]), sim, 0, exact=True)
            return
        if not (signals.brightness_compatible(i, j) and signals.colour_compatible(i, j)):
            return
        dist = signals.trusted_hash_distance(i, j)
        embedding_sure = unit is not None and sim >= threshold
        hash_confirmed = dist is not None and (unit is None or sim >= confirmed)
        if embedding_sure or hash_confirmed:
            pairs[(i, j)] = DuplicatePair(int(ids[i]), int(ids[j]), sim, dist)

    if digests is not None:
        by_digest: dict[str, list[int]] = {}
        for k, d in enumerate(digests):
            if d is not None:
                by_digest.setdefault(d, []).append(k)
        for members in by_digest.values():
            for i in members[1:]:
                consider(members[0], i)
    if signals.hashes is not None:
        trusted = np.flatnonzero(signals.trusted)
        for a, b, _ in hash_pairs(signals.hashes[trusted], max_hash_distance):
            consider(int(trusted[a]), int(trusted[b]))
    if unit is not None and n > 1:
        if index is None:
            index = VectorIndex(unit.shape[1], "exact")
            index.add(ids, unit)
        scores, found = index.search(unit, min(neighbours + 1, n))
        for row, (srow, frow) in enumerate(zip(scores, found, strict=True)):
            for s, other in zip(srow, frow, strict=True):
                if other >= 0 and other != ids[row] and s >= threshold and int(other) in position:
                    consider(row, position[int(other)])
    return _complete_linkage_groups(pairs, signals, ids)


def _strength(pair: DuplicatePair) -> tuple[int, float]:
    if pair.exact:
        return (0, 0.0)
    if not np.isnan(pair.similarity):
        return (1, -pair.similarity)
    return (1, (pair.hash_distance or 0) / 64 - 1)


def _complete_linkage_groups(
    pairs: dict[tuple[int, int], DuplicatePair], signals: _Signals, ids: np.ndarray
) -> list[DuplicateGroup]:
    """Merge from the strongest pair down; two groups merge only if all their members are linked."""
    group_of: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    kept: dict[int, list[DuplicatePair]] = {}
    for (i, j), pair in sorted(pairs.items(), key=lambda kv: (_strength(kv[1]), kv[0])):
        gi, gj = group_of.setdefault(i, i), group_of.setdefault(j, j)
        members.setdefault(gi, [i])
        members.setdefault(gj, [j])
        if gi == gj:
            kept[gi].append(pair)
            continue
        if not all(signals.linked(x, y) for x in members[gi] for y in members[gj]):
            continue
        keep, gone = min(gi, gj), max(gi, gj)
        for x in members[gone]:
            group_of[x] = keep
        members[keep] += members.pop(gone)
        kept[keep] = kept.get(keep, []) + kept.pop(gone, []) + [pair]
    groups = []
    for g, group_pairs in kept.items():
        group_pairs.sort(key=lambda p: (p.a, p.b))
        groups.append(DuplicateGroup(ids=sorted(int(ids[x]) for x in members[g]), pairs=group_pairs))
    return sorted(groups, key=lambda g: (not any(p.exact for p in g.pairs), -len(g.ids), g.ids[0]))
