"""The Library object end to end with the fake encoder: a library built by `autotag index` is served by
`autotag serve` from another folder, and the same images imported from `autotag batch` shards get the
same tags. Real processes, as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import autotag
from autotag.library import Library
from autotag.testing.server import autotag_command


def _env() -> dict[str, str]:
    """This environment (AUTOTAG_MODEL set by the fixture), importing the package under test from any folder."""
    return {**os.environ, "PYTHONPATH": str(Path(autotag.__file__).resolve().parents[1])}


def _autotag(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(autotag_command(*args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def collection(photos, tmp_path) -> Path:
    folder = tmp_path / "work" / "pics"
    for i, (name, path) in enumerate(sorted(photos.items())):
        (folder / f"set{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / f"set{i % 2}" / f"{name}.jpg")
    return folder


def _serve(db: str, cwd: Path):
    from autotag.testing.server import free_port, start_server

    port = free_port()
    proc = start_server(["--db", db, "--log-level", "warning"], port=port, env=_env(), cwd=cwd)
    return proc, f"http://127.0.0.1:{port}"


def test_indexed_library_is_served_from_another_folder_with_tags_search_and_thumbnails(
    fake_model, collection, photos, tmp_path
):
    import httpx

    work = collection.parent
    report = json.loads(_autotag(["index", "pics", "--db", "lib/library.db", "-f", "json"], cwd=work).stdout)[0]
    assert report["added"] == len(photos) and not report["failed"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server, base = _serve(str(work / "lib" / "library.db"), cwd=elsewhere)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            items = client.get("/v1/images", params={"limit": 100}).json()["items"]
            assert len(items) == len(photos)
            for image in items:
                assert Path(image["source"]).is_absolute() and Path(image["source"]).is_file()
                assert image["tags"] and image["model"] == fake_model, image
                first = image["tags"][0]["name"]
                found = client.get("/v1/images", params={"tag": first, "limit": 100}).json()["items"]
                assert image["id"] in [f["id"] for f in found], (first, image["source"])
                thumb = client.get(image["thumbnail_url"])
                assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
                assert thumb.content[:2] == b"\xff\xd8"
            assert client.get("/healthz").json()["images"] == len(photos)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_batch_shards_give_the_library_the_same_tags_as_index(fake_model, collection, photos, tmp_path):
    work = collection.parent
    _autotag(["index", "pics", "--db", "direct.db"], cwd=work)
    _autotag(["batch", "pics", "--out", "shards", "--shard-size", "4"], cwd=work)
    _autotag(["index", "--from-parquet", "shards", "--db", "imported.db"], cwd=work)

    def tags_by_hash(db: Path) -> dict[str, list[tuple[str, float]]]:
        with Library.open(str(db)) as library:
            store = library.store
            out = {}
            for image in store.list_images(limit=100):
                assert Path(image.source).is_absolute() and Path(image.source).is_file()
                out[image.content_hash] = [(p.tag, round(p.score, 5)) for p in store.predictions(image.id)]
            return out

    direct, imported = tags_by_hash(work / "direct.db"), tags_by_hash(work / "imported.db")
    assert len(direct) == len(photos) and direct == imported
    assert all(direct.values())


def test_ingest_stores_tags_skips_known_content_and_searches_one_way(fake_model, collection, photos, tmp_path):
    from autotag.ingest import discover

    with Library.open(str(tmp_path / "lib.db")) as library:
        files = discover([str(collection)])
        first = library.ingest(files)
        assert first.added == len(files) and len(first.ids) == len(files)
        calls = library.tagger.encoder.calls
        again = library.ingest(files)
        assert again.added == 0 and again.skipped == len(files) and again.ids == first.ids
        assert library.tagger.encoder.calls == calls  # known content is neither decoded nor encoded again
        for image_id in first.ids:
            assert library.store.predictions(image_id, fake_model)
        chelsea = next(i for i, f in zip(first.ids, files, strict=True) if f.endswith("chelsea.jpg"))
        by_path = library.similar(str(collection / "set0" / "chelsea.jpg"), 3)  # the query itself is left out
        by_id = library.similar(chelsea, 3)
        assert chelsea not in [h.image.id for h in by_path] and [h.image.id for h in by_path] == [
            h.image.id for h in by_id
        ]
        with_itself = library.similar((collection / "set0" / "chelsea.jpg").read_bytes(), 1, include_query=True)
        assert with_itself[0].image.id == chelsea and with_itself[0].score > 0.999
        vector = library.index.vectors()[1][list(library.index.ids()).index(chelsea)]
        assert library.similar(np.asarray(vector), 1)[0].image.id == chelsea
        assert library.forget([chelsea]) == 1 and chelsea not in [h.image.id for h in library.similar(vector, 5)]
        assert library.reconcile() == (0, 1)  # still stored, so put back from its file
        assert library.similar(vector, 1)[0].image.id == chelsea


def test_uploads_become_blobs_and_deleting_removes_them(fake_model, photos, tmp_path):
    with Library.open(str(tmp_path / "lib.db")) as library:
        data = photos["rocket"].read_bytes()
        upload = library.add_upload(data, user_tags=["space"])
        blob = Path(upload.image.source)
        assert upload.created and blob.read_bytes() == data and blob.parent.parent == library.blob_dir()
        assert library.store.user_tags(upload.image.id) == ["space"] and upload.item.tags
        again = library.add_upload(data)
        assert not again.created and again.image.id == upload.image.id and again.item is None
        library.delete(upload.image.id)
        assert not blob.exists() and library.store.get_image(upload.image.id) is None
