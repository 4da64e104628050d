"""The image library on SQLite and on a real PostgreSQL server started by the test set-up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from autotag.store import open_store
from autotag.testing.postgres import create_database
from autotag.types import AutotagError, Tag


@pytest.fixture
def lib(db_url):
    library = open_store(db_url)
    yield library
    library.close()


def _hash(i: int) -> str:
    return f"{i:064x}"


def test_opens_migrated_and_reopens_without_reapplying(db_url):
    with open_store(db_url) as first:
        assert first.schema_version >= 1
        assert first.dialect == ("sqlite" if "://" not in db_url else "postgresql")
        first.add_image(_hash(1), "/a.jpg")
    with open_store(db_url) as second:  # migrations are idempotent and data survives
        assert second.schema_version == first.schema_version
        assert second.count_images() == 1
        assert second.integrity_problems() == []


def test_sqlite_is_wal_with_index_dir_beside_it(tmp_path):
    import sqlite3

    path = tmp_path / "deep" / "lib.db"
    with open_store(str(path)) as lib:
        assert lib.index_dir == tmp_path / "deep" / "lib.index" and lib.index_dir.is_dir()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = conn.execute("SELECT version FROM schema_version").fetchall()
    from autotag.store.migrations import available

    assert versions == [(number,) for number, _, _ in available()] and len(versions) >= 3


def test_postgres_index_dir_lives_in_data_dir(postgres_url, tmp_path):
    url = create_database(postgres_url)
    with open_store(url, data_dir=tmp_path) as lib:
        assert lib.index_dir.is_dir()
        assert lib.index_dir.is_relative_to(tmp_path)
        assert url.rsplit("/", 1)[1] in lib.index_dir.name


def test_processes_opening_a_fresh_database_at_once(db_url):
    script = "import sys; from autotag.store import open_store; open_store(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", script, db_url], stderr=subprocess.PIPE) for _ in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    with open_store(db_url) as lib:
        import sqlalchemy as sa

        with lib._engine.connect() as conn:  # the one place a test reads the version table directly
            rows = conn.execute(sa.text("SELECT version FROM schema_version ORDER BY version")).all()
        assert [r[0] for r in rows] == list(range(1, lib.schema_version + 1))


def test_many_processes_creating_sqlite_libraries_at_once(tmp_path):
    # Switching a new file to WAL fails at once (no busy wait) while another process holds a lock; before
    # the retry, about one process in five of such a race failed with "database is locked".
    script = "import sys; from autotag.store import open_store; open_store(sys.argv[1]).close()"
    for round_ in range(8):  # pairs one after another: two processes started together collide most often
        db = str(tmp_path / str(round_) / "library.db")
        procs = [subprocess.Popen([sys.executable, "-c", script, db], stderr=subprocess.PIPE) for _ in range(2)]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode()


def test_old_schema_is_upgraded_in_place_and_newer_is_refused(db_url, tmp_path):
    import sqlalchemy as sa

    from autotag.store.engine import resolve_url
    from autotag.store.migrations import apply_migrations

    if "://" not in db_url:
        Path(db_url).parent.mkdir(parents=True)
    engine = sa.create_engine(resolve_url(db_url, tmp_path))
    assert apply_migrations(engine, upto=1) == 1  # a library made by the first release
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO images (content_hash, source, added_at) VALUES (:h, '/old.jpg', :t)"),
            {"h": _hash(1), "t": "2026-01-01 00:00:00"},
        )
        conn.execute(
            sa.text(
                "INSERT INTO predictions (image_id, model, tag, tag_id, score, rank, kind, created_at) "
                "VALUES (1, 'm', 'dog', 'n02084071', 0.9, 1, 'leaf', :t)"
            ),
            {"t": "2026-01-01 00:00:00"},
        )
    with open_store(db_url) as lib:
        assert lib.schema_version >= 2
        assert [im.source for im in lib.list_images(tag="dog")] == ["/old.jpg"]
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO schema_version (version, name, applied_at) VALUES (99, 'future', 'x')"))
    engine.dispose()
    with pytest.raises(AutotagError, match="newer than this autotag"):
        open_store(db_url)


def test_same_content_twice_adds_nothing(lib):
    first = lib.add_image(_hash(7), "/photos/a.jpg", width=640, height=480, format="JPEG", size_bytes=1234)
    again = lib.add_image(_hash(7), "/elsewhere/copy.jpg", width=640, height=480, format="JPEG", size_bytes=1234)
    assert first[1] is True and again == (first[0], False)
    image = lib.get_image(first[0])
    assert image is not None and image.source == "/photos/a.jpg"
    assert (image.width, image.height, image.format, image.size_bytes) == (640, 480, "JPEG", 1234)
    assert image.added_at.tzinfo is not None
    assert lib.get_image_by_hash(_hash(7)) == image
    assert lib.get_image(999) is None and lib.get_image_by_hash(_hash(8)) is None
    assert lib.count_images() == 1


def test_concurrent_get_or_create_is_safe(lib):
    results: list[tuple[str, int, bool]] = []
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for i in np.random.default_rng(seed).permutation(6):
                image_id, created = lib.add_image(_hash(int(i)), f"/t{seed}/{i}.png")
                results.append((_hash(int(i)), image_id, created))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert lib.count_images() == 6
    for h in {r[0] for r in results}:
        mine = [r for r in results if r[0] == h]
        assert len({r[1] for r in mine}) == 1  # everyone got the same id
        assert sum(r[2] for r in mine) == 1  # exactly one caller created it


def test_predictions_user_tags_feedback_round_trip(lib):
    image_id, _ = lib.add_image(_hash(1), "/cat.jpg")
    tags = [Tag("tabby", 0.8, "n02123045"), Tag("cat", 0.9, "n02121808", "ancestor")]
    assert lib.add_predictions(image_id, "efficientnet_lite0", tags) == 2
    stored = lib.predictions(image_id)
    assert [(p.tag, p.rank, p.kind) for p in stored] == [("tabby", 1, "leaf"), ("cat", 2, "ancestor")]
    assert stored[0].to_tag() == tags[0]
    # Re-tagging with the same model replaces its rows; another model's rows stay.
    lib.add_predictions(image_id, "efficientnet_lite0", [{"name": "lynx", "score": 0.4, "id": "n02127052"}])
    lib.add_predictions(image_id, "runs/mine", [Tag("pet", 0.7, "pet", "label")])
    assert [(p.model, p.tag) for p in lib.predictions(image_id)] == [
        ("efficientnet_lite0", "lynx"),
        ("runs/mine", "pet"),
    ]
    assert [p.tag for p in lib.predictions(image_id, model="runs/mine")] == ["pet"]

    lib.set_user_tags(image_id, ["kitty", " ", "kitty", "cute"])
    assert lib.user_tags(image_id) == ["kitty", "cute"]
    lib.set_user_tags(image_id, ["sleepy"])
    assert lib.user_tags(image_id) == ["sleepy"]

    accepted = lib.add_feedback(image_id, "pet", "accept", who="ana")
    assert (accepted.action, accepted.who, accepted.model, accepted.score) == (
        "accepted",
        "ana",
        "runs/mine",
        0.7,
    )
    lib.add_feedback(image_id, "lynx", "rejected")
    added = lib.add_feedback(image_id, "sofa", "added", who="bo")
    assert added.model is None and added.score is None  # two models tagged it: no one to blame
    assert [f.tag for f in lib.feedback(image_id)] == ["pet", "lynx", "sofa"]
    assert [f.tag for f in lib.feedback(action="reject")] == ["lynx"]
    assert [f.tag for f in lib.feedback(model="runs/mine")] == ["pet"]

    with pytest.raises(AutotagError, match="valid: accepted, rejected, added"):
        lib.add_feedback(image_id, "pet", "like")
    with pytest.raises(AutotagError, match="not in the library"):
        lib.add_predictions(12345, "m", tags)
    with pytest.raises(AutotagError, match="not in the library"):
        lib.add_feedback(12345, "pet", "accepted")


def test_delete_removes_everything_about_the_image(lib):
    keep, _ = lib.ingest(_hash(1), "/keep.jpg", model="m", tags=[Tag("dog", 0.9)], user_tags=["good boy"])
    gone, _ = lib.ingest(_hash(2), "/gone.jpg", model="m", tags=[Tag("cat", 0.9)], user_tags=["kitty"])
    lib.add_feedback(gone, "cat", "accepted")
    assert lib.delete_image(gone) is True
    assert lib.delete_image(gone) is False
    assert lib.get_image(gone) is None
    assert lib.predictions(gone) == [] and lib.user_tags(gone) == [] and lib.feedback(gone) == []
    assert lib.integrity_problems() == []
    assert [p.tag for p in lib.predictions(keep)] == ["dog"] and lib.user_tags(keep) == ["good boy"]
    # The same content can come back after deletion, as a new image.
    again, created = lib.add_image(_hash(2), "/gone.jpg")
    assert created and again != gone


def test_tag_search_with_paging_and_corrections(lib):
    ids = []
    for i in range(7):
        tags = [Tag("dog", 0.9, "n02084071")] if i % 2 == 0 else [Tag("cat", 0.8, "n02121808")]
        ids.append(lib.ingest(_hash(i), f"/{i}.jpg", model="m", tags=tags)[0])
    dogs = [ids[i] for i in (6, 4, 2, 0)]  # newest first
    assert [im.id for im in lib.list_images(tag="dog")] == dogs
    assert [im.id for im in lib.list_images(tag="n02084071", limit=2, offset=1)] == dogs[1:3]
    assert lib.count_images(tag="dog") == 4 and lib.count_images() == 7
    lib.add_feedback(ids[4], "dog", "rejected")
    lib.add_feedback(ids[1], "dog", "added")
    lib.set_user_tags(ids[3], ["dog"])
    assert {im.id for im in lib.list_images(tag="dog")} == {ids[0], ids[2], ids[6], ids[1], ids[3]}
    assert lib.list_images(tag="unicorn") == []
    assert [im.id for im in lib.list_images(limit=3)] == ids[::-1][:3]


def test_ingest_is_all_or_nothing_and_repeatable(lib):
    tags = [Tag("dog", 0.9), Tag("animal", 0.95, kind="ancestor")]
    image_id, created = lib.ingest(_hash(5), "/d.jpg", width=2, height=3, model="m", tags=tags, user_tags=["pup"])
    assert created
    again = lib.ingest(_hash(5), "/d.jpg", model="m", tags=tags, user_tags=["other"])
    assert again == (image_id, False)
    assert len(lib.predictions(image_id)) == 2 and lib.user_tags(image_id) == ["pup"]
    # A bad tag fails the whole transaction: no image row is left behind.
    with pytest.raises(AutotagError):
        lib.ingest(_hash(6), "/e.jpg", model="m", tags=[Tag("ok", 0.5), "not a tag"])  # type: ignore[list-item]
    assert lib.get_image_by_hash(_hash(6)) is None


def test_model_versions(lib):
    v1 = lib.register_model("pets", "/runs/pets", {"encoder": "efficientnet_lite0"})
    v2 = lib.register_model("pets", "/runs/pets-v2")
    assert (v1.version, v2.version) == (1, 2)
    assert lib.get_model("pets") == v2 and lib.get_model("pets", 1).config == {"encoder": "efficientnet_lite0"}
    assert [(m.version, m.active) for m in lib.list_models("pets")] == [(1, False), (2, True)]
    assert lib.activate_model("pets", 1).active
    assert lib.get_model("pets").version == 1
    assert lib.get_model("nope") is None
    with pytest.raises(AutotagError, match="not in the library"):
        lib.activate_model("pets", 9)


def test_bad_database_locations_are_one_line_errors(tmp_path):
    with pytest.raises(AutotagError, match="unsupported database"):
        open_store("mysql://u@localhost/x")
    with pytest.raises(AutotagError, match="is a folder"):
        open_store(str(tmp_path))
    with pytest.raises(AutotagError, match="cannot open library .*server is running") as info:
        open_store("postgresql://nobody:secret@127.0.0.1:1/none")
    assert "secret" not in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------ robustness: kill -9 mid-batch
INGEST_SCRIPT = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path

    import numpy as np

    from autotag.ingest import content_hash, decode_image
    from autotag.store import open_store
    from autotag.types import Tag

    db, folder = sys.argv[1], Path(sys.argv[2])
    with open_store(db) as lib:
        for n, path in enumerate(sorted(folder.glob("*.png")), start=1):
            data = path.read_bytes()
            image = decode_image(data)
            means = np.asarray(image, dtype=np.float32).reshape(-1, 3).mean(axis=0) / 255
            # Many rows per image so that the kill often lands inside a transaction.
            tags = [Tag(f"{c}{level}", float(m)) for c, m in zip("rgb", means) for level in range(40)]
            lib.ingest(content_hash(data), str(path), width=image.width, height=image.height, format="PNG",
                       size_bytes=len(data), model="colours", tags=tags, user_tags=[path.stem, "batch"])
            print(n, flush=True)
            # Paced, so that on a fast idle machine the rest of the batch cannot finish before the kill.
            time.sleep(0.01)
    """
)


