"""The HTTP API through FastAPI's TestClient, on SQLite and on real PostgreSQL: the real model where the
answer is about the picture (tags, hashtags, hostile files, EXIF rotation), the fake encoder for plumbing.

The hostile-input corpus is generated here: each file gets a clear 4xx JSON error or a correct
result, the server keeps answering, and what was stored before is still there afterwards.
"""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autotag.config import load_settings

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from autotag.api.app import create_app  # noqa: E402

MAX_UPLOAD = 3_000_000
MAX_PIXELS = 40_000_000


@pytest.fixture
def sqlite_db(tmp_path) -> str:
    return str(tmp_path / "lib" / "library.db")


def _settings(tmp_path: Path, **overrides):
    values = {"data_dir": tmp_path / "data", "max_upload_bytes": MAX_UPLOAD, "max_pixels": MAX_PIXELS, "api_keys": ""}
    return load_settings(**{**values, **overrides})


@pytest.fixture
def make_client(tmp_path, monkeypatch):
    monkeypatch.delenv("AUTOTAG_API_KEYS", raising=False)
    clients = []

    def make(db: str, **kwargs) -> TestClient:
        settings_overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in ("api_keys",)}
        app = create_app(_settings(tmp_path, **settings_overrides), db=db, **kwargs)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _upload(path_or_bytes, name: str = "photo.jpg", content_type: str = "image/jpeg") -> dict:
    data = Path(path_or_bytes).read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    return {"file": (name, data, content_type)}


def _is_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] and body["detail"], body
    return body


def _leaf_names(tags: list[dict]) -> list[str]:
    """What is in the picture: labels and objects (top_k counts them), not the broader categories."""
    return [t["name"] for t in tags if t["kind"] in ("label", "object")]


# ---------------------------------------------------------------------------------------- tagging


def test_tag_returns_labels_categories_and_facets_and_stores_nothing(make_client, sqlite_db, photos):
    client = make_client(sqlite_db)
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model_loaded"] is False  # lazy: nothing loaded yet
    response = client.post("/v1/tag", files=_upload(photos["chelsea"]), data={"user_tags": "cat, #sofa"})
    assert response.status_code == 200, response.text
    body = response.json()
    kinds = {t["kind"] for t in body["tags"]}
    assert "label" in kinds and "category" in kinds and kinds <= {"label", "object", "category"}, body["tags"]
    assert "cat" in _leaf_names(body["tags"]) and "dog" not in _leaf_names(body["tags"])
    assert any(t["name"] == "animal" and t["kind"] == "category" for t in body["tags"])
    # the facets, each in its own field
    assert body["style"]["kind"] == "photo" and body["colors"] and body["properties"]["orientation"] == "landscape"
    assert all(0 <= v <= max(451, 300) for o in body["objects"] for v in o["box"])
    assert "dog" not in body["object_counts"]
    scores = [t["score"] for t in body["tags"]]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert (body["width"], body["height"]) == (451, 300)
    assert isinstance(body["hashtags"], list) and isinstance(body["flagged_user_tags"], list)
    assert client.get("/healthz").json() | {"images": 0} == client.get("/healthz").json()
    assert client.get("/healthz").json()["model_loaded"] is True


def test_hashtags_and_flagged_user_tags(make_client, sqlite_db, photos):
    pytest.importorskip("autotag.suggest.hashtags", reason="hashtag suggester (area D) not installed")
    pytest.importorskip("autotag.suggest.audit", reason="tag audit (area D) not installed")
    client = make_client(sqlite_db)
    body = client.post("/v1/tag", files=_upload(photos["chelsea"]), data={"user_tags": "cat, car, sunset"}).json()
    assert all(h["kind"] == "hashtag" and 0 < h["score"] <= 1 for h in body["hashtags"])  # may abstain
    assert body["out_of_domain"] is False  # a photo of a cat is what the hashtags know
    flagged = {f["tag"] for f in body["flagged_user_tags"]}
    assert "car" in flagged and "cat" not in flagged
    assert all(f["reason"] for f in body["flagged_user_tags"])
    # the consumer auditor, as `autotag audit`: no concept for "sunset", so it cannot judge it (not flagged)
    assert body["cannot_judge_user_tags"] == ["sunset"] and "sunset" not in flagged
    # storing it, and storing it again, answers the same suggestions /v1/tag gives for the picture
    tagged = client.post("/v1/tag", files=_upload(photos["chelsea"])).json()
    first = client.post("/v1/images", files=_upload(photos["chelsea"])).json()
    again = client.post("/v1/images", files=_upload(photos["chelsea"], name="copy.jpg")).json()
    assert first["created"] is True and again["created"] is False
    assert tagged["hashtags"] and again["hashtags"] == first["hashtags"] == tagged["hashtags"]


