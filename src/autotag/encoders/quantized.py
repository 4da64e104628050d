"""INT8 post-training static quantisation of the ONNX encoders.

The float ONNX export is quantised once, on first use, with ONNX Runtime's static quantiser and
calibrated on a few hundred varied real images (scikit-image's and scikit-learn's bundled photos
under random crops, flips, scales and colour changes; Fashion-MNIST and digits as a minority).
The result is cached next to the float file and loaded like any other encoder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from autotag.encoders.base import Encoder, EncoderSpec, preprocess
from autotag.encoders.efficientnet_lite import ensure_onnx, onnx_path, spec_for
from autotag.encoders.registry import register_encoder
from autotag.types import AutotagError

QUANT_VERSION = 1  # bump when the recipe or the calibration set changes, so stale files are rebuilt
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# Photos the calibration set is cut from. The benchmark holds out *other* photos (see HELD_OUT_PHOTOS).
CALIBRATION_PHOTOS = (
    "astronaut", "rocket", "motorcycle_left", "hubble_deep_field", "immunohistochemistry", "retina",
    "china", "camera", "coins", "brick", "grass", "gravel", "moon", "page", "horse", "cell", "text",
)
HELD_OUT_PHOTOS = ("chelsea", "coffee", "flower", "grace_hopper", "motorcycle_right", "clock")


@dataclass(frozen=True)
class QuantRecipe:
    """How the float graph is quantised; every field was compared in bench/bench_int8.py."""

    quant_format: str = "qoperator"  # "qoperator" (fused QLinearConv: fastest here) or "qdq"
    calibration: str = "minmax"  # "minmax", "percentile" or "entropy"
    activation_type: str = "uint8"  # "uint8" or "int8"
    weight_type: str = "int8"  # "int8" or "uint8" (u8u8 avoids AVX2's int16 saturation without losing a bit)
    reduce_range: bool = True  # 7-bit weights: avoids int16 overflow in AVX2's u8*s8 kernels
    symmetric_activations: bool = False
    keep_float: str = "none"  # "none", "stem", "head", "stem+head": those convs/gemm stay float
    num_images: int = 320

    def tag(self) -> str:
        return "-".join(str(v) for v in asdict(self).values())


DEFAULT_RECIPE = QuantRecipe()


# ---------------------------------------------------------------- calibration images


def augment(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random crop / scale / flip / colour variant, the kind of change real uploads show."""
    w, h = im.size
    area = rng.uniform(0.15, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw = int(min(w, max(16, round(np.sqrt(area * w * h * aspect)))))
    ch = int(min(h, max(16, round(np.sqrt(area * w * h / aspect)))))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    im = im.crop((left, top, left + cw, top + ch))
    scale = rng.uniform(0.5, 1.5)
    im = im.resize((max(8, round(cw * scale)), max(8, round(ch * scale))), Image.BILINEAR)
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    if rng.random() < 0.1:
        im = ImageOps.flip(im)
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.6, 1.4))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.6, 1.4))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.0, 1.6))
    if rng.random() < 0.15:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    if rng.random() < 0.1:
        im = ImageOps.grayscale(im).convert("RGB")
    return im


def read_idx_images(path: Path, count: int) -> np.ndarray:
    """The first `count` images of an IDX file (Fashion-MNIST's format): (count, 28, 28) uint8."""
    import gzip

    with gzip.open(path, "rb") as f:
        f.read(16)
        return np.frombuffer(f.read(28 * 28 * count), np.uint8).reshape(count, 28, 28)


def _small_gray(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr).convert("RGB").resize((224, 224), Image.BILINEAR)


