"""A vector index over image embeddings: one small interface, FAISS underneath.

Kinds (registered names): `exact` (brute-force inner product, right for small collections),
`hnsw` (graph search, fast and accurate up to a few hundred thousand vectors), `ivfpq`
(inverted lists + product quantisation with 8-bit re-ranking, for millions), and `auto`, which
picks by size and moves the collection to the next kind when it outgrows the current one.

Ids are int64 chosen by the caller (the library's image ids). Vectors are L2-normalised on the
way in and on the way out when the metric is cosine, so scores are cosine similarities.

Removal: the exact index removes for real. HNSW graphs cannot delete nodes and FAISS's refined
IVF-PQ cannot either, so those kinds keep a tombstone set, over-fetch at search time and filter;
once tombstones pass a quarter of the index it is compacted (rebuilt from its own stored vectors).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from autotag.registry import Registry
from autotag.types import AutotagError

GROWTH = ("exact", "hnsw", "ivfpq")  # the order a growing collection moves through the kinds
METRICS = ("cosine", "ip")
AUTO_EXACT_MAX = 20_000  # brute force over 20k x 1280 is a few ms per query
AUTO_HNSW_MAX = 300_000  # above this an HNSW of float vectors costs too much memory; use IVF-PQ
IVFPQ_MIN_TRAIN = 10_000  # fewer vectors than this cannot train the coarse and product quantisers well
COMPACT_FRACTION = 0.25
FORMAT_VERSION = 1

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "exact": {},
    "hnsw": {"M": 32, "ef_construction": 80, "ef_search": 128, "storage": "flat"},
    "ivfpq": {"nlist": 0, "m": 0, "nprobe": 32, "k_factor": 16},  # 0 means chosen from the data size / dim
}


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero); float32, C-contiguous."""
    x = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return np.ascontiguousarray(x)


def choose_kind(n: int) -> str:
    """The kind `auto` uses for a collection of n vectors."""
    if n <= AUTO_EXACT_MAX:
        return "exact"
    if n <= AUTO_HNSW_MAX:
        return "hnsw"
    return "ivfpq"


# Index kinds: name -> build(dim, training vectors, param) -> the FAISS index that goes inside the id map;
# param(name) reads that kind's parameter (DEFAULT_PARAMS unless the caller set it). "auto" is no kind
# of its own: it picks one of these by size.
INDEX_KINDS: Registry[Callable[..., Any]] = Registry("index kind")


def check_kind(kind: str) -> str:
    """`kind` if it is "auto" or a registered index kind, else one error listing the valid ones."""
    if kind != "auto" and kind not in INDEX_KINDS:
        raise AutotagError(f"unknown index kind {kind!r}; valid: auto, {', '.join(INDEX_KINDS.names())}")
    return kind


@INDEX_KINDS.register("exact")
def _exact(dim: int, training: np.ndarray, param: Callable[[str], Any]) -> Any:
    import faiss

    return faiss.IndexFlatIP(dim)


@INDEX_KINDS.register("hnsw")
def _hnsw(dim: int, training: np.ndarray, param: Callable[[str], Any]) -> Any:
    import faiss

    m = int(param("M"))
    storage = param("storage")
    if storage == "flat":
        inner = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    elif storage == "sq8":
        inner = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
        inner.train(training)
    else:
        raise AutotagError(f"unknown hnsw storage {storage!r}; valid: flat, sq8")
    inner.hnsw.efConstruction = int(param("ef_construction"))
    return inner


@INDEX_KINDS.register("ivfpq")
def _ivfpq(dim: int, training: np.ndarray, param: Callable[[str], Any]) -> Any:
    import faiss

    metric = faiss.METRIC_INNER_PRODUCT
    nlist = int(param("nlist")) or ivf_lists(len(training))
    m = int(param("m")) or _pq_subquantizers(dim)
    if dim % m:
        raise AutotagError(f"ivfpq m={m} must divide the vector dimension {dim}")
    quantizer = faiss.IndexFlatIP(dim)
    base = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, metric)
    refine = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, metric)
    rng = np.random.default_rng(0)
    sample = training
    wanted = max(64 * nlist, 40 * 256)  # the PQ codebooks (256 centroids each) need ~40 points per centroid
    if len(training) > wanted:
        sample = training[np.sort(rng.choice(len(training), wanted, replace=False))]
    base.train(sample)
    refine.train(sample)
    inner = faiss.IndexRefine(base, refine)
    inner.is_trained = True
    return inner


def _pq_subquantizers(dim: int) -> int:
    """Largest count <= 64 that divides dim and leaves at least 8 dimensions per sub-vector."""
    for m in (64, 48, 40, 32, 24, 20, 16, 12, 10, 8, 4, 2, 1):
        if dim % m == 0 and dim // m >= 8:
            return m
    return 1