def test_search_and_captions_follow_accepted_tags(make_client, sqlite_db, photos):
    """Search by tag finds what the picture is tagged with after the server's audit and people's feedback:
    a typed tag the server flagged does not match, a rejected model tag no longer does, an added one does."""
    client = make_client(sqlite_db)
    cat = client.post("/v1/images", files=_upload(photos["chelsea"]), data={"user_tags": "car, kitty"}).json()
    assert "car" in {f["tag"] for f in cat["flagged_user_tags"]}
    assert "car" not in cat["accepted_tags"] and "kitty" in cat["accepted_tags"]

    def found(tag: str) -> list[int]:
        return [im["id"] for im in client.get("/v1/images", params={"tag": tag}).json()["items"]]

    assert found("car") == []  # the uploader typed it, the server flagged it: not a search hit
    assert found("kitty") == [cat["id"]]  # typed and not flagged
    leaf = next(t["name"] for t in cat["tags"] if t["kind"] == "label")
    assert cat["accepted_tags"][0] == leaf and found(leaf) == [cat["id"]]
    feedback = client.post(f"/v1/images/{cat['id']}/feedback", json={"reject": [leaf], "add": ["dandelion"]})
    assert feedback.status_code == 200, feedback.text
    assert found(leaf) == [] and found("dandelion") == [cat["id"]]
    page = client.get("/v1/images").json()["items"]
    assert page[0]["accepted_tags"][0] == "dandelion" and leaf not in page[0]["accepted_tags"]  # the caption
    assert client.get(f"/v1/images/{cat['id']}").json()["accepted_tags"][0] == "dandelion"


def test_tag_options_change_the_answer(make_client, sqlite_db, photos, fake_model):
    client = make_client(sqlite_db)
    one = client.post("/v1/tag", files=_upload(photos["coffee"]), data={"top_k": "1", "threshold": "0.0"}).json()
    assert len(_leaf_names(one["tags"])) == 1
    strict = client.post("/v1/tag", files=_upload(photos["coffee"]), data={"threshold": "0.99"}).json()
    assert all(t["score"] >= 0.99 for t in strict["tags"])
    _is_error(client.post("/v1/tag", files=_upload(photos["coffee"]), data={"top_k": "0"}), 422)
    unknown = _is_error(client.post("/v1/tag", files=_upload(photos["coffee"]), data={"model": "resnet9000"}), 400)
    assert "efficientnet_lite0" in unknown["detail"]  # the error lists the valid names


def test_tagging_needs_no_database(make_client, photos, tmp_path, fake_model):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    client = make_client(str(blocker / "library.db"))  # this library can never be opened
    assert client.post("/v1/tag", files=_upload(photos["coffee"])).status_code == 200
    health = client.get("/healthz").json()
    assert health["status"] == "degraded" and health["images"] is None and health["model_loaded"] is True


