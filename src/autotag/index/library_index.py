"""The vector index of one library, kept in a folder beside its database:

  raw/          VectorIndex of the encoder's embeddings (duplicates; similar-search without a head)
  head/         optional learned retrieval head (autotag.index.learned)
  projected/    VectorIndex of head(embedding), used by similar-search when a head is present
  phash.json    image id -> duplicate fingerprint (pHash, detail, brightness; a bare hex pHash in
                libraries indexed before fingerprints, used but never trusted)
  meta.json     encoder name and dimension, so vectors of another encoder are never mixed in

Index ids are the library's image ids; the database stays the source of truth for paths.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from autotag.index.duplicates import Fingerprint
from autotag.index.learned import RetrievalHead, has_retrieval_head
from autotag.index.vector import IVFPQ_MIN_TRAIN, VectorIndex, check_kind, choose_kind, ivf_lists
from autotag.types import AutotagError

_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def folder_lock(folder: Path) -> threading.RLock:
    """One lock per index folder in this process, whichever object opened it."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(folder.resolve()), threading.RLock())


class LibraryIndex:
    """The vector indexes, retrieval head and hashes of one library, loaded from its index folder."""

    def __init__(self, folder: Path, encoder_name: str, dim: int, kind: str = "auto") -> None:
        check_kind(kind)
        self.folder = folder
        self.lock = folder_lock(folder)
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
        stored = json.loads(phash_path.read_text()) if phash_path.is_file() else {}
        self.prints: dict[int, Fingerprint | int] = {
            int(k): Fingerprint.from_dict(v) if isinstance(v, dict) else int(v, 16) for k, v in stored.items()
        }
        self.dirty = False

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
        self.dirty = True

    def expect(self, total: int, kind: str = "auto") -> bool:
        """Get an empty index ready for `total` vectors added in bulk. True when it will be IVF-PQ:
        then the first vectors added must be a random sample of all of them (the quantisers train on it)."""
        target = choose_kind(total) if kind == "auto" else kind
        if target != "ivfpq" or len(self) or total < IVFPQ_MIN_TRAIN:
            return False
        self.raw = VectorIndex(self.dim, "ivfpq", nlist=ivf_lists(total))
        return True

    def add(self, ids: np.ndarray, vectors: np.ndarray, prints: Sequence[Fingerprint | int]) -> None:
        self.raw.add(ids, vectors)
        if self.head is not None and self.projected is not None:
            self.projected.add(ids, self.head(vectors))
        for i, p in zip(ids, prints, strict=True):
            self.prints[int(i)] = p if isinstance(p, Fingerprint) else int(p)
        self.dirty = True

    def remove(self, ids: Iterable[int]) -> int:
        ids = np.asarray(list(ids), dtype=np.int64)
        removed = self.raw.remove(ids)
        if self.projected is not None:
            self.projected.remove(ids)
        for i in ids:
            self.prints.pop(int(i), None)
        self.dirty = self.dirty or removed > 0
        return removed

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.head is not None and self.projected is not None:
            return self.projected.search(self.head(vectors), k)
        return self.raw.search(vectors, k)

    def ids(self) -> np.ndarray:
        return self.raw.ids()

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, raw embeddings) of every indexed image."""
        return self.raw.vectors()

    def __contains__(self, image_id: int) -> bool:
        return int(image_id) in self.prints

    def __len__(self) -> int:
        return len(self.raw)

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.raw.save(self.folder / "raw")
        if self.projected is not None:
            self.projected.save(self.folder / "projected")
        tmp = self.folder / "phash.json.tmp"
        tmp.write_text(json.dumps({str(k): v.to_dict() if isinstance(v, Fingerprint) else f"{v:016x}"
                                   for k, v in self.prints.items()}))
        tmp.replace(self.folder / "phash.json")
        (self.folder / "meta.json").write_text(json.dumps({"encoder": self.encoder_name, "dim": self.dim}))
        self.dirty = False
