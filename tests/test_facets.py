"""Facets (objects, colours, style, properties) kept apart from tags and carried to every output: the
pipeline's records, JSONL and CSV, the database and its search, the Library, the API, Parquet shards.

Plumbing only, with the fake default model (autotag.testing.fake): its detector finds a person in the
middle of a picture redder than blue (else a cat) and a cup on the left of a bright one; its style model
calls a flat picture abstract art and anything else a photo. The real models are tested in
test_default_tagger.py.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from autotag.cli import app
from autotag.pipeline import Tagger
from autotag.types import AutotagError


@pytest.fixture
def pictures(tmp_path) -> dict[str, object]:
    """A red-ish bright photo (person + cup), a blue dark one (cat), and a wide flat red picture (art)."""
    folder = tmp_path / "pics"
    folder.mkdir()
    red = np.zeros((300, 400, 3), np.uint8)
    red[:, :200], red[:, 200:] = (230, 140, 110), (170, 60, 40)
    blue = np.zeros((300, 200, 3), np.uint8)
    blue[:150], blue[150:] = (20, 40, 120), (10, 20, 70)
    out = {}
    for name, pixels in {"red": red, "blue": blue}.items():
        out[name] = folder / f"{name}.png"
        Image.fromarray(pixels).save(out[name])
    out["wide"] = folder / "wide.png"
    Image.new("RGB", (1600, 600), (220, 20, 30)).save(out["wide"])
    return out


@pytest.fixture
def tagger(fake_model, tmp_path) -> Tagger:
    return Tagger.load(cache_dir=tmp_path / "cache", batch_size=2, workers=2)


def test_every_facet_is_filled_and_kept_apart_from_tags(tagger, pictures):
    items = {item.source: item for item in tagger.stream([str(p) for p in pictures.values()])}
    red, blue, wide = (items[str(pictures[n])] for n in ("red", "blue", "wide"))
    assert tagger.detector is not None and tagger.detector.calls >= 1
    # objects: named by the vocabulary, boxes in the picture's own pixels, counted
    assert [(o.label, o.name) for o in red.objects] == [("person", "person"), ("cup", "cup")]
    assert red.objects[0].box == (100.0, 75.0, 300.0, 225.0)
    assert [o.label for o in blue.objects] == ["cat"]  # bluer than red, and dark: no cup
    record = red.to_dict()
    assert record["object_counts"] == {"person": 1, "cup": 1}
    assert record["objects"][1] == {"name": "cup", "label": "cup", "score": 0.7, "box": [0.0, 100.0, 100.0, 200.0]}
    # detected objects reach the tags through the vocabulary (with their category)
    assert {"person", "people", "cup"} <= {t.name for t in red.tags}
    # colours and properties from the decoded picture
    assert wide.colors[0].name == "red" and wide.colors[0].share > 0.95 and wide.colors[0].hex.startswith("#")
    assert (wide.properties.width, wide.properties.height, wide.properties.shape) == (1600, 600, "ultrawide")
    assert blue.properties.orientation == "portrait" and blue.properties.tone == "dark"
    # style: art gets its style as its tag instead of photo content (abstract keeps none); photos no style tag
    assert red.style.kind == blue.style.kind == "photo" and wide.style.style == "abstract"
    assert [(t.name, t.kind) for t in wide.tags] == [("abstract", "style")] and wide.objects
    assert all(t.kind != "style" for t in red.tags + blue.tags)
    # nothing heavy is left on the yielded items
    assert all(i.image is None and i.detector_input is None and i.array is None for i in items.values())


def test_no_objects_runs_no_detector_and_encoder_outputs_need_no_signals(fake_model, pictures, tmp_path):
    tagger = Tagger.load(cache_dir=tmp_path / "cache", objects=False)
    assert tagger.detector is None
    item = next(tagger.stream([pictures["red"]]))
    assert item.objects is None and "objects" not in item.to_dict() and item.colors  # colours still there
    assert not any(t.kind == "object" for t in item.tags)
    with_objects = Tagger.load(cache_dir=tmp_path / "cache")
    bare = next(with_objects.stream([pictures["red"]], decide=False))  # embeddings only: no detector, no readers
    assert with_objects.detector.calls == 0 and bare.colors is None and bare.detections is None


def test_jsonl_and_csv_keep_each_facet_in_its_own_field(fake_model, pictures, tmp_path):
    runner = CliRunner()
    env = {"AUTOTAG_CACHE_DIR": str(tmp_path / "cache")}
    res = runner.invoke(app, ["tag", str(pictures["red"]), str(pictures["wide"]), "-f", "jsonl"], env=env)
    assert res.exit_code == 0, res.output
    red, wide = (json.loads(line) for line in res.stdout.splitlines())
    assert set(red) == {"path", "content_hash", "tags", "objects", "object_counts", "colors", "style", "properties",
                        "error"}  # fmt: skip
    assert red["object_counts"] == {"person": 1, "cup": 1} and red["objects"][0]["box"] == [100.0, 75.0, 300.0, 225.0]
    assert wide["colors"][0]["name"] == "red" and wide["properties"]["aspect_ratio"] == "8:3"
    assert red["style"]["kind"] == "photo" and wide["tags"][0]["name"] == "abstract"
    res = runner.invoke(app, ["tag", str(pictures["red"]), str(pictures["wide"]), "-f", "csv"], env=env)
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert rows[0]["objects"] == "person:1;cup:1" and rows[1]["colors"].split(";")[0] == "red"
    assert rows[1]["shape"] == "ultrawide" and rows[1]["color_hex"].startswith("#")
    assert (rows[0]["style"], rows[1]["style"]) == ("photo", "abstract")
    res = runner.invoke(app, ["tag", str(pictures["red"]), "-f", "jsonl", "--no-objects"], env=env)
    assert "objects" not in json.loads(res.stdout)


def test_the_library_stores_facets_and_searches_by_colour_style_and_object(fake_model, pictures, tmp_path):
    from autotag.library import Library

    db = str(tmp_path / "lib.db")
    with Library.open(db, settings=None) as library:
        report = library.ingest([str(p) for p in pictures.values()])
        assert report.added == 3
        ids = dict(zip(pictures, report.ids, strict=True))
        facets = library.facets(ids["red"])
        assert facets["object_counts"] == {"person": 1, "cup": 1} and facets["objects"][0]["box"] == [100, 75, 300, 225]
        assert facets["properties"]["orientation"] == "landscape" and facets["style"]["kind"] == "photo"

        def found(**filters) -> set[str]:
            images, total = library.find(**filters)
            assert total == len(images)
            return {name for name, i in ids.items() if i in {im.id for im in images}}

        assert found(color="red") == {"red", "wide"} and found(color="blue") == {"blue"}
        assert found(object="person") == {"red", "wide"} and found(object="cat") == {"blue"}
        assert found(object="cup") == {"red"} and found(object="table") == set()
        assert found(style="photo") == {"red", "blue"} and found(style="art") == found(style="abstract") == {"wide"}
        assert found(style="pattern") == set()
        assert found(color="red", object="cat") == set()  # every filter must match
        red_tag = library.describe(library.require(ids["red"]))["tags"][0]["name"]
        assert "red" in found(tag=red_tag, color="red")
        for wrong, message in [({"color": "mauve"}, "unknown colour 'mauve'; valid: red"),
                               ({"style": "sketch"}, "unknown style 'sketch'"),
                               ({"object": "unicorn"}, "unknown object 'unicorn'")]:  # fmt: skip
            with pytest.raises(AutotagError, match=message):
                library.find(**wrong)
        library.delete(ids["red"])  # the facets go with the image
        assert found(object="person") == {"wide"} and library.store.integrity_problems() == []
    res = CliRunner().invoke(app, ["images", "--db", db, "--color", "red", "-f", "jsonl"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["id"] for r in rows] == [ids["wide"]] and rows[0]["colors"][0]["name"] == "red"
    bad = CliRunner().invoke(app, ["images", "--db", db, "--style", "sketch"])
    assert bad.exit_code == 2 and "unknown style 'sketch'" in bad.output


def test_the_api_answers_facets_and_filters_images(fake_model, pictures, tmp_path, monkeypatch):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from autotag.api.app import create_app
    from autotag.config import load_settings

    monkeypatch.delenv("AUTOTAG_API_KEYS", raising=False)
    settings = load_settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", api_keys="")
    with TestClient(create_app(settings, db=str(tmp_path / "lib.db"))) as client:
        body = client.post("/v1/tag", files={"file": ("red.png", pictures["red"].read_bytes(), "image/png")}).json()
        assert body["object_counts"] == {"person": 1, "cup": 1} and body["objects"][0]["label"] == "person"
        assert body["colors"] and body["properties"]["width"] == 400 and body["style"]["kind"] == "photo"
        ids = {}
        for name, path in pictures.items():
            stored = client.post("/v1/images", files={"file": (path.name, path.read_bytes(), "image/png")}).json()
            ids[name] = stored["id"]
            assert stored["colors"] and stored["properties"]
        one = client.get(f"/v1/images/{ids['blue']}").json()
        assert one["object_counts"] == {"cat": 1} and one["colors"][0]["name"] == "blue"
        page = client.get("/v1/images", params={"color": "blue", "style": "photo"}).json()
        assert [im["id"] for im in page["items"]] == [ids["blue"]] and page["total"] == 1 and page["color"] == "blue"
        page = client.get("/v1/images", params={"object": "person"}).json()
        assert {im["id"] for im in page["items"]} == {ids["red"], ids["wide"]}
        wrong = client.get("/v1/images", params={"color": "mauve"})
        assert wrong.status_code == 400 and "unknown colour" in wrong.json()["detail"]


def test_batch_shards_carry_the_facets_into_the_library(fake_model, pictures, tmp_path):
    import pyarrow.parquet as pq

    from autotag.distributed import BatchJob, run_batch
    from autotag.distributed.index import index_from_parquet
    from autotag.library import Library

    out = tmp_path / "shards"
    run_batch([str(pictures["red"].parent)], str(out), engine="local", job=BatchJob(shard_size=2))
    rows = {r["path"]: r for r in pq.read_table(out / "part-00000.parquet").to_pylist()}
    rows |= {r["path"]: r for r in pq.read_table(out / "part-00001.parquet").to_pylist()}
    red = rows[str(pictures["red"])]
    assert [o["name"] for o in red["objects"]] == ["person", "cup"] and red["colors"] and red["style"]["kind"]
    assert rows[str(pictures["wide"])]["properties"]["shape"] == "ultrawide"
    with Library.open(str(tmp_path / "from-shards.db")) as library:
        report = index_from_parquet(library, str(out))
        ids = dict(zip(sorted(rows), report.ids, strict=True))
        from_shards = {path: library.facets(i) for path, i in ids.items()}
    with Library.open(str(tmp_path / "indexed.db")) as library:  # the same pictures through `index`
        report = library.ingest(sorted(rows))
        direct = {path: library.facets(i) for path, i in zip(sorted(rows), report.ids, strict=True)}
    assert from_shards[str(pictures["red"])]["object_counts"] == {"person": 1, "cup": 1}
    for path in rows:
        a, b = from_shards[path], direct[path]
        assert a["object_counts"] == b["object_counts"] and a["style"]["style"] == b["style"]["style"]
        assert [(c["name"], c["hex"]) for c in a["colors"]] == [(c["name"], c["hex"]) for c in b["colors"]]
        np.testing.assert_allclose([c["share"] for c in a["colors"]], [c["share"] for c in b["colors"]], atol=1e-6)
        assert a["properties"]["shape"] == b["properties"]["shape"]
