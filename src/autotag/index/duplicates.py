"""Near-duplicate detection: a perceptual-hash pre-check plus embedding-similarity groups.

The DCT perceptual hash (pHash) catches exact and near-exact copies (re-encodes, resizes, mild
colour changes) cheaply and independently of the network; the embedding similarity catches the
edits a hash misses (crops, small rotations). Pairs from either test are joined into groups with a
union-find, and every group keeps the pairs (with their similarities) that put it together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

# Chosen on bench/bench_duplicates.py (real photos, five edits each, mixed with distinct photos):
# edited copies score >= ~0.80 cosine, distinct photos <= ~0.6 with the default encoder.
DEFAULT_THRESHOLD = 0.80
DEFAULT_HASH_DISTANCE = 6  # of 64 bits; near-exact copies land at 0-4, unrelated photos around 32

_HASH_SIDE = 32
_HASH_KEEP = 8


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II basis: row k holds cos(pi * (2i + 1) * k / 2n)."""
    i = np.arange(n)
    m = np.cos(np.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT = _dct_matrix(_HASH_SIDE)


def phash(image: Image.Image) -> int:
    """64-bit DCT perceptual hash: low-frequency 8x8 DCT coefficients of a 32x32 grey image vs their median."""
    grey = np.asarray(image.convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.LANCZOS), dtype=np.float64)
    coeffs = (_DCT @ grey @ _DCT.T)[:_HASH_KEEP, :_HASH_KEEP].reshape(-1)
    # The DC term only measures brightness; comparing the rest against their median keeps the hash
    # balanced (about half the bits set) whatever the overall exposure.
    bits = coeffs > np.median(coeffs[1:])
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


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
    hash_distance: int | None = None  # pHash bit distance when the hash test matched

    def to_dict(self) -> dict[str, Any]:
        sim = None if np.isnan(self.similarity) else round(float(self.similarity), 6)
        return {"a": self.a, "b": self.b, "similarity": sim, "hash_distance": self.hash_distance}


@dataclass
class DuplicateGroup:
    ids: list[int]
    pairs: list[DuplicatePair] = field(default_factory=list)

    @property
    def max_similarity(self) -> float:
        sims = [p.similarity for p in self.pairs if not np.isnan(p.similarity)]
        return max(sims) if sims else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"ids": self.ids, "pairs": [p.to_dict() for p in self.pairs]}


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_duplicates(
    ids: np.ndarray | list[int],
    vectors: np.ndarray | None = None,
    hashes: np.ndarray | list[int] | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    max_hash_distance: int = DEFAULT_HASH_DISTANCE,
    neighbours: int = 20,
    index: Any = None,
) -> list[DuplicateGroup]:
    """Groups of ids that are near-duplicates, largest first.

    vectors: embeddings in the same order as ids (cosine similarity >= threshold joins two items);
    hashes: pHashes in the same order (distance <= max_hash_distance joins two items);
    index: an existing VectorIndex holding these ids, to avoid building a temporary exact one.
    Only the `neighbours` most similar items of each item are considered for the embedding test.
    """
    from autotag.index.vector import VectorIndex, normalize_rows

    ids = np.asarray(ids, dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("find_duplicates needs distinct ids")
    pairs: dict[tuple[int, int], DuplicatePair] = {}
    unit = normalize_rows(vectors) if vectors is not None and len(ids) else None

    def similarity(i: int, j: int) -> float:
        return float(unit[i] @ unit[j]) if unit is not None else float("nan")

    if hashes is not None:
        for i, j, dist in hash_pairs(np.asarray(hashes, dtype=np.uint64), max_hash_distance):
            key = (int(ids[i]), int(ids[j]))
            pairs[key] = DuplicatePair(key[0], key[1], similarity(i, j), dist)
    if unit is not None and len(ids) > 1:
        if index is None:
            index = VectorIndex(unit.shape[1], "exact")
            index.add(ids, unit)
        scores, found = index.search(unit, min(neighbours + 1, len(ids)))
        for row, (srow, frow) in enumerate(zip(scores, found, strict=True)):
            for s, other in zip(srow, frow, strict=True):
                if other < 0 or other == ids[row] or s < threshold:
                    continue
                key = (int(min(ids[row], other)), int(max(ids[row], other)))
                if key not in pairs:
                    pairs[key] = DuplicatePair(key[0], key[1], float(s))
    uf = _UnionFind()
    for a, b in pairs:
        uf.union(a, b)
    groups: dict[int, DuplicateGroup] = {}
    for (a, _b), pair in sorted(pairs.items()):
        group = groups.setdefault(uf.find(a), DuplicateGroup(ids=[]))
        group.pairs.append(pair)
    for group in groups.values():
        group.ids = sorted({p.a for p in group.pairs} | {p.b for p in group.pairs})
    return sorted(groups.values(), key=lambda g: (-len(g.ids), g.ids[0]))
