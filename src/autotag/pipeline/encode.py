"""The encode step: preprocessed arrays -> model outputs (the classifier's logits and embeddings, the
detector's peaks and box sizes), run directly in batches, or through a batcher that lets concurrent
callers (the HTTP server's requests) share batches; classifier outputs cached by (content hash, encoder,
the tagger's view: encoders/views.TAGGER_VIEWS)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autotag.encoders.views import TAGGER_VIEWS

if TYPE_CHECKING:
    from autotag.encoders import EncoderSpec
    from autotag.pipeline.item import Item


Outputs = tuple[np.ndarray, np.ndarray]  # two arrays with one row per input image


@dataclass
class _Job:
    arrays: np.ndarray
    done: threading.Event
    outputs: Outputs | None = None
    error: BaseException | None = None


class EncoderBatcher:
    """Runs one model (`run`: N inputs -> two arrays of N rows) on a worker thread; images that arrive
    while it is busy form its next batch.

    A lone request runs at once (no waiting for company); under load the batches grow up to
    `max_batch` images, which costs each image less model time than running it alone.
    """

    def __init__(self, run: Callable[[np.ndarray], Outputs], max_batch: int, name: str = "encoder") -> None:
        self._model_run = run
        self.max_batch = max(1, max_batch)
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.batches = 0
        self.images = 0
        threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True).start()

    def run(self, arrays: np.ndarray) -> Outputs:
        """N preprocessed images -> the model's two outputs, batched with other callers' images."""
        job = _Job(arrays, threading.Event())
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.outputs is not None
        return job.outputs

    def _loop(self) -> None:
        while True:
            jobs = [self._queue.get()]
            size = len(jobs[0].arrays)
            while size < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                jobs.append(job)
                size += len(job.arrays)
            try:
                first, second = self._model_run(np.concatenate([j.arrays for j in jobs]))
                start = 0
                for job in jobs:
                    end = start + len(job.arrays)
                    job.outputs = first[start:end], second[start:end]
                    start = end
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                for job in jobs:
                    job.error = exc
            self.batches += 1
            self.images += size
            for job in jobs:
                job.done.set()


class OutputCache:
    """Logits and embeddings of one encoder keyed by content hash, on disk (two EmbeddingCaches), so a
    second evaluation, training run or `embed` reads them back instead of running the encoder."""

    FLUSH_ROWS = 1024

    def __init__(self, root: Path, spec: EncoderSpec) -> None:
        from autotag.encoders.cache import EmbeddingCache

        # keyed by the encoder and the view it was given: a changed view (a cut-out seen whole) is a new cache
        name = f"{spec.name}.{TAGGER_VIEWS}"
        self.embeddings = EmbeddingCache(root, name, spec.embedding_dim)
        self.logits = EmbeddingCache(root, f"{name}-logits", spec.num_logits)
        self._pending: list[tuple[str, np.ndarray, np.ndarray]] = []  # (hash, embedding, logits)
        self._lock = threading.Lock()

    @staticmethod
    def usable(spec: EncoderSpec) -> bool:
        """Only registered encoders are cached: a fine-tuned one ("name@folder") may change in place."""
        return "@" not in spec.name

    def fill(self, item: Item) -> bool:
        """Put the cached outputs of `item.content_hash` on the item; False when they are not cached."""
        found_e, emb = self.embeddings.get([item.content_hash])
        found_l, logits = self.logits.get([item.content_hash])
        if not (found_e[0] and found_l[0]):
            return False
        item.embedding, item.logits, item.from_cache = emb[0], logits[0], True
        return True

    def put(self, items: Sequence[Item]) -> None:
        """Queue the outputs of freshly encoded items; written every FLUSH_ROWS rows and by `flush`
        (each write syncs to disk, too slow to pay per batch)."""
        with self._lock:
            self._pending.extend((i.content_hash, i.embedding, i.logits) for i in items)
            full = len(self._pending) >= self.FLUSH_ROWS
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            items, self._pending = self._pending, []
        if items:
            hashes = [h for h, _, _ in items]
            self.embeddings.put(hashes, np.stack([e for _, e, _ in items]))
            self.logits.put(hashes, np.stack([lg for _, _, lg in items]))
