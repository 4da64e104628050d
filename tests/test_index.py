"""Vector index, near-duplicates, learned retrieval head, maps and the index/similar/duplicates CLI."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from autotag.index import VectorIndex, find_duplicates, phash
from autotag.index import vector as vector_module
from autotag.index.duplicates import Fingerprint, fingerprint, hamming, hash_pairs
from autotag.types import AutotagError


def _clustered(n: int, dim: int, seed: int = 0, clusters: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return (centres[rng.integers(0, clusters, n)] + 0.7 * rng.standard_normal((n, dim))).astype(np.float32)


def _brute_force(queries: np.ndarray, base: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    b = base / np.linalg.norm(base, axis=1, keepdims=True)
    sims = q @ b.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), ids[order]


def test_exact_search_equals_numpy_brute_force():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((700, 48)).astype(np.float32)
    ids = rng.choice(10**9, size=700, replace=False).astype(np.int64)  # arbitrary int64 ids, not positions
    queries = rng.standard_normal((25, 48)).astype(np.float32)
    index = VectorIndex(48, "exact")
    index.add(ids[:300], base[:300])
    index.add(ids[300:], base[300:])  # incremental add
    scores, found = index.search(queries, 10)
    ref_scores, ref_ids = _brute_force(queries, base, ids, 10)
    np.testing.assert_array_equal(found, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert len(index) == 700 and index.kind == "exact"


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_removed_ids_never_returned_and_save_load_round_trip(kind, tmp_path):
    base = _clustered(3000, 32, seed=2)
    ids = np.arange(3000, dtype=np.int64) * 7 + 11
    index = VectorIndex(32, kind)
    index.add(ids, base)
    removed = ids[::3]
    assert index.remove(removed) == len(removed)
    assert index.remove(removed[:5]) == 0  # removing twice is a no-op
    assert len(index) == 3000 - len(removed)
    # querying with the removed vectors themselves: their own ids would be the best match
    scores, found = index.search(base[::3][:200], 10)
    assert not np.isin(found, removed).any()
    assert (found >= 0).all()
    kept = np.setdiff1d(ids, removed)
    _, ref = _brute_force(base[::3][:200], base[np.isin(ids, kept)], ids[np.isin(ids, kept)], 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, ref, strict=True)])
    assert recall >= (1.0 if kind == "exact" else 0.9)

    index.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert loaded.kind == kind and len(loaded) == len(index)
    scores2, found2 = loaded.search(base[::3][:200], 10)
    np.testing.assert_array_equal(found2, found)
    np.testing.assert_allclose(scores2, scores, atol=1e-6)
    # a removed id can come back with a new vector, and is then found
    loaded.add(removed[:1], base[1:2])
    assert sorted(loaded.search(base[1:2], 2)[1][0].tolist()) == sorted([int(ids[1]), int(removed[0])])


def test_auto_kind_moves_to_hnsw_when_the_collection_grows(monkeypatch):
    monkeypatch.setattr(vector_module, "AUTO_EXACT_MAX", 500)
    base = _clustered(1200, 16, seed=3)
    index = VectorIndex(16)
    index.add(np.arange(400), base[:400])
    assert index.kind == "exact"
    index.add(np.arange(400, 1200), base[400:])
    assert index.kind == "hnsw" and len(index) == 1200
    _, found = index.search(base[:50], 1)
    assert (found[:, 0] == np.arange(50)).mean() >= 0.98  # each vector finds itself after the move


def test_index_rejects_bad_input():
    with pytest.raises(AutotagError, match="valid: auto, exact, hnsw, ivfpq"):
        VectorIndex(8, "annoy")
    index = VectorIndex(8, "exact")
    with pytest.raises(AutotagError, match="8-dimensional"):
        index.add([1], np.ones((1, 9), np.float32))
    with pytest.raises(AutotagError, match="twice"):
        index.add([1, 1], np.ones((2, 8), np.float32))
    assert index.search(np.ones(8, np.float32), 5)[1].shape == (1, 0)  # empty index: no results, no crash


def test_phash_is_stable_under_reencoding_and_separates_photos(photos):
    cat = Image.open(photos["chelsea"]).convert("RGB")
    buf = io.BytesIO()
    cat.resize((cat.width // 2, cat.height // 2)).save(buf, "JPEG", quality=20)
    copy = Image.open(io.BytesIO(buf.getvalue()))
    others = [Image.open(photos[n]) for n in ("coffee", "rocket", "astronaut")]
    h_cat, h_copy = phash(cat), phash(copy)
    assert int(hamming(h_cat, h_copy)) <= 4
    assert all(int(hamming(h_cat, phash(o))) > 16 for o in others)
    # the pigeonhole search finds exactly the brute-force pairs
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 5000, dtype=np.int64).astype(np.uint64)
    hashes[4000:4010] = hashes[:10] ^ np.uint64(0b1011)  # ten planted near-copies, 3 bits apart
    pairs = {(a, b) for a, b, _ in hash_pairs(hashes, 4)}
    assert {(i, 4000 + i) for i in range(10)} <= pairs


def test_transformed_copy_of_a_real_photo_is_found_as_duplicate(photos, encoder):
    names = ["chelsea", "coffee", "rocket", "astronaut", "hubble_deep_field"]
    images = [Image.open(photos[n]).convert("RGB") for n in names]
    cat = images[0]
    w, h = cat.size
    edited = cat.crop((w // 12, h // 12, w - w // 12, h - h // 12)).rotate(3, resample=Image.BILINEAR)
    buf = io.BytesIO()
    edited.save(buf, "JPEG", quality=30)
    images.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    _, vectors = encoder.encode(images)
    prints = [fingerprint(im) for im in images]
    ids = np.arange(10, 10 + len(images))
    groups = find_duplicates(ids, vectors, prints)
    assert [g.ids for g in groups] == [[10, 15]]  # the cat and its edited copy, nothing else
    assert groups[0].pairs[0].similarity >= 0.8
    # similar-search from the copy finds the original first
    index = VectorIndex(vectors.shape[1], "exact")
    index.add(ids[:5], vectors[:5])
    assert index.search(vectors[5], 1)[1][0, 0] == 10


def _smooth_wallpapers() -> list[Image.Image]:
    """Flat colours and soft gradients: the pictures whose pHash bits are decided by noise."""
    ramp = np.linspace(0, 1, 480)[None, :, None]
    out = [Image.new("RGB", (640, 480), c) for c in ((30, 30, 40), (120, 120, 120), (40, 160, 90), (90, 40, 130))]
    for a, b in (((20, 30, 90), (40, 60, 160)), ((80, 20, 20), (200, 90, 40)), ((10, 80, 80), (20, 160, 140))):
        grad = np.array(a)[None, None] + (np.array(b) - np.array(a))[None, None] * ramp
        out.append(Image.fromarray(np.repeat(grad, 640, axis=0).transpose(1, 0, 2).astype(np.uint8)))
    return out


def test_flat_and_smooth_pictures_are_not_duplicates_of_each_other(photos, encoder):
    smooth = _smooth_wallpapers()
    prints = [fingerprint(im) for im in smooth]
    assert all(p.detail < 0.5 and not p.trusted for p in prints)  # their hashes are noise ...
    assert int(hamming(prints[0].phash, prints[1].phash)) <= 8  # ... and flat pictures collide
    cat = Image.open(photos["chelsea"]).convert("RGB")
    assert fingerprint(cat).trusted
    ids = np.arange(len(smooth))
    assert find_duplicates(ids, None, prints) == []  # an untrusted hash alone joins nothing
    _, vectors = encoder.encode(smooth)
    assert find_duplicates(ids, vectors, prints) == []


def test_groups_do_not_chain_through_look_alikes():
    # a~b and b~c are strong pairs (cosine 0.85), a and c are not alike (0.44): no group holds both
    angles = np.radians([0.0, 32.0, 64.0])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    groups = find_duplicates([1, 2, 3], vectors)
    assert len(groups) == 1 and len(groups[0].ids) == 2
    # when a and c count as alike too (a threshold below their cosine), the three are one group
    assert [g.ids for g in find_duplicates([1, 2, 3], vectors, threshold=0.43)] == [[1, 2, 3]]


def test_exact_copies_are_listed_first(photos, encoder):
    names = ["chelsea", "coffee", "rocket"]
    images = [Image.open(photos[n]).convert("RGB") for n in names]
    cat_small = images[0].resize((images[0].width // 2, images[0].height // 2))
    images += [cat_small, images[2]]  # a near copy of the cat, a byte copy of the rocket
    digests = ["c", "k", "r", "c-small", "r"]
    _, vectors = encoder.encode(images)
    groups = find_duplicates([1, 2, 3, 4, 5], vectors, [fingerprint(im) for im in images], digests=digests)
    assert [g.ids for g in groups] == [[3, 5], [1, 4]]
    assert groups[0].exact and groups[0].pairs[0].exact and not groups[1].exact
    assert groups[0].to_dict()["pairs"][0]["exact"] is True


def test_brightness_edits_are_copies_but_a_dark_edition_is_another_picture(photos, encoder):
    from PIL import ImageEnhance

    cat = Image.open(photos["chelsea"]).convert("RGB")
    images = [cat, ImageEnhance.Brightness(cat).enhance(0.8), ImageEnhance.Brightness(cat).enhance(0.3)]
    prints = [fingerprint(im) for im in images]
    _, vectors = encoder.encode(images)
    groups = find_duplicates([1, 2, 3], vectors, prints)
    assert [g.ids for g in groups] == [[1, 2]]
    assert Fingerprint.from_dict(prints[0].to_dict()).phash == prints[0].phash


def _fashion_embeddings(fashion_mnist_dir, encoder, split: str, per_class: int, seed: int):
    from autotag.data.fashion_mnist import read_fashion_mnist

    images, labels = read_fashion_mnist(fashion_mnist_dir, split)
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)])
    batch = np.stack([encoder.preprocess(Image.fromarray(images[i]).convert("RGB")) for i in idx])
    return encoder.run(batch)[1], labels[idx]


def test_learned_head_improves_precision_at_10(fashion_mnist_dir, encoder, tmp_path):
    from autotag.index.learned import RetrievalHead, precision_at_k, train_retrieval_head

    xg, yg = _fashion_embeddings(fashion_mnist_dir, encoder, "train", 20, seed=0)
    xq, yq = _fashion_embeddings(fashion_mnist_dir, encoder, "test", 10, seed=1)
    p_raw, _ = precision_at_k(xq, yq, xg, yg, 10)
    head = train_retrieval_head(xg, yg, loss="supcon", epochs=40, batch_size=100, seed=0, encoder=encoder.spec.name)
    p_head, _ = precision_at_k(head(xq), yq, head(xg), yg, 10)
    assert head.history[-1] < head.history[0]
    assert p_head > p_raw + 0.02, (p_raw, p_head)
    head.save(tmp_path / "head")
    again = RetrievalHead.load(tmp_path / "head")
    np.testing.assert_allclose(again(xq[:5]), head(xq[:5]), atol=1e-6)
    with pytest.raises(AutotagError, match="unknown retrieval loss 'arcface'; valid: contrastive, supcon, triplet"):
        train_retrieval_head(xg, yg, loss="arcface")


def test_map_html_and_png(tmp_path):
    from autotag.index.projection import project_2d, render_html, render_png, thumbnail_data_uri

    vectors = _clustered(60, 24, seed=4, clusters=3)
    coords = project_2d(vectors, seed=0)
    assert coords.shape == (60, 2) and np.isfinite(coords).all()
    labels = [f"class{i % 3}" for i in range(60)]
    thumb = thumbnail_data_uri(Image.new("RGB", (300, 200), (200, 30, 30)))
    page = render_html(coords, labels, [f"img{i}.jpg" for i in range(60)], [thumb] * 59 + [None], tmp_path / "m.html")
    text = page.read_text()
    points = json.loads(text.split("const POINTS = ", 1)[1].split(";\n", 1)[0])
    assert len(points) == 60 and points[0]["thumb"].startswith("data:image/jpeg;base64,")
    assert "http" not in text.replace("http://www.w3.org/2000/svg", "")  # self-contained
    png = render_png(coords, labels, tmp_path / "m.png")
    assert Image.open(png).size[0] > 400


def test_map_png_is_readable_thumbnails_and_a_legend_of_the_top_tags(tmp_path):
    from autotag.index.projection import OTHER, legend_entries, project_2d, render_png, thumbnail_sample

    vectors = _clustered(300, 24, seed=5, clusters=20)
    coords = project_2d(vectors, seed=0)
    labels = [f"tag{i % 20:02d}" for i in range(300)]
    labels[:40] = ["dog"] * 40  # the most frequent tag
    entries = legend_entries(labels)
    assert entries[0][:2] == ("dog", 40) and len(entries) == 13 and entries[-1][0] == OTHER
    assert sum(count for _, count, _ in entries) == 300
    sample = thumbnail_sample(coords)
    assert 10 <= len(sample) <= 49  # spread over a 7 x 7 grid, at most one per cell
    magenta = Image.new("RGB", (120, 90), (255, 0, 255))
    png = render_png(coords, labels, tmp_path / "map.png", thumbnails={i: magenta for i in sample})
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    assert Image.open(png).size[0] >= 1200
    on_map = np.all(pixels == (255, 0, 255), axis=1).sum()
    assert on_map >= 0.8 * len(sample) * 96 * 72  # every thumbnail drawn, at its full 96 px


def test_cli_index_similar_duplicates(photos, tmp_path, fake_model):
    from typer.testing import CliRunner

    from autotag.cli import app

    folder = tmp_path / "pics"
    folder.mkdir()
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        (folder / f"{name}.jpg").write_bytes(photos[name].read_bytes())
    cat = Image.open(photos["chelsea"])
    cat.resize((cat.width // 2, cat.height // 2)).save(folder / "cat_small.jpg", quality=25)
    (folder / "broken.jpg").write_bytes(b"not an image")
    db = str(tmp_path / "lib.db")
    runner = CliRunner()
    first = runner.invoke(app, ["index", str(folder), "--db", db, "--format", "json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)[0]
    assert report["added"] == 5 and len(report["failed"]) == 1
    again = json.loads(runner.invoke(app, ["index", str(folder), "--db", db, "--format", "json"]).stdout)[0]
    assert again["added"] == 0 and again["skipped"] == 5

    query = tmp_path / "query.jpg"  # not in the library
    cat.crop((20, 20, cat.width - 20, cat.height - 20)).save(query, quality=60)
    result = runner.invoke(app, ["similar", str(query), "-k", "3", "--db", db, "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3
    assert {rows[0]["path"], rows[1]["path"]} == {str(folder / "chelsea.jpg"), str(folder / "cat_small.jpg")}
    assert rows[0]["similarity"] >= rows[1]["similarity"] >= rows[2]["similarity"]

    dups = runner.invoke(app, ["duplicates", "--db", db, "--format", "json"])
    groups = json.loads(dups.stdout)
    assert [sorted(im["path"] for im in g["images"]) for g in groups] == [
        [str(folder / "cat_small.jpg"), str(folder / "chelsea.jpg")]
    ]
    bad = runner.invoke(app, ["similar", str(folder / "broken.jpg"), "--db", db])
    assert bad.exit_code == 2


def test_library_keeps_fingerprints_and_says_when_there_are_no_duplicates(photos, tmp_path):
    from typer.testing import CliRunner

    from autotag.cli import app

    folder = tmp_path / "walls"
    folder.mkdir()
    # two flat wallpapers of different colours (alike to the embedding) and two different photos
    Image.new("RGB", (640, 400), (90, 40, 130)).save(folder / "purple.png")
    Image.new("RGB", (640, 400), (40, 160, 90)).save(folder / "green.png")
    for name in ("coffee", "rocket"):
        (folder / f"{name}.jpg").write_bytes(photos[name].read_bytes())
    db = str(tmp_path / "lib.db")
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(folder), "--db", db]).exit_code == 0
    stored = json.loads((tmp_path / "lib.index" / "phash.json").read_text())
    assert all({"phash", "detail", "brightness", "colour"} <= set(v) for v in stored.values())
    res = runner.invoke(app, ["duplicates", "--db", db, "--format", "table"])
    assert res.exit_code == 0 and res.output.strip() == "no duplicates among 4 images", res.output
    assert json.loads(runner.invoke(app, ["duplicates", "--db", db, "--format", "json"]).stdout) == []


def test_byte_copies_are_named_when_skipped_and_listed_first_as_duplicates(photos, tmp_path):
    from typer.testing import CliRunner

    from autotag.cli import app

    folder = tmp_path / "pics"
    folder.mkdir()
    for name in ("sunset.jpg", "sunset_copy.jpg"):
        (folder / name).write_bytes(photos["chelsea"].read_bytes())
    (folder / "coffee.jpg").write_bytes(photos["coffee"].read_bytes())
    cat = Image.open(photos["chelsea"])
    cat.resize((cat.width // 2, cat.height // 2)).save(folder / "sunset_small.jpg", quality=60)
    db = str(tmp_path / "lib.db")
    runner = CliRunner()
    first = runner.invoke(app, ["index", str(folder), "--db", db, "--format", "json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)[0]
    assert report["added"] == 3 and report["skipped"] == 1
    assert [f["path"] for f in report["skipped_files"]] == [str(folder / "sunset_copy.jpg")]
    assert "sunset_copy.jpg: already in the library as image" in first.stderr
    elsewhere = tmp_path / "backup"
    elsewhere.mkdir()
    (elsewhere / "IMG_0001.jpg").write_bytes(photos["chelsea"].read_bytes())
    assert runner.invoke(app, ["index", str(elsewhere), "--db", db]).exit_code == 0
    groups = json.loads(runner.invoke(app, ["duplicates", "--db", db, "--format", "json"]).stdout)
    assert groups[0]["exact"] is True and len({im["id"] for im in groups[0]["images"]}) == 1
    assert sorted(im["path"] for im in groups[0]["images"]) == sorted(
        [str(folder / "sunset.jpg"), str(folder / "sunset_copy.jpg"), str(elsewhere / "IMG_0001.jpg")])
    assert groups[1]["exact"] is False and len(groups[1]["images"]) == 2  # then the resized near copy
