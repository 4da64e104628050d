"""EmbeddingCache: round trips, reopening, torn writes, several processes, real encoder vectors."""

from __future__ import annotations

import hashlib
import multiprocessing as mp

import numpy as np
import pytest

from autotag.encoders.cache import EmbeddingCache
from autotag.types import AutotagError


def _hashes(n: int, salt: str = "") -> list[str]:
    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest() for i in range(n)]


def test_put_get_reopen_and_skip_duplicates(tmp_path):
    rng = np.random.default_rng(0)
    cache = EmbeddingCache(tmp_path, "efficientnet_lite0", 16)
    hashes = _hashes(10)
    vectors = rng.normal(size=(10, 16)).astype(np.float32)
    assert cache.put(hashes[:6], vectors[:6]) == 6
    assert cache.put(hashes, vectors) == 4  # the first six are stored already
    # a repeated hash inside one batch is stored once, with its first vector
    assert cache.put([hashes[0], "x" * 3, "x" * 3], np.stack([vectors[9], vectors[1], vectors[2]])) == 1
    found, got = cache.get([hashes[3], _hashes(1, "missing")[0], hashes[9], "x" * 3])
    assert found.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(got[0], vectors[3])
    np.testing.assert_array_equal(got[1], np.zeros(16))
    np.testing.assert_array_equal(got[2], vectors[9])
    np.testing.assert_array_equal(got[3], vectors[1])
    assert len(cache) == 11 and hashes[0] in cache

    again = EmbeddingCache(tmp_path, "efficientnet_lite0", 16)
    found, got = again.get(hashes)
    assert found.all()
    np.testing.assert_array_equal(got, vectors)  # hashes[0] kept its first vector, not vectors[9]
    # an open cache sees rows another handle appended
    again.put(_hashes(2, "new"), np.ones((2, 16), np.float32))
    assert cache.get(_hashes(2, "new"))[0].all()
    # another encoder is another key space
    other = EmbeddingCache(tmp_path, "efficientnet_lite2", 16)
    assert not other.get(hashes)[0].any()


def test_wrong_dim_and_bad_vectors(tmp_path):
    EmbeddingCache(tmp_path, "enc", 8)
    with pytest.raises(AutotagError, match="dim 8"):
        EmbeddingCache(tmp_path, "enc", 16)
    cache = EmbeddingCache(tmp_path, "enc", 8)
    with pytest.raises(ValueError, match="shape"):
        cache.put(_hashes(2), np.zeros((2, 9)))
    with pytest.raises(ValueError, match="non-finite"):
        cache.put(_hashes(1), np.full((1, 8), np.nan))
    found, got = cache.get([])
    assert found.shape == (0,) and got.shape == (0, 8)


def test_torn_write_is_cut_off(tmp_path):
    cache = EmbeddingCache(tmp_path, "enc", 4)
    cache.put(_hashes(3), np.arange(12, dtype=np.float32).reshape(3, 4))
    # a writer died: vectors without keys and half a key at the ends of the files
    with open(cache.folder / "vectors.f32", "ab") as fh:
        fh.write(np.full(6, 7.0, np.float32).tobytes())
    with open(cache.folder / "keys.bin", "ab") as fh:
        fh.write(b"\x01" * 10)
    reopened = EmbeddingCache(tmp_path, "enc", 4)
    assert len(reopened) == 3
    reopened.put(_hashes(2, "b"), np.full((2, 4), 5.0, np.float32))
    fresh = EmbeddingCache(tmp_path, "enc", 4)
    found, got = fresh.get(_hashes(3) + _hashes(2, "b"))
    assert found.all()
    np.testing.assert_array_equal(got[:3], np.arange(12, dtype=np.float32).reshape(3, 4))
    np.testing.assert_array_equal(got[3:], np.full((2, 4), 5.0))
    assert (fresh.folder / "vectors.f32").stat().st_size == 5 * 4 * 4


def _writer(root: str, salt: str, n: int) -> None:
    cache = EmbeddingCache(root, "enc", 8)
    for i in range(0, n, 5):  # overlapping keys ("shared") and own keys, in small batches
        hashes = _hashes(5, f"shared{i}") + _hashes(5, f"{salt}{i}")
        vectors = np.array([[float(int(h[:6], 16))] * 8 for h in hashes], np.float32)
        cache.put(hashes, vectors)


def test_concurrent_writers_in_processes(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), salt, 40)) for salt in ("a", "b", "c")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = EmbeddingCache(tmp_path, "enc", 8)
    expected = [h for i in range(0, 40, 5) for s in ("shared", "a", "b", "c") for h in _hashes(5, f"{s}{i}")]
    assert len(cache) == len(set(expected)) == 8 * 5 * 4  # shared keys stored once
    found, got = cache.get(expected)
    assert found.all()
    np.testing.assert_array_equal(got[:, 0], [float(int(h[:6], 16)) for h in expected])


def test_pipeline_embed_uses_the_cache(tmp_path, photos, fake_model):
    from autotag.pipeline import Tagger
    from autotag.testing.fake import FAKE_SPEC

    tagger = Tagger.load(cache_dir=tmp_path)
    sources = [str(photos["chelsea"]), str(photos["coffee"])]
    direct = tagger.embed(sources)
    cached_first = tagger.embed(sources, cache=True)
    store = tagger.output_cache().embeddings
    assert store.folder.parent == tmp_path / "embeddings" and store.dim == FAKE_SPEC.embedding_dim
    assert len(store) == 2
    cached_again = tagger.embed(sources, cache=True)
    np.testing.assert_allclose(cached_first, direct, atol=1e-5)
    np.testing.assert_array_equal(cached_again, cached_first)