def test_tag_keywords_answers_the_file_with_its_tags_inside(make_client, sqlite_db, photos, tmp_path, fake_model):
    from urllib.parse import unquote

    from PIL import Image

    from autotag.keywords import read_keywords

    client = make_client(sqlite_db)
    response = client.post("/v1/tag/keywords", files=_upload(photos["rocket"]), data={"top_k": "2"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    tagged = tmp_path / "tagged.jpg"
    tagged.write_bytes(response.content)
    names = unquote(response.headers["x-autotag-tags"]).split(",")
    assert read_keywords(tagged) == names and len(names) >= 2
    expected = client.post("/v1/tag", files=_upload(photos["rocket"]), data={"top_k": "2"}).json()["tags"]
    assert names == [t["name"] for t in expected]
    with Image.open(tagged) as after, Image.open(photos["rocket"]) as before:
        assert after.tobytes() == before.tobytes()
    gif = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(gif, "GIF")
    body = _is_error(client.post("/v1/tag/keywords", files=_upload(gif.getvalue(), "red.gif", "image/gif")), 400)
    assert "JPEG and PNG" in body["detail"]
    assert client.get("/v1/images").json()["items"] == []  # nothing stored


def test_model_loads_once_under_concurrent_requests(make_client, sqlite_db, photos, fake_model):
    from concurrent.futures import ThreadPoolExecutor

    client = make_client(sqlite_db)
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: client.post("/v1/tag", files=_upload(photos["rocket"])), range(6)))
    assert [r.status_code for r in responses] == [200] * 6
    first = responses[0].json()["tags"]
    assert all(r.json()["tags"] == first for r in responses)
    assert client.app.state.service.library.loaded_models() == [load_settings().model]


# ---------------------------------------------------------------------------------------- the library


def test_library_flow(make_client, db_url, photos, fake_model):
    """Ingest, dedupe, get, page by tag, similar, feedback, delete: on SQLite and on PostgreSQL."""
    from autotag.store import open_store

    client = make_client(db_url)
    first = client.post("/v1/images", files=_upload(photos["chelsea"]), data={"user_tags": "kitty, sofa"})
    assert first.status_code == 201, first.text
    cat = first.json()
    assert cat["created"] is True and cat["user_tags"] == ["kitty", "sofa"] and cat["tags"]
    again = client.post("/v1/images", files=_upload(photos["chelsea"], name="other-name.jpg"))
    assert again.status_code == 200 and again.json()["id"] == cat["id"] and again.json()["created"] is False
    id_of = {"chelsea": cat["id"]}
    for name in ("coffee", "rocket", "astronaut"):
        response = client.post("/v1/images", files=_upload(photos[name]))
        assert response.status_code == 201
        id_of[name] = response.json()["id"]
    ids = set(id_of.values())
    assert len(ids) == 4
    assert client.get("/healthz").json()["images"] == 4

    got = client.get(f"/v1/images/{cat['id']}").json()
    assert got["content_hash"] == cat["content_hash"] and got["tags"] == cat["tags"]
    assert client.get(f"/v1/images/{cat['id']}/thumbnail", params={"size": 64}).headers["content-type"] == "image/jpeg"

    page1 = client.get("/v1/images", params={"limit": 3}).json()
    page2 = client.get("/v1/images", params={"limit": 3, "offset": 3}).json()
    assert len(page1["items"]) == 3 and page1["next_offset"] == 3
    assert len(page2["items"]) == 1 and page2["next_offset"] is None
    assert {i["id"] for i in page1["items"] + page2["items"]} == ids
    others = {t["name"] for i in page1["items"] + page2["items"] if i["id"] != cat["id"] for t in i["tags"]}
    own_tag = next(t["name"] for t in cat["tags"] if t["name"] not in others)
    by_tag = client.get("/v1/images", params={"tag": own_tag}).json()["items"]
    assert [i["id"] for i in by_tag] == [cat["id"]]
    # a typed tag is found unless the audit flagged it (with the fake encoder's scores it may)
    kitty_flagged = "kitty" in {f["tag"] for f in cat["flagged_user_tags"]}
    by_kitty = [i["id"] for i in client.get("/v1/images", params={"tag": "kitty"}).json()["items"]]
    assert by_kitty == ([] if kitty_flagged else [cat["id"]])

    by_upload = client.post("/v1/similar", files=_upload(photos["coffee"]), data={"k": "2"}).json()["results"]
    assert by_upload[0]["id"] == id_of["coffee"] and by_upload[0]["score"] > 0.99 and len(by_upload) == 2
    by_id = client.post("/v1/similar", data={"id": str(cat["id"]), "k": "3"}).json()
    assert cat["id"] not in [h["id"] for h in by_id["results"]] and len(by_id["results"]) == 3
    _is_error(client.post("/v1/similar", data={"k": "3"}), 422)
    _is_error(client.post("/v1/similar", data={"id": "999999"}), 404)

    leaf = _leaf_names(cat["tags"])[0]
    feedback = client.post(
        f"/v1/images/{cat['id']}/feedback",
        json={"accept": [leaf], "reject": ["sofa"], "add": ["whiskers"], "who": "tester"},
    )
    assert feedback.status_code == 200 and feedback.json()["stored"] == 3
    _is_error(client.post(f"/v1/images/{cat['id']}/feedback", json={}), 422)
    _is_error(client.post("/v1/images/999999/feedback", json={"accept": ["x"]}), 404)
    with open_store(db_url, data_dir=client.app.state.service.settings.data_dir) as lib:
        stored = {(f.tag, f.action, f.who) for f in lib.feedback(cat["id"])}
        assert stored == {(leaf, "accepted", "tester"), ("sofa", "rejected", "tester"), ("whiskers", "added", "tester")}
        assert next(f for f in lib.feedback(cat["id"]) if f.tag == leaf).score is not None
    assert [i["id"] for i in client.get("/v1/images", params={"tag": "whiskers"}).json()["items"]] == [cat["id"]]

    coffee_id = id_of["coffee"]
    assert client.delete(f"/v1/images/{coffee_id}").status_code == 204
    _is_error(client.get(f"/v1/images/{coffee_id}"), 404)
    _is_error(client.delete(f"/v1/images/{coffee_id}"), 404)
    after = client.post("/v1/similar", files=_upload(photos["coffee"]), data={"k": "10"}).json()["results"]
    assert coffee_id not in [h["id"] for h in after] and len(after) == 3


