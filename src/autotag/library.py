"""Similar-image search over a library: decode + encode + store + index, shared by the CLI and the API.

A library's vector index lives in `lib.index_dir`:
  raw/          VectorIndex of the encoder's embeddings (duplicates; similar-search without a head)
  head/         optional learned retrieval head (autotag.index.learned)
  projected/    VectorIndex of head(embedding), used by similar-search when a head is present
  phash.json    image id -> 64-bit perceptual hash (near-exact copy pre-check)
  meta.json     encoder name and dimension, so vectors of another encoder are never mixed in
Index ids are the library's image ids; the database stays the source of truth for paths.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from autotag.index.duplicates import DEFAULT_HASH_DISTANCE, DEFAULT_THRESHOLD, find_duplicates, phash
from autotag.index.learned import RetrievalHead, has_retrieval_head
from autotag.index.vector import VectorIndex
from autotag.types import AutotagError

if TYPE_CHECKING:
    from autotag.pipeline import Source, Tagger
    from autotag.store.library import Library

_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(folder: Path) -> threading.RLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(folder.resolve()), threading.RLock())


class LibraryIndex:
    """The vector indexes, retrieval head and hashes of one library, loaded from `lib.index_dir`."""

    def __init__(self, folder: Path, encoder_name: str, dim: int, kind: str = "auto") -> None:
        self.folder = folder
        self.lock = _lock_for(folder)
        meta_path = folder / "meta.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta["encoder"] != encoder_name or meta["dim"] != dim:
                raise AutotagError(
                    f"the index in {folder} holds {meta['encoder']} embeddings, not {encoder_name}; "
                    f"use --model {meta['encoder']} or delete the folder to re-index"
                )
        self.encoder_name, self.dim = encoder_name, dim
        has_raw = (folder / "raw" / "index.json").is_file()
        self.raw = VectorIndex.load(folder / "raw") if has_raw else VectorIndex(dim, kind)
        self.head = RetrievalHead.load(folder / "head") if has_retrieval_head(folder / "head") else None
        self.projected: VectorIndex | None = None
        if self.head is not None:
            if (folder / "projected" / "index.json").is_file():
                self.projected = VectorIndex.load(folder / "projected")
            else:
                self._project_all()
        phash_path = folder / "phash.json"
        self.phashes: dict[int, int] = (
            {int(k): int(v, 16) for k, v in json.loads(phash_path.read_text()).items()} if phash_path.is_file() else {}
        )

    def _project_all(self) -> None:
        assert self.head is not None
        self.projected = VectorIndex(self.head.output_dim, self.raw.requested_kind)
        ids, vectors = self.raw.vectors()
        if len(ids):
            self.projected.add(ids, self.head(vectors))

    def set_head(self, head_folder: str | Path) -> None:
        """Use the retrieval head in head_folder from now on (copied in; stored vectors re-projected)."""
        head = RetrievalHead.load(head_folder)
        if head.config.input_dim != self.dim:
            raise AutotagError(f"retrieval head takes {head.config.input_dim}-dim vectors, the index holds {self.dim}")
        if head.config.encoder and head.config.encoder != self.encoder_name:
            raise AutotagError(
                f"retrieval head was trained on {head.config.encoder} embeddings, not {self.encoder_name}"
            )
        head.save(self.folder / "head")
        self.head = head
        self._project_all()

    def add(self, ids: np.ndarray, vectors: np.ndarray, hashes: Sequence[int]) -> None:
        self.raw.add(ids, vectors)
        if self.head is not None and self.projected is not None:
            self.projected.add(ids, self.head(vectors))
        self.phashes.update({int(i): int(h) for i, h in zip(ids, hashes, strict=True)})

    def remove(self, ids: Iterable[int]) -> int:
        ids = np.asarray(list(ids), dtype=np.int64)
        removed = self.raw.remove(ids)
        if self.projected is not None:
            self.projected.remove(ids)
        for i in ids:
            self.phashes.pop(int(i), None)
        return removed

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.head is not None and self.projected is not None:
            return self.projected.search(self.head(vectors), k)
        return self.raw.search(vectors, k)

    def __contains__(self, image_id: int) -> bool:
        return int(image_id) in self.phashes

    def __len__(self) -> int:
        return len(self.raw)

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.raw.save(self.folder / "raw")
        if self.projected is not None:
            self.projected.save(self.folder / "projected")
        tmp = self.folder / "phash.json.tmp"
        tmp.write_text(json.dumps({str(k): f"{v:016x}" for k, v in self.phashes.items()}))
        tmp.replace(self.folder / "phash.json")
        (self.folder / "meta.json").write_text(json.dumps({"encoder": self.encoder_name, "dim": self.dim}))


def _tagger(tagger: Tagger | None, model: str | None = None) -> Tagger:
    if tagger is not None:
        return tagger
    from autotag.pipeline import Tagger

    return Tagger.load(model)


def open_index(lib: Library, tagger: Tagger | None = None, kind: str = "auto") -> LibraryIndex:
    tagger = _tagger(tagger)
    spec = tagger.encoder.spec
    return LibraryIndex(lib.index_dir, spec.name, spec.embedding_dim, kind)


@dataclass
class IngestReport:
    added: int = 0  # newly indexed images
    skipped: int = 0  # already indexed (same content hash)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    ids: list[int] = field(default_factory=list)  # library ids of every readable source, in order

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "skipped": self.skipped,
            "failed": [{"path": p, "error": e} for p, e in self.failed],
        }


def _read_for_index(source: Any, tagger: Tagger) -> tuple[str, Image.Image, dict] | str:
    from autotag.ingest import ImageError
    from autotag.pipeline import read_image

    try:
        return read_image(source, tagger.settings, tagger.encoder.spec.input_size)
    except (ImageError, AutotagError, OSError) as exc:
        return str(exc)


def ingest_paths(
    lib: Library,
    sources: Iterable[Source],
    *,
    tagger: Tagger | None = None,
    kind: str = "auto",
    head: str | Path | None = None,
    progress: bool = False,
) -> IngestReport:
    """Add images (paths, URLs, bytes or PIL images) to the library and its vector index.

    Content already indexed is skipped by hash; a bad file is reported and the batch goes on.
    `head`: a retrieval-head folder to use for similar-search from now on.
    """
    from autotag.pipeline import ProgressBar, source_name

    tagger = _tagger(tagger)
    index = open_index(lib, tagger, kind)
    sources = list(sources)
    report = IngestReport()
    batch_size = tagger.settings.batch_size
    with index.lock, ThreadPoolExecutor(max(1, tagger.settings.workers)) as pool, ProgressBar(
        len(sources) if progress else 0, "indexing"
    ) as bar:
        if head is not None:
            index.set_head(head)
        for start in range(0, len(sources), batch_size):
            chunk = sources[start : start + batch_size]
            decoded = list(pool.map(lambda s: _read_for_index(s, tagger), chunk))
            new_ids, arrays, hashes = [], [], []
            for src, item in zip(chunk, decoded, strict=True):
                if isinstance(item, str):
                    report.failed.append((source_name(src), item))
                    continue
                digest, im, meta = item
                image_id, _ = lib.add_image(
                    digest,
                    source_name(src),
                    width=meta.get("width"),
                    height=meta.get("height"),
                    format=meta.get("format"),
                    size_bytes=meta.get("size_bytes"),
                )
                report.ids.append(image_id)
                if image_id in index or image_id in new_ids:
                    report.skipped += 1
                    continue
                new_ids.append(image_id)
                arrays.append(tagger.encoder.preprocess(im))
                hashes.append(phash(im))
            if new_ids:
                _, embeddings = tagger.encoder.run(np.stack(arrays))
                index.add(np.asarray(new_ids, np.int64), embeddings, hashes)
                report.added += len(new_ids)
            bar.advance(len(chunk))
        index.save()
    return report


def _embed_query(query: Source | np.ndarray, tagger: Tagger) -> tuple[np.ndarray, str | None]:
    if isinstance(query, np.ndarray):
        return np.asarray(query, np.float32).reshape(1, -1), None
    item = _read_for_index(query, tagger)
    if isinstance(item, str):
        raise AutotagError(item)
    digest, im, _ = item
    _, embedding = tagger.encoder.encode([im])
    return embedding, digest


def similar(
    lib: Library, query: Source | np.ndarray, k: int = 10, *, tagger: Tagger | None = None
) -> list[dict[str, Any]]:
    """The k library images most similar to `query` (an image, or an embedding), best first.

    The query itself is left out when it is in the library (same content hash).
    """
    if k <= 0:
        raise AutotagError(f"k must be positive, got {k}")
    tagger = _tagger(tagger)
    index = open_index(lib, tagger)
    if len(index) == 0:
        raise AutotagError(f"the library index in {lib.index_dir} is empty; add images with `autotag index PATH`")
    vector, digest = _embed_query(query, tagger)
    own = lib.get_image_by_hash(digest) if digest else None
    with index.lock:
        scores, ids = index.search(vector, k + 1)
    results = []
    for score, image_id in zip(scores[0], ids[0], strict=True):
        if image_id < 0 or (own is not None and image_id == own.id):
            continue
        image = lib.get_image(int(image_id))
        if image is None:  # deleted from the library after indexing
            continue
        results.append({"id": int(image_id), "path": image.source, "similarity": round(float(score), 6)})
    return results[:k]


def duplicate_groups(
    lib: Library,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    max_hash_distance: int = DEFAULT_HASH_DISTANCE,
    tagger: Tagger | None = None,
) -> list[dict[str, Any]]:
    """Groups of near-duplicate library images with the pairs (and similarities) that join them."""
    if not 0.0 < threshold <= 1.0:
        raise AutotagError(f"threshold must be in (0, 1], got {threshold}")
    index = open_index(lib, tagger)
    with index.lock:
        ids, vectors = index.raw.vectors()
        hashes = np.array([index.phashes.get(int(i), 0) for i in ids], dtype=np.uint64)
        groups = find_duplicates(
            ids, vectors, hashes, threshold=threshold, max_hash_distance=max_hash_distance, index=index.raw
        )
    out = []
    for group in groups:
        images = {i: lib.get_image(i) for i in group.ids}
        out.append(
            {
                "size": len(group.ids),
                "images": [{"id": i, "path": im.source if im else None} for i, im in images.items()],
                "pairs": [p.to_dict() for p in group.pairs],
            }
        )
    return out


def forget(lib: Library, image_ids: Iterable[int], *, tagger: Tagger | None = None) -> int:
    """Remove images from the vector index (not from the database); returns how many were indexed."""
    index = open_index(lib, tagger)
    with index.lock:
        removed = index.remove(image_ids)
        index.save()
    return removed


def collection_map(
    lib: Library,
    out_html: str | Path,
    *,
    out_png: str | Path | None = None,
    limit: int = 5000,
    seed: int = 0,
    tagger: Tagger | None = None,
) -> dict[str, Any]:
    """Write the t-SNE map of (up to `limit`) indexed images; points are coloured by their top tag."""
    from autotag.index.projection import project_2d, render_html, render_png, thumbnail_data_uri
    from autotag.ingest import decode_image, load_source

    index = open_index(lib, tagger)
    with index.lock:
        ids, vectors = index.raw.vectors()
    if len(ids) == 0:
        raise AutotagError(f"the library index in {lib.index_dir} is empty; add images with `autotag index PATH`")
    if len(ids) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(ids), limit, replace=False))
        ids, vectors = ids[keep], vectors[keep]
    if index.head is not None:
        vectors = index.head(vectors)
    coords = project_2d(vectors, seed=seed)
    labels, titles, thumbs = [], [], []
    for image_id in ids:
        image = lib.get_image(int(image_id))
        preds = [p for p in lib.predictions(int(image_id)) if getattr(p, "kind", "leaf") != "ancestor"]
        user = lib.user_tags(int(image_id))
        best = max(preds, key=lambda p: p.score).tag if preds else (user[0] if user else "")
        labels.append(best)
        titles.append(image.source if image else str(image_id))
        try:
            thumbs.append(thumbnail_data_uri(decode_image(load_source(image.source), min_side=128)) if image else None)
        except Exception:  # a moved or unreadable file still gets its point, just no picture
            thumbs.append(None)
    render_html(coords, labels, titles, thumbs, out_html, title=f"autotag map: {len(ids)} images")
    if out_png is not None:
        render_png(coords, labels, out_png)
    return {"images": len(ids), "html": str(out_html), "png": str(out_png) if out_png else None}


def delete_index(lib: Library) -> None:
    """Forget the whole vector index of a library (the next `autotag index` rebuilds it)."""
    folder = lib.index_dir
    with _lock_for(folder):
        for name in ("raw", "projected", "head"):
            shutil.rmtree(folder / name, ignore_errors=True)
        for name in ("phash.json", "meta.json"):
            (folder / name).unlink(missing_ok=True)
