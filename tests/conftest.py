"""Shared fixtures: real bundled photos, the real default encoder, the fake encoder for plumbing tests,
skips with visible reasons."""

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
from autotag.demo import PHOTO_NAMES, write_photos  # noqa: E402,F401  (after the environment is set)


@pytest.fixture(scope="session", autouse=True)
def object_detector_in_the_test_cache() -> None:
    """The default tagger runs the COCO detector: convert it into the tests' own model cache once, as
    `make setup` does for the user's cache. Without npm, the tests that need it fail with the tagger's
    one-line "run make setup" error, and test_detector skips with its reason."""
    import shutil

    from autotag.encoders.detector_setup import detector_onnx_path, install_detector

    if not detector_onnx_path().is_file() and shutil.which("npm"):
        install_detector()


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


# --- PostgreSQL (area C, reused by the API tests) ---------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server started from Debian's binaries for this test session.

    Yields the URL of its `postgres` database (user `autotag`, trust auth on loopback); tests create
    their own databases in it (see autotag.testing.postgres). Skipped with a reason only when the
    server binaries are absent.
    """
    from autotag.testing.postgres import TempPostgres, postgres_bindir

    if postgres_bindir() is None:
        pytest.skip("PostgreSQL server missing (/usr/lib/postgresql/*/bin): apt-get install postgresql")
    with TempPostgres() as server:
        yield server.url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """Each test that takes it runs twice: on a new SQLite file and on a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "lib" / "library.db")
    from autotag.testing.postgres import create_database

    return create_database(request.getfixturevalue("postgres_url"))


# --- the deterministic fake encoder (plumbing tests: API, store, index, distributed, CLI) -----------
@pytest.fixture
def fake_model(monkeypatch) -> str:
    """Register the fake encoder (with its fake detector and style model) and make it the configured
    model (AUTOTAG_MODEL, AUTOTAG_DETECTOR) for this test: every Tagger, Library, API and batch job
    loaded without an explicit model uses it."""
    from autotag.testing.fake import FAKE_DETECTOR, register_fake_encoder

    name = register_fake_encoder()
    monkeypatch.setenv("AUTOTAG_MODEL", name)
    monkeypatch.setenv("AUTOTAG_DETECTOR", FAKE_DETECTOR)
    return name