def test_index_is_rebuilt_from_the_database_after_a_restart(make_client, sqlite_db, photos, tmp_path, fake_model):
    client = make_client(sqlite_db)
    ids = [client.post("/v1/images", files=_upload(photos[n])).json()["id"] for n in ("chelsea", "coffee")]
    client.__exit__(None, None, None)
    # Lose the saved index entirely: the next server must rebuild it from the stored images.
    import shutil

    for folder in Path(sqlite_db).parent.glob("*.index"):
        shutil.rmtree(folder)
    fresh = make_client(sqlite_db)
    hits = fresh.post("/v1/similar", data={"id": str(ids[0]), "k": "5"}).json()["results"]
    assert [h["id"] for h in hits] == [ids[1]]


def test_api_keys_guard_writes_and_optionally_reads(make_client, sqlite_db, photos, fake_model):
    client = make_client(sqlite_db, api_keys="alpha, beta")
    body = _is_error(client.post("/v1/images", files=_upload(photos["rocket"])), 401)
    assert "X-API-Key" in body["detail"]
    _is_error(client.post("/v1/images", files=_upload(photos["rocket"]), headers={"X-API-Key": "nope"}), 401)
    ok = client.post("/v1/images", files=_upload(photos["rocket"]), headers={"X-API-Key": "beta"})
    assert ok.status_code == 201
    image_id = ok.json()["id"]
    _is_error(client.post(f"/v1/images/{image_id}/feedback", json={"accept": ["rocket"]}), 401)
    _is_error(client.delete(f"/v1/images/{image_id}"), 401)
    assert client.get(f"/v1/images/{image_id}").status_code == 200  # reads stay open
    assert client.post("/v1/tag", files=_upload(photos["rocket"])).status_code == 200

    locked = make_client(sqlite_db, api_keys="alpha", protect_reads=True)
    _is_error(locked.get(f"/v1/images/{image_id}"), 401)
    assert locked.get(f"/v1/images/{image_id}", headers={"X-API-Key": "alpha"}).status_code == 200
    assert locked.get("/healthz").status_code == 200


