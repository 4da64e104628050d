"""A deterministic fake default model for the tests that are not about the model (API, store, index,
distributed, CLI plumbing): no ONNX export, no ONNX Runtime, a few microseconds per image. An encoder,
an object detector and a photo-or-art model, registered together.

It speaks the real encoder's interface and label set (1000 ImageNet logits), so the whole pipeline
runs unchanged: its embedding is a fixed random projection of the picture's 8x8 colour layout (the
same picture always gives the same vector, a re-encoded or slightly cropped copy a close one, and
different pictures distant ones), and its logits a fixed projection of that embedding, so every
picture gets stable, distinct tags. Nothing about the tags is meaningful.

    from autotag.testing.fake import FAKE_ENCODER, register_fake_encoder
    register_fake_encoder()            # then settings model = "fake-encoder" (AUTOTAG_MODEL)
                                       # and detector = "fake-detector" (AUTOTAG_DETECTOR)

The fake detector finds a person in the middle of a picture that is redder than blue (else a cat), and
a cup on its left when the picture is bright; the fake style model calls a picture without layout (a
flat colour) abstract art, anything else a photo. Plain rules, so tests can say what to expect.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autotag.encoders import Encoder, EncoderSpec
from autotag.encoders.registry import ENCODERS, register_encoder
from autotag.types import Detection

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
        # peaked enough that the consumer vocabulary's decisions are sure of a label on most pictures
        self._to_logits = (16.0 * rng.standard_normal((spec.embedding_dim, spec.num_logits))).astype(np.float32)
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


FAKE_DETECTOR = "fake-detector"
BRIGHT = 60.0  # mean 0-255 value of the letter-boxed input (padding included) above which the fake detector sees a cup
FLAT = 0.5  # fake embeddings shorter than this are pictures without layout (the bundled photos: 1.5-5.6)


class FakeDetector:
    """The detector's interface (preprocess in the decode threads, a batched run, decode per picture)."""

    input_size = 64

    def __init__(self) -> None:
        self.calls = 0  # batches run

    def preprocess(self, im: Image.Image, original_size: tuple[int, int] | None = None) -> tuple[np.ndarray, Any]:
        from autotag.encoders.detector import letterbox

        return letterbox(im, self.input_size, original_size)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        means = np.asarray(batch, np.float32).mean(axis=(1, 2))  # (N, 3) mean colour, padding included
        return means, means.mean(axis=1, keepdims=True)

    def decode(self, means: np.ndarray, brightness: np.ndarray, placement: Any) -> list[Detection]:
        w, h = placement.width, placement.height
        found = [Detection("person" if means[0] >= means[2] else "cat", 0.9, (w / 4, h / 4, 3 * w / 4, 3 * h / 4))]
        if float(brightness[0]) > BRIGHT:
            found.append(Detection("cup", 0.7, (0.0, h / 3, w / 4, 2 * h / 3)))
        return found


def fake_styles(embeddings: np.ndarray, images: list | None = None, patches: list | None = None) -> list:
    """Art ("abstract") when the picture has almost no layout (a flat colour, fine noise: the fake
    embedding is near zero), else photo."""
    from autotag.read.style import Style

    return [
        Style("art", "abstract", 0.9, 0.8) if np.linalg.norm(row) < FLAT else Style("photo", "photo", 0.9, 0.9)
        for row in np.asarray(embeddings, np.float32)
    ]


def register_fake_encoder() -> str:
    """Register the fake encoder under FAKE_ENCODER, the fake detector under FAKE_DETECTOR and the fake
    style model for the fake encoder's embeddings (once per process; again is a no-op)."""
    from autotag.encoders.detector import DETECTORS
    from autotag.pipeline.readers import register_style_model

    if FAKE_ENCODER not in ENCODERS:
        register_encoder(FAKE_SPEC, trainable=False)(_build)
    if FAKE_DETECTOR not in DETECTORS:
        DETECTORS.register(FAKE_DETECTOR, lambda **options: FakeDetector())
    register_style_model(FAKE_ENCODER, lambda: fake_styles)
    return FAKE_ENCODER