def calibration_images(num_images: int = 320, seed: int = 0) -> list[Image.Image]:
    """Varied real images for calibration: ~85% photo variants, the rest Fashion-MNIST and digits."""
    try:  # the photos come with scikit-image and scikit-learn, which the `export` extra installs
        import skimage  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise AutotagError(f"building the INT8 encoder calibrates on photos bundled with scikit-image and "
                           f"scikit-learn ({exc.name} is missing): pip install 'autotag[export]'") from exc
    from autotag.demo import bundled_photo

    rng = np.random.default_rng(seed)
    photos = [bundled_photo(name) for name in CALIBRATION_PHOTOS]
    n_small = num_images * 15 // 100
    images = [photo for photo in photos]  # each photo whole, once
    while len(images) < num_images - n_small:
        images.append(augment(photos[int(rng.integers(len(photos)))], rng))
    fashion_file = FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz"
    n_fashion = n_small * 2 // 3 if fashion_file.is_file() else 0
    if n_fashion:
        fashion = read_idx_images(fashion_file, 2000)
        images += [_small_gray(fashion[i]) for i in rng.choice(len(fashion), n_fashion, replace=False)]
    from sklearn.datasets import load_digits

    digits = load_digits().images  # (N, 8, 8) in 0..16
    for i in rng.choice(len(digits), num_images - len(images), replace=False):
        images.append(_small_gray((digits[i] * 15.9).astype(np.uint8)))
    return images


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: feeds preprocessed batches, then None."""

    def __init__(self, input_name: str, batches: list[np.ndarray]) -> None:
        self._input = input_name
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input: batch}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (item := self.get_next()) is not None:
            yield item


# ---------------------------------------------------------------- quantisation


def _float_nodes_to_keep(model_path: Path, keep_float: str) -> list[str]:
    import onnx

    graph = onnx.load(str(model_path)).graph
    compute = [n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul", "FusedConv")]
    names: list[str] = []
    if "stem" in keep_float:
        names.append(compute[0].name)
    if "head" in keep_float:
        names += [n.name for n in compute[-2:]]  # the 1x1 head conv and the classifier
    return names


def quantize_onnx(float_path: Path, target: Path, spec: EncoderSpec, recipe: QuantRecipe = DEFAULT_RECIPE) -> None:
    """Write an INT8 copy of `float_path` at `target` (atomically), calibrated per `recipe`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=False)
        images = calibration_images(recipe.num_images)
        arrays = np.stack([preprocess(im, spec) for im in images])
        batches = [arrays[i : i + 16] for i in range(0, len(arrays), 16)]
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared),
            str(out),
            _Reader("image", batches),
            quant_format=QuantFormat.QDQ if recipe.quant_format == "qdq" else QuantFormat.QOperator,
            per_channel=True,
            reduce_range=recipe.reduce_range,
            activation_type=QuantType.QUInt8 if recipe.activation_type == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QUInt8 if recipe.weight_type == "uint8" else QuantType.QInt8,
            nodes_to_exclude=_float_nodes_to_keep(prepared, recipe.keep_float),
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "percentile": CalibrationMethod.Percentile,
                "entropy": CalibrationMethod.Entropy,
            }[recipe.calibration],
            extra_options={"ActivationSymmetric": recipe.symmetric_activations, "CalibPercentile": 99.999},
        )
        os.replace(out, target)  # atomic: concurrent processes never see half a file


def int8_onnx_path(name: str, recipe: QuantRecipe = DEFAULT_RECIPE) -> Path:
    float_path = onnx_path(name)
    import hashlib

    digest = hashlib.sha256(recipe.tag().encode()).hexdigest()[:10]  # a new recipe never reuses an old file
    return float_path.with_name(f"{float_path.stem}-int8-q{QUANT_VERSION}-{digest}.onnx")


def ensure_int8_onnx(name: str, recipe: QuantRecipe = DEFAULT_RECIPE) -> Path:
    """The cached INT8 ONNX file for the float encoder `name`, quantised on first use."""
    target = int8_onnx_path(name, recipe)
    if not target.is_file():
        quantize_onnx(ensure_onnx(name), target, spec_for(name), recipe)
    return target


def int8_spec(name: str) -> EncoderSpec:
    from dataclasses import replace

    # INT8 speed and file size: BENCHMARKS.md (INT8 encoder), 1.84x the float model, a 4.9 MB file
    return replace(spec_for(name), name=f"{name}-int8", relative_speed=1.84, size_mb=4.9)


def create_int8_encoder(name: str, recipe: QuantRecipe = DEFAULT_RECIPE, threads: int | None = None) -> Encoder:
    return Encoder(int8_spec(name), ensure_int8_onnx(name, recipe), threads=threads)


# Not trainable: fine-tuning, resizing or re-pooling needs the float PyTorch weights. Heads over its
# embeddings can still be trained (training checks that with `trainable`).
@register_encoder(int8_spec("efficientnet_lite0"), trainable=False)
def efficientnet_lite0_int8(threads: int | None = None) -> Encoder:
    """EfficientNet-Lite0 with INT8 weights and activations: faster on CPU, see BENCHMARKS.md."""
    return create_int8_encoder("efficientnet_lite0", threads=threads)