def test_docs_openapi_and_web_page(make_client, sqlite_db, fake_model):
    client = make_client(sqlite_db)
    schema = client.get("/openapi.json").json()
    for path in (
        "/v1/tag",
        "/v1/images",
        "/v1/images/{image_id}",
        "/v1/similar",
        "/v1/images/{image_id}/feedback",
        "/healthz",
    ):
        assert path in schema["paths"], path
    assert "swagger" in client.get("/docs").text.lower()
    page = client.get("/")
    assert page.status_code == 200 and "drop-zone" in page.text
    assert client.get("/web/app.js").status_code == 200
    _is_error(client.get("/v1/nothing-here"), 404)


# ---------------------------------------------------------------------------------------- hostile input


def _jpeg(im: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, **kwargs)
    return buf.getvalue()


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid 1-bit PNG of width x height black pixels in ~100 kB: its header claims 900 MP."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(6)
    rows_per_piece = 1000
    piece = row * rows_per_piece
    body = b"".join(compressor.compress(piece) for _ in range(height // rows_per_piece))
    body += compressor.compress(row * (height % rows_per_piece)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def hostile_corpus(tmp_path_factory) -> dict[str, tuple[bytes, str, str, object]]:
    """name -> (bytes, filename, content type, expected: an int status or a check on the tags)."""
    from skimage import data

    cat = Image.fromarray(data.chelsea())
    photo = _jpeg(cat)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the pixels are stored lying on their side
    rotated = _jpeg(cat.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())
    big_exif = Image.Exif()
    big_exif[0x010E] = "x" * 60_000  # ImageDescription filling most of the 64 kB APP1 segment
    grey16 = Image.fromarray((np.asarray(cat.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    frames = [cat.quantize(64), Image.fromarray(data.coffee()).resize(cat.size).quantize(64)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)

    def is_cat(tags: list[dict]) -> bool:
        return any(t["name"] == "cat" for t in tags)

    return {
        "truncated_jpeg": (photo[: len(photo) // 2], "cut.jpg", "image/jpeg", 422),
        "zero_bytes": (b"", "empty.jpg", "image/jpeg", 422),
        "html_named_jpg": (b"<!doctype html><html><body>hello</body></html>", "page.jpg", "image/jpeg", 422),
        "png_bomb_30000x30000": (_png_bomb(), "bomb.png", "image/png", 422),
        "cmyk_jpeg": (_jpeg(cat.convert("CMYK")), "cmyk.jpg", "image/jpeg", is_cat),
        "png_16bit": (_png(grey16), "grey16.png", "image/png", is_cat),
        "animated_gif": (gif.getvalue(), "anim.gif", "image/gif", is_cat),
        "exif_rotated": (rotated, "rotated.jpg", "image/jpeg", is_cat),
        "huge_exif": (_jpeg(cat, exif=big_exif.tobytes()), "exif.jpg", "image/jpeg", is_cat),
        "png_named_jpg": (_png(cat), "really-a-png.jpg", "image/jpeg", is_cat),
        "text_content_type": (photo, "photo.jpg", "text/plain", 415),
        "over_upload_limit": (b"\xff\xd8" + b"\0" * (MAX_UPLOAD + 10), "huge.jpg", "image/jpeg", 413),
    }


@pytest.mark.parametrize("endpoint", ["/v1/tag", "/v1/images"])
def test_hostile_corpus_gets_clear_errors_or_right_answers(make_client, sqlite_db, photos, hostile_corpus, endpoint):
    client = make_client(sqlite_db)
    keep = client.post("/v1/images", files=_upload(photos["coffee"]), data={"user_tags": "keep me"}).json()
    accepted = 0
    for name, (payload, filename, content_type, expected) in hostile_corpus.items():
        response = client.post(endpoint, files=_upload(payload, filename, content_type))
        if isinstance(expected, int):
            body = _is_error(response, expected)
            if name == "png_bomb_30000x30000":
                assert "30000x30000" in body["detail"]
        else:
            assert response.status_code in (200, 201), f"{name}: {response.text}"
            assert expected(response.json()["tags"]), f"{name}: wrong tags {response.json()['tags']}"
            accepted += endpoint == "/v1/images" and response.json()["created"]
        assert client.get("/healthz").json()["status"] == "ok", f"server unhealthy after {name}"
    still = client.get(f"/v1/images/{keep['id']}").json()
    assert still["content_hash"] == keep["content_hash"] and still["user_tags"] == ["keep me"]
    assert still["tags"] == keep["tags"]
    assert client.get("/healthz").json()["images"] == 1 + accepted


def test_exif_rotation_is_applied_before_tagging(make_client, sqlite_db, photos, hostile_corpus):
    client = make_client(sqlite_db)
    upright = client.post("/v1/images", files=_upload(photos["chelsea"])).json()
    client.post("/v1/images", files=_upload(photos["coffee"]))
    rotated, filename, content_type, _ = hostile_corpus["exif_rotated"]
    hits = client.post("/v1/similar", files=_upload(rotated, filename, content_type), data={"k": "1"}).json()
    # The stored photo and the EXIF-rotated copy embed almost identically only if rotation was undone
    # (lying on its side the same photo scores about 0.87).
    assert hits["results"][0]["id"] == upright["id"] and hits["results"][0]["score"] > 0.95


def test_bad_requests_are_json_errors(make_client, sqlite_db, photos, fake_model):
    client = make_client(sqlite_db)
    _is_error(client.post("/v1/tag"), 422)  # no file
    _is_error(client.post("/v1/tag", content=b"raw bytes", headers={"content-type": "image/jpeg"}), 422)
    _is_error(client.get("/v1/images/not-a-number"), 422)
    # past the database's 64-bit ids: a 422 naming the limit, not an OverflowError (500)
    for url in ("/v1/images/99999999999999999999999", "/v1/images/99999999999999999999999/thumbnail",
                "/v1/images/0", "/v1/images/-5"):
        _is_error(client.get(url), 422)
    _is_error(client.delete("/v1/images/99999999999999999999999"), 422)
    _is_error(client.post("/v1/images/99999999999999999999999/feedback", json={"add": ["x"]}), 422)
    _is_error(client.post("/v1/similar", data={"id": "99999999999999999999999"}), 422)
    _is_error(client.get("/v1/images/9223372036854775807"), 404)  # the largest id is merely not there
    _is_error(client.get("/v1/images", params={"offset": 10**30}), 422)
    _is_error(client.get("/v1/images", params={"tag": "cat\x00"}), 422)  # PostgreSQL cannot hold a NUL
    _is_error(client.post("/v1/images/1/feedback", json={"add": ["a\x00b"]}), 422)
    _is_error(client.get("/v1/images", params={"limit": 0}), 422)
    _is_error(
        client.post("/v1/images/1/feedback", content=b"{not json", headers={"content-type": "application/json"}), 422
    )
    _is_error(client.put("/v1/tag"), 405)
    # Far over the limit: refused from its Content-Length, and when streamed without one.
    huge = b"\xff\xd8" + b"\0" * (MAX_UPLOAD + 3_000_000)
    body = _is_error(client.post("/v1/images", files=_upload(huge)), 413)
    assert f"over the limit of {MAX_UPLOAD} bytes" in body["detail"]  # the configured limit, not limit + slack

    form = client.build_request("POST", "/v1/tag", files=_upload(huge))
    body = form.read()

    def chunks():  # no Content-Length: the server only finds out while reading
        for start in range(0, len(body), 1 << 20):
            yield body[start : start + (1 << 20)]

    headers = {"content-type": form.headers["content-type"]}
    streamed = _is_error(client.post("/v1/tag", content=chunks(), headers=headers), 413)
    assert f"over the limit of {MAX_UPLOAD} bytes" in streamed["detail"]
    assert client.get("/healthz").json()["status"] == "ok"


# ---------------------------------------------------------------------------------------- crash and resume


def _start_server(db: str, data_dir: Path, port: int):
    from autotag.testing.server import start_server

    env = {**os.environ, "AUTOTAG_DATA_DIR": str(data_dir), "AUTOTAG_API_KEYS": ""}
    return start_server(["--db", db, "--log-level", "warning"], port=port, env=env)


def _batch(photos: dict[str, Path], n: int) -> list[bytes]:
    """n distinct real photos: crops of the bundled photos at different offsets."""
    images = [Image.open(p).convert("RGB") for p in photos.values()]
    out = []
    for i in range(n):
        im = images[i % len(images)]
        k = i // len(images)
        out.append(_jpeg(im.crop((4 * k, 3 * k, im.width - 2 * k, im.height - k))))
    return out


def test_killed_server_mid_batch_leaves_no_partial_rows_and_the_batch_resumes(photos, tmp_path, fake_model):
    """SIGKILL the server while a client ingests a batch; restart; re-send the whole batch."""
    import signal
    import threading

    import httpx

    from autotag.store import open_store

    db, data_dir = str(tmp_path / "lib" / "library.db"), tmp_path / "data"
    from autotag.testing.server import free_port

    port = free_port()
    batch = _batch(photos, 24)  # the fake encoder is quick: enough images that the kill lands mid-batch
    base = f"http://127.0.0.1:{port}"

    server = _start_server(db, data_dir, port)
    done: list[int] = []

    def send_all() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            for i, data in enumerate(batch):
                try:
                    response = client.post("/v1/images", files={"file": (f"{i}.jpg", data, "image/jpeg")})
                except httpx.HTTPError:
                    return  # the server died under us
                assert response.status_code in (200, 201), response.text
                done.append(response.json()["id"])

    sender = threading.Thread(target=send_all)
    sender.start()
    while len(done) < 4 and sender.is_alive():
        time.sleep(0.01)
    server.send_signal(signal.SIGKILL)  # no shutdown hook runs: the index is not saved
    server.wait(timeout=30)
    sender.join(timeout=60)
    assert 4 <= len(done) < len(batch), "the kill should land in the middle of the batch"

    with open_store(db, data_dir=data_dir) as lib:
        stored = lib.list_images(limit=1000)
        assert len(stored) >= len(done)
        for image in stored:  # an image row never exists without its tags
            assert lib.predictions(image.id), f"image {image.id} stored without predictions"
            assert Path(image.source).is_file()

    server = _start_server(db, data_dir, port)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            ids = []
            for i, data in enumerate(batch):
                response = client.post("/v1/images", files={"file": (f"{i}.jpg", data, "image/jpeg")})
                assert response.status_code == (200 if i < len(stored) else 201), (i, response.text)
                ids.append(response.json()["id"])
            assert ids[: len(done)] == done  # the same content keeps its id
            assert len(set(ids)) == len(batch)
            assert client.get("/healthz").json()["images"] == len(batch)
            hits = client.post("/v1/similar", data={"id": str(ids[0]), "k": "100"}).json()["results"]
            assert sorted(h["id"] for h in hits) == sorted(ids[1:])  # the index holds every image once
    finally:
        server.terminate()
        server.wait(timeout=30)


# ---------------------------------------------------------------------------------------- generated requests


@pytest.mark.slow
@pytest.mark.parametrize("keys_configured", [False, True])
def test_schemathesis_finds_no_server_error_and_no_schema_break(photos, tmp_path, keys_configured):
    pytest.importorskip("schemathesis", reason="schemathesis missing: pip install schemathesis")
    from autotag.testing.api_fuzz import run_schemathesis

    result = run_schemathesis(tmp_path, [photos["chelsea"], photos["coffee"]], keys_configured=keys_configured,
                              send_key=keys_configured, max_examples=3)  # fmt: skip
    assert result.generated >= 100, result.output[-3000:]  # every endpoint was exercised
    assert result.failures == [] and result.server_errors == 0, result.output[-6000:]
