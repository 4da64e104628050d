"""Tags taught by example (autotag.heads.learned_tag, Library.teach, `autotag teach`, /v1/tags).

The learner's behaviour on real photos with the real encoder (the bundled photos and, for the three
cats, Tux Paint's photo stamps); the library, CLI and API plumbing with the fake encoder.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autotag.heads.learned_tag import LearnedTag, TeachingSpace, fit_threshold, teach
from autotag.types import AutotagError

STAMPS = Path("/usr/share/tuxpaint/stamps")
# Tux Paint's photo stamps (Debian tuxpaint-stamps-default): big cats, and pictures that are not cats
CATS = ("animals/mammals/cats/tiger", "animals/mammals/cats/lion")
OTHER_STAMPS = ("food/pizza", "food/fruit/grapes", "household/dishes/glass", "vehicles/flight/planes/747",
                "household/tools/wrench", "clothes/t_pants", "town/usps_mailbox", "food/fruit/strawberry")  # fmt: skip
UNRELATED = ("coffee", "rocket", "astronaut", "motorcycle", "china", "flower", "camera", "grace_hopper")


@pytest.fixture(scope="module")
def real_library():
    """Embeddings of a small real library: the bundled photos (one cat) plus photo stamps (two more)."""
    from autotag.demo import bundled_photo
    from autotag.pipeline import Tagger

    if not all((STAMPS / f"{s}.png").is_file() for s in CATS + OTHER_STAMPS):
        pytest.skip(f"Tux Paint photo stamps missing in {STAMPS}: apt-get install tuxpaint-stamps-default")
    pictures = {name: bundled_photo(name) for name in ("chelsea", *UNRELATED, "hubble_deep_field")}
    for stamp in CATS + OTHER_STAMPS:
        pictures[stamp.rsplit("/", 1)[1]] = Image.open(STAMPS / f"{stamp}.png").convert("RGBA")
    names = list(pictures)
    embeddings = Tagger.load(objects=False).embed(list(pictures.values()))
    return names, embeddings


def _rank(names: list[str], scores: np.ndarray, skip: set[str]) -> list[str]:
    return [names[i] for i in np.argsort(-scores) if names[i] not in skip]


def test_two_cat_photos_rank_a_third_cat_above_unrelated_photos(real_library):
    names, emb = real_library
    space = TeachingSpace(emb)
    examples = [names.index("chelsea"), names.index("tiger")]
    model = space.teach("cat", emb[examples], judged_rows=examples)
    ranking = _rank(names, space.scores(model), {"chelsea", "tiger"})
    lion = ranking.index("lion")
    unrelated = [ranking.index(n) for n in (*UNRELATED, "pizza", "grapes", "glass", "747", "wrench", "t_pants")]
    assert lion < min(unrelated), ranking
    assert model.summary() == "learned from 2 examples"


def test_a_rejection_moves_its_image_below_the_cut(real_library):
    names, emb = real_library
    space = TeachingSpace(emb)
    cats = [names.index(n) for n in ("chelsea", "tiger", "lion")]
    rocket = names.index("rocket")
    wrong = space.teach("cat", emb[cats + [rocket]], judged_rows=cats + [rocket])  # a slip: the rocket as a cat
    assert wrong.scores(emb[[rocket]])[0] >= wrong.threshold
    fixed = space.teach("cat", emb[cats], emb[[rocket]], judged_rows=cats + [rocket])
    scores = space.scores(fixed)
    assert scores[rocket] < fixed.threshold
    assert all(scores[rocket] < scores[names.index(n)] for n in UNRELATED if n != "rocket")  # below, not at the edge
    assert all(scores[c] >= fixed.threshold for c in cats)  # the examples keep the tag
    assert fixed.summary() == "learned from 3 examples, 1 rejection"


def test_model_round_trips_through_its_stored_form(real_library):
    names, emb = real_library
    model = teach("cat", emb, emb[[names.index("chelsea"), names.index("tiger")]])
    blob = model.to_bytes()
    assert len(blob) < 20_000  # small enough to keep every version beside its examples
    again = LearnedTag.from_bytes(blob)
    assert np.array_equal(again.scores(emb), model.scores(emb))
    assert again.threshold == model.threshold and again.examples == 2
    with pytest.raises(AutotagError):
        LearnedTag.from_bytes(b'{"format": 99}')


def test_features_are_the_same_for_raw_and_unit_embeddings(real_library):
    _, emb = real_library
    model = teach("x", emb, emb[:2])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)  # what the library's index keeps
    np.testing.assert_allclose(model.scores(emb), model.scores(unit), rtol=1e-5, atol=1e-5)


def test_no_example_is_an_error():
    with pytest.raises(AutotagError, match="at least one example"):
        teach("sky", np.ones((5, 8), np.float32), np.zeros((0, 8), np.float32))


def test_threshold_reaches_the_target_on_judged_examples():
    rng = np.random.default_rng(0)
    unlabelled = rng.normal(0, 1, 2000)
    accepted = rng.normal(3, 0.5, 12)
    rejected = np.array([2.9, 3.1, 3.2])  # three wrong pictures among the accepted ones' scores
    threshold, precision = fit_threshold(accepted, rejected, unlabelled, target=0.9)
    above = (accepted >= threshold).sum(), (rejected >= threshold).sum()
    assert above[0] / max(1, sum(above)) >= 0.9 and precision is not None and precision >= 0.9
    few, estimate = fit_threshold(accepted[:2], [], unlabelled)  # two examples: the cautious fallback
    assert estimate is None and (unlabelled >= few).mean() <= 0.01


# ---------------------------------------------------------------------------------- library (fake encoder)


@pytest.fixture
def library(fake_model, photos, tmp_path):
    from autotag.library import Library

    db = str(tmp_path / "lib" / "library.db")
    with Library.open(db) as lib:
        report = lib.ingest([str(p) for p in photos.values()])
        assert report.added == len(photos)
    return db


def _cropped(path: Path) -> bytes:
    im = Image.open(path)
    buf = io.BytesIO()
    im.crop((4, 4, im.width - 4, im.height - 4)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_learned_tag_is_stored_searchable_survives_reopening_and_reaches_a_new_upload(library, photos):
    from autotag.library import Library

    with Library.open(library) as lib:
        taught = lib.teach("sky", [str(photos["rocket"]), str(photos["hubble_deep_field"])])
        ids = {h.image.source: h.image.id for h in taught.tagged}
        assert str(photos["rocket"]) in ids and str(photos["hubble_deep_field"]) in ids
        assert taught.version == 1 and taught.model.examples == 2
        found, total = lib.find(tag="sky")  # search finds the learned tag
        assert {im.id for im in found} == set(ids.values()) and total == len(ids)
        record = lib.describe(found[0])
        assert any(t["kind"] == "learned" and t["name"] == "sky" for t in record["tags"])
        assert [t.to_dict()["examples"] for t in lib.learned_tags()] == [2]
    with Library.open(library) as lib:  # a new process: the model comes back from the database
        upload = lib.add_upload(_cropped(photos["rocket"]))
        learned = [t for t in upload.item.tags if t.kind == "learned"]
        assert [t.name for t in learned] == ["sky"] and 0.5 <= learned[0].score <= 1.0
        assert "sky" in [p.tag for p in lib.store.predictions(upload.image.id, model="learned")]
        other = lib.add_upload(_cropped(photos["coffee"]))
        assert not [t for t in other.item.tags if t.kind == "learned"]


def test_rejection_retrains_and_untags(library, photos):
    from autotag.library import Library

    with Library.open(library) as lib:
        lib.teach("sky", [str(photos["rocket"]), str(photos["hubble_deep_field"]), str(photos["china"])])
        china = lib.store.get_image_by_hash(lib.tagger.process(str(photos["china"]), decide=False).content_hash)
        again = lib.untag("sky", [china.id])
        assert again.version == 2 and again.model.rejections == 1
        assert china.id not in {h.image.id for h in again.tagged}
        assert china.id not in {im.id for im in lib.find(tag="sky")[0]}
        assert lib.store.learned_model("sky", version=1) is not None  # older versions are kept


def test_zero_examples_or_an_unknown_image_change_nothing(library, photos, tmp_path):
    from autotag.library import Library, NotInLibrary

    with Library.open(library) as lib:
        images = lib.store.count_images()
        with pytest.raises(AutotagError, match="at least one example"):
            lib.teach("sky", [])
        with pytest.raises(NotInLibrary, match="image 999 is not in the library"):
            lib.teach("sky", [str(photos["rocket"]), 999])
        with pytest.raises(AutotagError, match="nope.jpg: no such file"):
            lib.teach("sky", [str(photos["rocket"]), str(tmp_path / "nope.jpg")])
        assert lib.learned_tags() == [] and lib.store.count_images() == images
        assert lib.find(tag="sky")[1] == 0


def test_forgetting_a_tag_removes_its_model_never_the_images(library, photos):
    from autotag.library import Library, UnknownLearnedTag

    with Library.open(library) as lib:
        lib.teach("sky", [str(photos["rocket"])])
        images = lib.store.count_images()
        lib.forget_tag("sky")
        assert lib.learned_tags() == [] and lib.store.learned_model("sky") is None
        assert lib.find(tag="sky")[1] == 0 and lib.store.count_images() == images
        with pytest.raises(UnknownLearnedTag, match="no learned tag 'sky'"):
            lib.forget_tag("sky")


def test_batch_gives_a_librarys_learned_tags(library, photos, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from autotag.distributed import BatchJob, run_batch
    from autotag.library import Library

    def read_shards(dest: str) -> list[dict]:
        return pq.read_table(sorted(Path(dest).glob("part-*.parquet"))).to_pylist()

    with Library.open(library) as lib:
        lib.teach("sky", [str(photos["rocket"]), str(photos["hubble_deep_field"])])
        documents = tuple(doc for _, doc in lib.store.learned_models().values())
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "rocket-copy.jpg").write_bytes(_cropped(photos["rocket"]))
    (folder / "coffee-copy.jpg").write_bytes(_cropped(photos["coffee"]))
    plain = run_batch([str(folder)], str(tmp_path / "plain"), engine="local", job=BatchJob(shard_size=5))
    taught = run_batch([str(folder)], str(tmp_path / "taught"), engine="local",
                       job=BatchJob(shard_size=5, learned=documents))  # fmt: skip
    assert plain["tagged"] == taught["tagged"] == 2
    learned = {Path(r["path"]).name: [t["name"] for t in r["tags"] if t["kind"] == "learned"]
               for r in read_shards(str(tmp_path / "taught"))}  # fmt: skip
    assert learned == {"rocket-copy.jpg": ["sky"], "coffee-copy.jpg": []}
    assert not any(t["kind"] == "learned" for r in read_shards(str(tmp_path / "plain")) for t in r["tags"])


def test_cli_teach_tags_and_tag_with_db(fake_model, photos, tmp_path):
    import os

    import autotag

    # `autotag ...` in a fresh process that knows the fake encoder (AUTOTAG_MODEL names it)
    command = [sys.executable, "-c", "from autotag.testing.fake import register_fake_encoder as r; r(); "
               "from autotag.cli import main; main()"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(autotag.__file__).resolve().parents[1])}
    pics = tmp_path / "pics"
    pics.mkdir()
    for name, path in photos.items():
        shutil.copy(path, pics / f"{name}.jpg")
    db = str(tmp_path / "lib.db")

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*command, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert (done.returncode == 0) == ok, done.stderr
        return done

    run("index", str(pics), "--db", db, "-f", "json")
    done = run("teach", "sky", str(pics / "rocket.jpg"), str(pics / "hubble_deep_field.jpg"), "--db", db,
               "--not", str(pics / "coffee.jpg"), str(pics / "china.jpg"), "-f", "json")  # fmt: skip
    images = json.loads(done.stdout)
    assert {Path(r["path"]).name for r in images} >= {"rocket.jpg", "hubble_deep_field.jpg"}
    assert all(set(r) == {"id", "path", "score"} for r in images)
    assert "learned from 2 examples, 2 rejections" in done.stderr  # --not took both pictures
    listed = json.loads(run("tags", "--db", db, "-f", "json").stdout)
    assert [(t["name"], t["examples"], t["rejections"]) for t in listed] == [("sky", 2, 2)]
    tagged = json.loads(run("tag", str(pics / "rocket.jpg"), "--db", db, "-f", "json").stdout)[0]
    learned = [t for t in tagged["tags"] if t["kind"] == "learned"]
    assert [(t["name"], t["id"]) for t in learned] == [("sky", "learned:sky")]
    failed = run("teach", "sky", "12345", "--db", db, ok=False)
    assert failed.stderr.strip() == "autotag: error: image 12345 is not in the library"
    assert json.loads(run("tags", "--db", db, "-f", "json").stdout)[0]["examples"] == 2  # nothing changed
    run("forget-tag", "sky", "--db", db)
    assert json.loads(run("tags", "--db", db, "-f", "json").stdout) == []


def test_api_teach_list_and_forget_and_a_restarted_server_tags_new_uploads(fake_model, photos, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from autotag.api.app import create_app
    from autotag.config import load_settings

    monkeypatch.delenv("AUTOTAG_API_KEYS", raising=False)
    settings = load_settings(data_dir=tmp_path / "data", api_keys="")
    db = str(tmp_path / "lib" / "library.db")
    ids = {}
    with TestClient(create_app(settings, db=db)) as client:
        for name, path in photos.items():
            stored = client.post("/v1/images", files={"file": (path.name, path.read_bytes(), "image/jpeg")})
            ids[name] = stored.json()["id"]
        body = {"examples": [ids["rocket"], ids["hubble_deep_field"]], "rejections": [ids["coffee"]]}
        taught = client.post("/v1/tags/sky/examples", json=body)
        assert taught.status_code == 200, taught.text
        out = taught.json()
        assert out["summary"] == "learned from 2 examples, 1 rejection" and out["version"] == 1
        assert {ids["rocket"], ids["hubble_deep_field"]} <= {h["id"] for h in out["images"]}
        assert ids["coffee"] not in {h["id"] for h in out["images"] + out["suggestions"]}
        assert client.get("/v1/tags").json()["tags"][0]["examples"] == 2
        missing = client.post("/v1/tags/sky/examples", json={"examples": [999999]})
        assert missing.status_code == 404 and missing.json()["detail"] == "image 999999 is not in the library"
        empty = client.post("/v1/tags/moon/examples", json={})
        assert empty.status_code == 400 and "at least one example" in empty.json()["detail"]
        assert client.get("/v1/tags/moon").status_code == 404
        assert [t["name"] for t in client.get("/v1/tags").json()["tags"]] == ["sky"]
    with TestClient(create_app(settings, db=db)) as client:  # the server restarted
        upload = client.post("/v1/images", files={"file": ("r.jpg", _cropped(photos["rocket"]), "image/jpeg")})
        assert upload.status_code == 201
        assert [t["name"] for t in upload.json()["tags"] if t["kind"] == "learned"] == ["sky"]
        assert client.get("/v1/images", params={"tag": "sky"}).json()["total"] == len(out["images"]) + 1
        assert client.delete("/v1/tags/sky").status_code == 204
        assert client.get("/v1/tags").json()["tags"] == []
        assert client.get("/v1/images").json()["total"] == len(photos) + 1


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
