"""Embeddings stored once per (content hash, encoder): an append-only, memory-mapped store on disk.

Layout of `root/<encoder name>/`:
- `vectors.f32`  rows of `dim` float32, appended only;
- `keys.bin`     one 32-byte key per row (the SHA-256 content hash in binary), same row order;
- `meta.json`    encoder name, dim, format version.

A row counts only once its key is written, and keys are written after their vectors are flushed,
so a crash mid-append leaves at most unreferenced bytes at the end of `vectors.f32`, which the next
writer cuts off. Writers take an exclusive lock on `lock`; readers never lock and pick up rows added
by other processes on their next call.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autotag.types import AutotagError

FORMAT_VERSION = 1
KEY_BYTES = 32
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def _key(content_hash: str) -> bytes:
    """32-byte key: the SHA-256 hex decoded, or the SHA-256 of any other string."""
    if _HEX64.match(content_hash):
        return bytes.fromhex(content_hash)
    return hashlib.sha256(content_hash.encode("utf-8")).digest()


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "encoder"


class EmbeddingCache:
    """Vectors of one encoder keyed by image content hash. Safe to reopen and to share between processes."""

    def __init__(self, root: str | Path, encoder_name: str, dim: int) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.encoder_name = encoder_name
        self.dim = int(dim)
        self.folder = Path(root).expanduser() / _safe_name(encoder_name)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._vectors_path = self.folder / "vectors.f32"
        self._keys_path = self.folder / "keys.bin"
        self._lock_path = self.folder / "lock"
        meta_path = self.folder / "meta.json"
        meta = {"encoder": encoder_name, "dim": self.dim, "version": FORMAT_VERSION}
        if meta_path.is_file():
            found = json.loads(meta_path.read_text())
            if found.get("dim") != self.dim or found.get("version") != FORMAT_VERSION:
                raise AutotagError(
                    f"embedding cache {self.folder} holds dim {found.get('dim')} (format {found.get('version')}), "
                    f"not dim {self.dim}; delete that folder to rebuild it"
                )
        else:
            tmp = meta_path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(meta) + "\n")
            os.replace(tmp, meta_path)
        for path in (self._vectors_path, self._keys_path):
            path.touch(exist_ok=True)
        self._rows: dict[bytes, int] = {}
        self._keys_read = 0  # bytes of keys.bin already indexed
        self._mmap: np.memmap | None = None
        self._lock = threading.RLock()  # the pipeline reads from decode threads while its main thread writes
        self._refresh()

    # ---------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Index keys appended since the last look (by us or by another process)."""
        with self._lock:
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        size = self._keys_path.stat().st_size
        usable = size - size % KEY_BYTES
        if usable <= self._keys_read:
            return
        with self._keys_path.open("rb") as fh:
            fh.seek(self._keys_read)
            data = fh.read(usable - self._keys_read)
        start = self._keys_read // KEY_BYTES
        for i in range(len(data) // KEY_BYTES):
            self._rows.setdefault(data[i * KEY_BYTES : (i + 1) * KEY_BYTES], start + i)
        self._keys_read = usable
        self._mmap = None

    @property
    def _n_rows(self) -> int:
        return self._keys_read // KEY_BYTES

    def _matrix(self) -> np.ndarray:
        if self._mmap is None or len(self._mmap) != self._n_rows:
            if self._n_rows == 0:
                return np.zeros((0, self.dim), np.float32)
            self._mmap = np.memmap(self._vectors_path, dtype=np.float32, mode="r", shape=(self._n_rows, self.dim))
        return self._mmap

    def __len__(self) -> int:
        self._refresh()
        return len(self._rows)

    def __contains__(self, content_hash: str) -> bool:
        self._refresh()
        return _key(content_hash) in self._rows

    # ---------------------------------------------------------------------------------------
    def get(self, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(found (N,) bool, vectors (N, dim) float32); rows not found are zeros."""
        with self._lock:
            self._refresh_locked()
            rows = np.array([self._rows.get(_key(h), -1) for h in hashes], dtype=np.int64)
            matrix = self._matrix()
        found = rows >= 0
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        if found.any():
            out[found] = matrix[rows[found]]
        return found, out

    def put(self, hashes: Sequence[str], vectors: np.ndarray) -> int:
        """Store the vectors of hashes not stored yet; returns how many rows were added."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(hashes), self.dim):
            raise ValueError(f"expected vectors of shape ({len(hashes)}, {self.dim}), got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("refusing to cache non-finite embeddings")
        with self._lock, self._lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._refresh()
                new_keys: list[bytes] = []
                new_rows: list[int] = []
                seen: set[bytes] = set()
                for i, h in enumerate(hashes):
                    k = _key(h)
                    if k not in self._rows and k not in seen:
                        seen.add(k)
                        new_keys.append(k)
                        new_rows.append(i)
                if not new_keys:
                    return 0
                expected = self._n_rows * self.dim * 4
                with self._vectors_path.open("r+b") as fh:
                    fh.truncate(expected)  # drop bytes a crashed writer left without keys
                    fh.seek(expected)
                    fh.write(np.ascontiguousarray(vectors[new_rows]).tobytes())
                    fh.flush()
                    os.fsync(fh.fileno())
                with self._keys_path.open("r+b") as fh:
                    fh.truncate(self._keys_read)  # a torn key write is cut off the same way
                    fh.seek(self._keys_read)
                    fh.write(b"".join(new_keys))
                    fh.flush()
                    os.fsync(fh.fileno())
                self._refresh()
                return len(new_keys)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
