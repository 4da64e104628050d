"""Fashion-MNIST from its idx files (Debian's dataset-fashion-mnist package by default, or any folder)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from autotag.data.base import Dataset, register_reader, require_file
from autotag.types import AutotagError, ImageRecord

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
# Tag-style names for the ten classes, in the dataset's class-index order.
CLASSES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]
_FILES = {"train": "train", "test": "t10k"}


def _open_idx(path: Path) -> bytes:
    candidates = [path, path.with_suffix("")] if path.suffix == ".gz" else [path]
    for candidate in candidates:
        if candidate.is_file():
            opener = gzip.open if candidate.suffix == ".gz" else open
            with opener(candidate, "rb") as fh:
                return fh.read()
    raise AutotagError(f"Fashion-MNIST file not found: {path}; install dataset-fashion-mnist or pass fashion-mnist:DIR")


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise AutotagError(f"{path} is not an idx file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise AutotagError(f"{path} is truncated: header says {shape}, found {body.size} bytes")
    return body.reshape(shape)


def read_fashion_mnist(directory: str | Path | None = None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of the `train` (60k) or `test` (10k) split."""
    if split not in _FILES:
        raise AutotagError(f"Fashion-MNIST has splits train and test, not {split!r}")
    folder = Path(directory) if directory else DEFAULT_DIR
    prefix = _FILES[split]
    img_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    lab_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    images = _parse_idx(_open_idx(img_path), img_path)
    labels = _parse_idx(_open_idx(lab_path), lab_path).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise AutotagError(f"Fashion-MNIST files in {folder} disagree: {images.shape} images, {labels.shape} labels")
    return images, labels


def _png_dir(folder: Path) -> Path:
    from autotag.config import load_settings

    tag = str(folder.resolve()).strip("/").replace("/", "_")
    return load_settings().cache_dir / "datasets" / "fashion-mnist" / tag


def _write_pngs(images: np.ndarray, out: Path, names: list[str]) -> None:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for img, name in zip(images, names, strict=True):
        path = out / name
        if not path.exists():
            tmp = path.with_suffix(f".tmp{os.getpid()}.png")
            Image.fromarray(img, mode="L").save(tmp, optimize=False)
            os.replace(tmp, path)


@register_reader("fashion-mnist", "fashion-mnist[:DIR] (idx .gz files; default /usr/share/datasets/fashion-mnist)")
def fashion_mnist_dataset(argument: str = "", limit: int | None = None, **_: object) -> Dataset:
    """Fashion-MNIST as a single-label dataset; each image is written once as a PNG into the cache dir.

    `limit` keeps the first `limit` images of each split (tests and quick checks).
    """
    folder = Path(argument).expanduser() if argument else DEFAULT_DIR
    require_file(
        folder / "train-images-idx3-ubyte.gz",
        "Fashion-MNIST",
        "install the dataset-fashion-mnist package or pass fashion-mnist:DIR holding the idx .gz files",
    )
    png_root = _png_dir(folder)
    records: list[ImageRecord] = []
    for split in ("train", "test"):
        images, labels = read_fashion_mnist(folder, split)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        names = [f"{split}_{i:05d}.png" for i in range(len(images))]
        _write_pngs(images, png_root / split, names)
        records.extend(
            ImageRecord(str(png_root / split / n), [CLASSES[int(y)]], [], split)
            for n, y in zip(names, labels, strict=True)
        )
    return Dataset(records, list(CLASSES), "fashion-mnist", single_label=True, info={"source": str(folder)})
