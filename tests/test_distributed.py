"""autotag.distributed on real photos with the fake encoder (the plumbing, not the model, is under test):
a local Ray (2 CPUs) and the local engine write equal shards, equal to what the pipeline gives directly."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from autotag.distributed import BatchJob, run_batch
from autotag.distributed.inputs import resolve_inputs
from autotag.testing.fake import FAKE_SPEC, register_fake_encoder
from autotag.types import AutotagError

ray = pytest.importorskip("ray", reason="Ray missing: pip install 'ray[data]'")

FAKE = register_fake_encoder()
JOB = BatchJob(model=FAKE, shard_size=4, batch_size=3)


@pytest.fixture(scope="module")
def local_ray():
    # Ray's worker processes learn the fake encoder the way this one did
    hook = {"worker_process_setup_hook": "autotag.testing.fake.register_fake_encoder"}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=hook)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def collection(photos, tmp_path_factory) -> Path:
    """The real photos in nested folders, plus a truncated JPEG and a text file named .jpg."""
    folder = tmp_path_factory.mktemp("collection")
    for i, (name, path) in enumerate(sorted(photos.items())):
        (folder / f"set{i % 2}").mkdir(exist_ok=True)
        shutil.copy(path, folder / f"set{i % 2}" / f"{name}.jpg")
    (folder / "set0" / "truncated.jpg").write_bytes(photos["coffee"].read_bytes()[:600])
    (folder / "set1" / "notes.jpg").write_text("not an image")
    return folder


def read_shards(dest: Path):
    return pq.read_table(sorted(dest.glob("part-*.parquet"))).to_pylist()


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
    assert [r["path"] for r in a] == [r["path"] for r in b]
    for x, y in zip(a, b, strict=True):
        for key in ("content_hash", "phash", "width", "height", "error"):
            assert x[key] == y[key], (x["path"], key)
        assert [t["name"] for t in x["tags"] or []] == [t["name"] for t in y["tags"] or []]
        if x["embedding"] is not None:
            np.testing.assert_allclose(x["embedding"], y["embedding"], atol=1e-5)
            np.testing.assert_allclose([t["score"] for t in x["tags"]], [t["score"] for t in y["tags"]], atol=1e-5)


@pytest.fixture(scope="module")
def local_run(collection, tmp_path_factory) -> tuple[Path, dict]:
    dest = tmp_path_factory.mktemp("local")
    return dest, run_batch([str(collection)], str(dest), engine="local", job=JOB)


def test_local_engine_tags_photos_and_records_bad_files(local_run, photos, collection) -> None:
    dest, summary = local_run
    rows = read_shards(dest)
    assert summary["images"] == len(rows) == len(photos) + 2
    assert summary["shards"] == summary["shards_written"] == 3  # 12 images, 4 per shard
    assert summary["failed"] == 2 and summary["tagged"] == len(photos)
    assert sorted(Path(f["path"]).name for f in summary["failures"]) == ["notes.jpg", "truncated.jpg"]
    assert json.loads((dest / "_summary.json").read_text())["failed"] == 2
    by_name = {Path(r["path"]).stem: r for r in rows}
    assert by_name["truncated"]["error"] and by_name["truncated"]["embedding"] is None
    from autotag.pipeline import Tagger

    direct = Tagger.load(FAKE).process(str(collection / "set0" / "chelsea.jpg"), phash=True)
    cat = by_name["chelsea"]
    assert [(t["name"], t["kind"]) for t in cat["tags"]] == [(t.name, t.kind) for t in direct.tags] and cat["tags"]
    np.testing.assert_allclose([t["score"] for t in cat["tags"]], [t.score for t in direct.tags], atol=1e-6)
    np.testing.assert_allclose(cat["embedding"], direct.embedding, atol=1e-6)
    assert len(cat["embedding"]) == FAKE_SPEC.embedding_dim and cat["content_hash"] == direct.content_hash
    assert (cat["phash"], cat["width"], cat["height"]) == (direct.phash, 451, 300)
    assert by_name["chelsea"]["embedding"] != by_name["coffee"]["embedding"]


def test_ray_engine_equals_local(local_ray, local_run, collection, tmp_path) -> None:
    summary = run_batch([str(collection)], str(tmp_path), engine="ray", job=JOB)
    assert summary["shards_written"] == 3 and summary["failed"] == 2
    assert_same_rows(read_shards(local_run[0]), read_shards(tmp_path))


def test_manifest_on_ray_equals_local(local_ray, collection, tmp_path) -> None:
    names = ["set0/chelsea.jpg", "set0/coffee.jpg", "set0/truncated.jpg", "missing.jpg", "set1/rocket.jpg"]
    manifest = collection / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "caption"], *[[n, "x"] for n in names]])
    existing = [str(collection / n) for n in names if (collection / n).exists()]
    ray_sum = run_batch([str(manifest)], str(tmp_path / "ray"), engine="ray", job=JOB)
    local_sum = run_batch([str(manifest)], str(tmp_path / "local"), engine="local", job=JOB)
    assert ray_sum["images"] == local_sum["images"] == len(names)
    assert ray_sum["failed"] == 2  # the truncated file and the missing one
    rows = read_shards(tmp_path / "ray")
    assert {r["path"] for r in rows} >= set(existing)
    assert_same_rows(read_shards(tmp_path / "local"), rows)


def test_manifest_formats_agree(collection, tmp_path) -> None:
    import pyarrow as pa

    paths = [str(p) for p in sorted(collection.rglob("*.jpg"))][:5]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"uri": p}) + "\n" for p in reversed(paths)))
    pq.write_table(pa.table({"image": paths + paths[:1]}), tmp_path / "m.parquet")
    assert resolve_inputs([str(tmp_path / "m.jsonl")]) == resolve_inputs([str(tmp_path / "m.parquet")]) == paths
    (tmp_path / "bad.csv").write_text("file,label\na.jpg,cat\n")
    with pytest.raises(AutotagError, match="no image column"):
        resolve_inputs([str(tmp_path / "bad.csv")])


def test_rerun_skips_finished_shards(local_ray, collection, tmp_path) -> None:
    run_batch([str(collection)], str(tmp_path), engine="local", job=JOB)
    shards = sorted(tmp_path.glob("part-*.parquet"))
    before = {p.name: p.stat().st_mtime_ns for p in shards}
    first_rows = pq.read_table(shards[1]).to_pylist()
    shards[1].unlink()
    summary = run_batch([str(collection)], str(tmp_path), engine="ray", job=JOB)
    assert (summary["shards_written"], summary["shards_skipped"]) == (1, 2)
    assert summary["images"] == 12 and summary["failed"] == 2
    for p in (shards[0], shards[2]):
        assert p.stat().st_mtime_ns == before[p.name]  # untouched
    assert_same_rows(first_rows, pq.read_table(shards[1]).to_pylist())
    assert not list(tmp_path.glob("*.tmp-*"))
    changed = run_batch([str(collection)], str(tmp_path), engine="local", job=BatchJob(FAKE, shard_size=6, top_k=2))
    assert changed["shards_written"] == 2  # other settings: no shard counts as finished
    assert changed["shards_removed"] == 1 and not shards[2].exists()  # part-00002 belonged to the old cut
    assert max(sum(t["kind"] in ("label", "object") for t in r["tags"] or []) for r in read_shards(tmp_path)) <= 2


def test_index_from_parquet_builds_a_searchable_library(local_run, tmp_path) -> None:
    from autotag.distributed.index import index_from_parquet
    from autotag.library import Library

    dest, _ = local_run
    rows = {Path(r["path"]).stem: r for r in read_shards(dest)}
    with Library.open(str(tmp_path / "lib.db")) as library:
        report = index_from_parquet(library, str(dest))
        assert report.added == 10 and len(report.failed) == 2
        again = index_from_parquet(library, str(dest))
        assert again.added == 0 and again.skipped == 10
        hits = library.similar(np.array(rows["chelsea"]["embedding"], np.float32), 1)
        found = hits[0].image
        assert found.source == rows["chelsea"]["path"]
        assert [p.tag for p in library.store.predictions(found.id)] == [t["name"] for t in rows["chelsea"]["tags"]]


def test_cli_batch_and_errors(collection, tmp_path) -> None:
    from typer.testing import CliRunner

    from autotag.cli import app

    runner = CliRunner()
    result = runner.invoke(
        app, ["batch", str(collection), "--out", str(tmp_path), "--shard-size", "6", "-m", FAKE, "-f", "json"]
    )
    # two unusable files in the collection: everything is written, and the exit code says so, as `tag` does
    assert result.exit_code == 1, result.output
    assert '"shards_written": 2' in result.stdout and '"failed": 2' in result.stdout
    assert "autotag: 2 of 12 images failed" in result.output
    bad = runner.invoke(app, ["batch", str(collection), "--out", str(tmp_path), "--engine", "spark"])
    assert bad.exit_code == 2 and "unknown engine 'spark'; valid: local, ray" in bad.output
    unknown = runner.invoke(app, ["batch", str(collection), "--out", str(tmp_path), "--model", "nope"])
    assert unknown.exit_code == 2 and "unknown model 'nope'" in unknown.output
    missing = runner.invoke(app, ["index", "--from-parquet", str(tmp_path / "nothing"), "--db", str(tmp_path / "l.db")])
    assert missing.exit_code == 2 and "no shards in" in missing.output


def test_index_sample_and_chunks_cover_all_shards(tmp_path) -> None:
    """The IVF-PQ training sample is drawn from every shard (seeded); chunks stream every good row once."""
    import pyarrow as pa

    from autotag.distributed.index import iter_chunks, sample_rows, shard_files
    from autotag.distributed.runner import FACET_TYPES, TAG_TYPE, shard_schema

    n, dim = 50, 4
    for shard in range(3):
        pq.write_table(
            pa.table(
                {
                    "path": [f"{shard}/{i}.jpg" for i in range(n)],
                    "content_hash": [f"{shard}-{i}" for i in range(n)],
                    "tags": pa.array([[]] * n, pa.list_(TAG_TYPE)),
                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(np.full(n * dim, shard, np.float32)), dim),
                    "phash": pa.array([0] * n, pa.uint64()),
                    "width": pa.array([1] * n, pa.int32()),
                    "height": pa.array([1] * n, pa.int32()),
                    **{name: pa.array([None] * n, kind) for name, kind in FACET_TYPES.items()},
                    "error": [None if i % 10 else "broken" for i in range(n)],
                },
                schema=shard_schema(dim),
            ),
            tmp_path / f"part-{shard:05d}.parquet",
        )
    fs, files = shard_files(str(tmp_path))
    sample = sample_rows(fs, files, [45, 45, 45], 30)
    assert sample.num_rows == 30 and sample.column("error").null_count == 30
    assert {p.split("/")[0] for p in sample.column("path").to_pylist()} == {"0", "1", "2"}
    assert sample_rows(fs, files, [45, 45, 45], 30).equals(sample)
    chunks = list(iter_chunks(fs, files, rows=40))
    paths = [p for c in chunks for p in c.column("path").to_pylist()]
    assert len(paths) == len(set(paths)) == 135 and all(c.column("error").null_count == c.num_rows for c in chunks)
