"""A deterministic fake encoder for the tests that are not about the model (API, store, index,
distributed, CLI plumbing): no ONNX export, no ONNX Runtime, a few microseconds per image.

It speaks the real encoder's interface and label set (1000 ImageNet logits), so the whole pipeline
runs unchanged: its embedding is a fixed random projection of the picture's 8x8 colour layout (the
same picture always gives the same vector, a re-encoded or slightly cropped copy a close one, and
different pictures distant ones), and its logits a fixed projection of that embedding, so every
picture gets stable, distinct tags. Nothing about the tags is meaningful.

    from autotag.testing.fake import FAKE_ENCODER, register_fake_encoder
    register_fake_encoder()            # then settings model = "fake-encoder" (AUTOTAG_MODEL)
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from autotag.encoders import Encoder, EncoderSpec
from autotag.encoders.registry import ENCODERS, register_encoder

FAKE_ENCODER = "fake-encoder"
FAKE_SPEC = EncoderSpec(name=FAKE_ENCODER, input_size=64, embedding_dim=96, num_logits=1000, label_set="imagenet-1k")
_GRID = 8


class FakeEncoder(Encoder):
    def __init__(self, spec: EncoderSpec = FAKE_SPEC, threads: int | None = None) -> None:
        self.spec = spec
        self.onnx_path = Path("<fake>")
        self._lock = threading.Lock()
        rng = np.random.default_rng(12345)
        features = 3 * _GRID * _GRID
        self._to_embedding = (rng.standard_normal((features, spec.embedding_dim)) / np.sqrt(features)).astype(
            np.float32
        )
        self._to_logits = (3.0 * rng.standard_normal((spec.embedding_dim, spec.num_logits))).astype(np.float32)
        self.calls = 0  # batches run, for tests that count encoder work

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, s = len(batch), self.spec.input_size
        if n == 0:
            return np.zeros((0, self.spec.num_logits), np.float32), np.zeros((0, self.spec.embedding_dim), np.float32)
        with self._lock:
            self.calls += 1
        cells = np.asarray(batch, np.float32).reshape(n, 3, _GRID, s // _GRID, _GRID, s // _GRID).mean(axis=(3, 5))
        # the layout relative to the picture's own mean colour: brightness alone does not make two pictures alike
        layout = (cells - cells.mean(axis=(2, 3), keepdims=True)).reshape(n, -1)
        # one image at a time: a matrix product over the whole batch may sum in another order for another
        # batch size, and an image's outputs must not depend on the company it was batched with
        embeddings = np.stack([row @ self._to_embedding for row in layout])
        unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-6)
        logits = np.stack([row @ self._to_logits for row in unit])
        return logits.astype(np.float32), embeddings.astype(np.float32)


def _build(threads: int | None = None) -> Encoder:
    return FakeEncoder(threads=threads)


def register_fake_encoder() -> str:
    """Register the fake encoder under FAKE_ENCODER (once per process; again is a no-op)."""
    if FAKE_ENCODER not in ENCODERS:
        register_encoder(FAKE_SPEC, trainable=False)(_build)
    return FAKE_ENCODER
