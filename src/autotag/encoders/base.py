"""What every encoder is: a spec (input size, preprocessing, label set) and a batch function."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from autotag.config import load_settings


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    input_size: int  # square centre crop fed to the network
    embedding_dim: int
    num_logits: int
    label_set: str  # what the logits' columns mean, e.g. "imagenet-1k" (names come from autotag.taxonomy)
    mean: float = 127.0  # preprocessing: (pixel - mean) / std, as the weights were trained
    std: float = 128.0
    resize_to: int | None = (
        None  # shorter side before the crop; None means input_size (crop the centre square)
    )
    # What `autotag models` shows to help choose (measured: BENCHMARKS.md, backbone trade-off and INT8).
    params_m: float | None = None  # millions of parameters
    relative_speed: float | None = None  # images/s relative to efficientnet_lite0 on the same CPU
    size_mb: float | None = None  # the ONNX file the model runs from


def preprocess(im: Image.Image, spec: EncoderSpec, size: int | None = None) -> np.ndarray:
    """Resize the shorter side, centre-crop a square, scale pixels: (3, S, S) float32."""
    size = size or spec.input_size
    short = spec.resize_to if (spec.resize_to and size == spec.input_size) else size
    w, h = im.size
    scale = short / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    # Resample only the centre square's source region (the same pixels as resizing all, then cropping).
    box = (left / new_w * w, top / new_h * h, (left + size) / new_w * w, (top + size) / new_h * h)
    if (new_w, new_h) != (w, h):
        im = im.resize((size, size), Image.BILINEAR, box=box, reducing_gap=3.0)
    else:
        im = im.crop((left, top, left + size, top + size))
    arr = np.asarray(im, dtype=np.float32)
    arr = (arr - spec.mean) / spec.std
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


class Encoder:
    """An ONNX Runtime session with two outputs: logits (N, num_logits) and embeddings (N, D)."""

    def __init__(self, spec: EncoderSpec, onnx_path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.spec = spec
        self.onnx_path = onnx_path
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is None:  # the `threads` setting (AUTOTAG_THREADS, the config file); 0 = ORT's choice
            threads = load_settings().threads
        if threads:
            options.intra_op_num_threads = threads
        # Decoding threads share the cores with inference; ORT's spin-waiting threads would steal their
        # time between batches (bench_tagging: ~105 -> ~112 img/s end to end with spinning off).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._lock = threading.Lock()  # one run at a time: ORT already uses every core for one batch

    def preprocess(self, im: Image.Image) -> np.ndarray:
        return preprocess(im, self.spec)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, S, S) preprocessed float32 -> (logits, embeddings)."""
        if len(batch) == 0:
            return (
                np.zeros((0, self.spec.num_logits), np.float32),
                np.zeros((0, self.spec.embedding_dim), np.float32),
            )
        with self._lock:
            logits, embeddings = self._session.run(None, {self._input: batch})
        return logits, embeddings

    def encode(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        return self.run(np.stack([self.preprocess(im) for im in images]) if images else np.zeros((0,)))