def _write_batch(folder: Path, count: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")


def test_batch_ingest_killed_mid_way_resumes_cleanly(db_url, tmp_path):
    folder, script = tmp_path / "batch", tmp_path / "ingest.py"
    _write_batch(folder, 40)
    script.write_text(INGEST_SCRIPT)
    open_store(db_url).close()  # migrate first so every run's kill lands in the ingest loop
    stored_after_kill = []
    for stop_after in (5, 17):
        proc = subprocess.Popen([sys.executable, str(script), db_url, str(folder)], stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:  # type: ignore[union-attr]
            if int(line) >= stop_after:
                break
        time.sleep(0.002 * stop_after)  # land somewhere in the next image's work
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        with open_store(db_url) as lib:
            assert lib.integrity_problems() == []
            images = lib.list_images(limit=1000)
            stored_after_kill.append(len(images))
            assert len({im.content_hash for im in images}) == len(images)
            for image in images:  # every stored image is complete: no partial rows
                assert len(lib.predictions(image.id)) == 120
                assert lib.user_tags(image.id) == [Path(image.source).stem, "batch"]
    assert stop_after <= stored_after_kill[-1] < 40, stored_after_kill
    done = subprocess.run([sys.executable, str(script), db_url, str(folder)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open_store(db_url) as lib:
        images = lib.list_images(limit=1000)
        assert sorted(Path(im.source).name for im in images) == sorted(p.name for p in folder.glob("*.png"))
        assert sum(len(lib.predictions(im.id)) for im in images) == 40 * 120
        assert lib.integrity_problems() == []