def ivf_lists(n: int) -> int:
    """About sqrt(n) inverted lists, a power of two between 64 and 4096."""
    return int(min(4096, max(64, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))


class VectorIndex:
    """add(ids, vectors), remove(ids), search(vectors, k) -> (scores, ids), save(dir), load(dir)."""

    def __init__(self, dim: int, kind: str = "auto", *, metric: str = "cosine", **params: Any) -> None:
        if metric not in METRICS:
            raise AutotagError(f"unknown index metric {metric!r}; valid: {', '.join(METRICS)}")
        self.dim = int(dim)
        self.requested_kind = check_kind(kind)
        self.metric = metric
        known = {k for p in DEFAULT_PARAMS.values() for k in p}
        unknown = set(params) - known
        if unknown:
            raise AutotagError(f"unknown index parameters {sorted(unknown)}; valid: {sorted(known)}")
        self.params = dict(params)
        self.backend_kind: str | None = None  # the kind actually built; None until the first add
        self._index: Any = None
        self._tombstones: set[int] = set()

    # ------------------------------------------------------------------ properties
    @property
    def kind(self) -> str:
        return self.backend_kind or (self.requested_kind if self.requested_kind != "auto" else "exact")

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal) - len(self._tombstones)

    def ids(self) -> np.ndarray:
        """The live ids, in insertion order."""
        if self._index is None:
            return np.zeros(0, np.int64)
        import faiss

        all_ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        if self._tombstones:
            all_ids = all_ids[~np.isin(all_ids, np.fromiter(self._tombstones, np.int64))]
        return all_ids

    def __contains__(self, item: int) -> bool:
        return bool(np.isin(int(item), self.ids()))

    def _param(self, kind: str, name: str) -> Any:
        return self.params.get(name, DEFAULT_PARAMS[kind][name])

    # ------------------------------------------------------------------ building
    def _target_kind(self, n: int) -> str:
        if self.requested_kind == "auto":
            wanted = choose_kind(n)
        else:
            wanted = self.requested_kind
        if wanted == "ivfpq" and n < IVFPQ_MIN_TRAIN:
            return "exact"  # staging: the quantisers need data to train on
        current = self.backend_kind
        # Never step down: removals do not rebuild a bigger index into a smaller kind.
        if current and GROWTH.index(current) > GROWTH.index(wanted):
            return current
        return wanted

    def _build(self, kind: str, training: np.ndarray) -> Any:
        import faiss

        inner = INDEX_KINDS.get(kind)(self.dim, training, lambda name: self._param(kind, name))
        return faiss.IndexIDMap2(inner)

    def _dump(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every live entry, read back from the index's own storage."""
        import faiss

        if self._index is None or self._index.ntotal == 0:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        inner = faiss.downcast_index(self._index.index)
        vectors = inner.reconstruct_n(0, int(self._index.ntotal))
        if self._tombstones:
            keep = ~np.isin(ids, np.fromiter(self._tombstones, np.int64))
            ids, vectors = ids[keep], vectors[keep]
        return ids, np.ascontiguousarray(vectors, dtype=np.float32)

    def _rebuild(self, kind: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        index = self._build(kind, vectors)
        if len(ids):
            index.add_with_ids(vectors, ids)
        self._index, self.backend_kind, self._tombstones = index, kind, set()

    def compact(self) -> None:
        """Drop tombstoned entries for good by rebuilding from the stored vectors."""
        if self._index is not None and self._tombstones:
            ids, vectors = self._dump()
            self._rebuild(self.backend_kind or "exact", ids, vectors)

    # ------------------------------------------------------------------ public operations
    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise AutotagError(f"vectors have shape {x.shape}; this index holds {self.dim}-dimensional vectors")
        if not np.isfinite(x).all():
            raise AutotagError("vectors contain NaN or infinity; re-compute the embeddings")
        return normalize_rows(x) if self.metric == "cosine" else np.ascontiguousarray(x)

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        """Add vectors under caller-chosen int64 ids; an id already present is replaced."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        x = self._prepare(vectors)
        if len(ids) != len(x):
            raise AutotagError(f"{len(ids)} ids for {len(x)} vectors; give one id per vector")
        if len(np.unique(ids)) != len(ids):
            raise AutotagError("the same id appears twice in one add; give each vector its own id")
        if len(ids) == 0:
            return
        if self._index is not None:
            import faiss

            present = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            clash = ids[np.isin(ids, present)]
            if len(clash):
                if self.backend_kind == "exact":
                    self._index.remove_ids(faiss.IDSelectorBatch(clash))
                else:  # a re-used id must not stay hidden behind its own tombstone: drop old copies first
                    self._tombstones.update(int(i) for i in clash)
                    self.compact()
        target = self._target_kind(len(self) + len(ids))
        if self._index is None or target != self.backend_kind:
            old_ids, old_vectors = self._dump()
            all_ids = np.concatenate([old_ids, ids])
            all_vectors = np.concatenate([old_vectors, x]) if len(old_ids) else x
            self._rebuild(target, all_ids, all_vectors)
        else:
            self._index.add_with_ids(x, ids)

    def remove(self, ids: np.ndarray | list[int]) -> int:
        """Remove ids (unknown ones are ignored); returns how many were removed."""
        ids = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        if self._index is None or len(ids) == 0:
            return 0
        import faiss

        present = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        ids = ids[np.isin(ids, present)]
        if self.backend_kind == "exact":
            return int(self._index.remove_ids(faiss.IDSelectorBatch(ids))) if len(ids) else 0
        fresh = [int(i) for i in ids if int(i) not in self._tombstones]
        self._tombstones.update(fresh)
        if len(self._tombstones) > COMPACT_FRACTION * self._index.ntotal:
            self.compact()
        return len(fresh)

    def _search_params(self, k: int) -> Any:
        import faiss

        if self.backend_kind == "hnsw":
            return faiss.SearchParametersHNSW(efSearch=max(int(self._param("hnsw", "ef_search")), k))
        if self.backend_kind == "ivfpq":
            base = faiss.SearchParametersIVF(nprobe=int(self._param("ivfpq", "nprobe")))
            return faiss.IndexRefineSearchParameters(k_factor=float(self._param("ivfpq", "k_factor")),
                                                     base_index_params=base)
        return None

    def search(self, vectors: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query row: (scores (n, k') float32, ids (n, k') int64), k' = min(k, len(self)).

        Scores are cosine similarities for the cosine metric. A slot with no result has id -1.
        """
        x = self._prepare(vectors)
        k = min(int(k), len(self))
        if k <= 0:
            return np.zeros((len(x), 0), np.float32), np.zeros((len(x), 0), np.int64)
        if not self._tombstones:
            scores, ids = self._index.search(x, k, params=self._search_params(k))
            return scores.astype(np.float32), ids.astype(np.int64)
        dead = np.fromiter(self._tombstones, np.int64)
        fetch = min(int(self._index.ntotal), int(k / (1 - len(dead) / self._index.ntotal) * 1.5) + 8)
        while True:
            scores, ids = self._index.search(x, fetch, params=self._search_params(fetch))
            alive = (ids >= 0) & ~np.isin(ids, dead)
            if alive.sum(axis=1).min() >= k or fetch >= self._index.ntotal:
                break
            fetch = min(int(self._index.ntotal), fetch * 2)
        out_scores = np.full((len(x), k), -np.inf, np.float32)
        out_ids = np.full((len(x), k), -1, np.int64)
        for row in range(len(x)):
            keep = np.flatnonzero(alive[row])[:k]
            out_scores[row, : len(keep)] = scores[row, keep]
            out_ids[row, : len(keep)] = ids[row, keep]
        return out_scores, out_ids

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every live entry as stored (8-bit approximations for ivfpq)."""
        return self._dump()

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write index.faiss + index.json into folder (created if needed)."""
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "dim": self.dim,
            "requested_kind": self.requested_kind,
            "backend_kind": self.backend_kind,
            "metric": self.metric,
            "params": self.params,
            "tombstones": sorted(self._tombstones),
        }
        if self._index is not None:
            tmp = folder / "index.faiss.tmp"
            faiss.write_index(self._index, str(tmp))
            tmp.replace(folder / "index.faiss")
        (folder / "index.json.tmp").write_text(json.dumps(meta))
        (folder / "index.json.tmp").replace(folder / "index.json")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> VectorIndex:
        import faiss

        folder = Path(folder)
        meta_path = folder / "index.json"
        if not meta_path.is_file():
            raise AutotagError(f"no vector index in {folder} (index.json missing); build one with `autotag index`")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise AutotagError(f"index in {folder} has format {meta.get('format_version')}; rebuild it")
        index = cls(meta["dim"], meta["requested_kind"], metric=meta["metric"], **meta["params"])
        if meta["backend_kind"] is not None:
            data = folder / "index.faiss"
            if not data.is_file():
                raise AutotagError(f"index in {folder} lacks index.faiss; rebuild it with `autotag index`")
            index._index = faiss.read_index(str(data))
            index.backend_kind = meta["backend_kind"]
            index._tombstones = {int(i) for i in meta["tombstones"]}
        return index

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self.dim}, kind={self.kind!r}, size={len(self)}, metric={self.metric!r})"
