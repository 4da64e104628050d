"""Shared fixtures: real bundled photos, the real default encoder, skips with visible reasons."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Exports and caches persist across test runs in the repo, never in the user's own cache.
os.environ.setdefault("AUTOTAG_CACHE_DIR", str(ROOT / ".cache" / "test"))
os.environ.setdefault("AUTOTAG_DATA_DIR", str(ROOT / ".cache" / "test-data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
PHOTO_NAMES = ("chelsea", "coffee", "rocket", "astronaut", "motorcycle_left", "hubble_deep_field", "immunohistochemistry")


def write_photos(folder: Path, names=PHOTO_NAMES) -> dict[str, Path]:
    """Write scikit-image's bundled photos as JPEGs; returns name -> path."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names:
        path = folder / f"{name}.jpg"
        if not path.exists():
            Image.fromarray(getattr(data, name)()).convert("RGB").save(path, quality=92)
        out[name] = path
    return out


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> dict[str, Path]:
    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def encoder():
    from autotag.encoders import create_encoder

    return create_encoder("efficientnet_lite0")


@pytest.fixture(scope="session")
def wordnet_ready():
    from autotag.taxonomy.wordnet import wordnet_available

    if not wordnet_available():
        pytest.skip("WordNet 3.0 missing: apt-get install wordnet-base wordnet-sense-index")


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST missing in {FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist")
    return FASHION_MNIST_DIR
