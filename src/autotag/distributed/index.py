"""`autotag index --from-parquet DEST`: shards written by `autotag batch` -> a library and its index.

Shards are streamed in chunks, so the collection never has to fit in memory at once; each chunk's
rows become pipeline Items that `Library.add_items` stores and indexes, as `autotag index` does.
When the index will be IVF-PQ (large collections), its first chunk is a seeded random sample drawn
from all shards: the quantisers train on that sample, and every later chunk is only added.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from autotag.distributed.runner import FACET_TYPES, SHARD_PATTERN, filesystem, shard_meta
from autotag.index.vector import IVFPQ_MIN_TRAIN
from autotag.types import AutotagError, Tag

if TYPE_CHECKING:
    from autotag.library import IngestReport, Library
    from autotag.pipeline import Item

COLUMNS = ["path", "content_hash", "tags", "embedding", "phash", "width", "height", *FACET_TYPES, "error"]
CHUNK_ROWS = 50_000


def shard_files(dest: str) -> tuple[Any, list[str]]:
    fs, root = filesystem(dest)
    files = sorted(fs.glob(f"{root}/{SHARD_PATTERN.replace('{:05d}', '*')}"))
    if not files:
        raise AutotagError(f"no shards in {dest}; write them with `autotag batch SOURCE --out {dest}`")
    return fs, files


def _read(fs: Any, path: str, columns: list[str] | None = None) -> pa.Table:
    with fs.open(path, "rb") as fh:
        file = pq.ParquetFile(fh)
        return file.read(columns=_present(file, columns))


def _present(file: pq.ParquetFile, columns: list[str] | None) -> list[str] | None:
    """The wanted columns this shard has (shards written before facets existed have none of them)."""
    names = set(file.schema_arrow.names)
    return None if columns is None else [c for c in columns if c in names]


def sample_rows(fs: Any, files: list[str], counts: list[int], size: int, seed: int = 0) -> pa.Table:
    """A seeded random sample of `size` good rows across all shards, read one shard at a time."""
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(sum(counts), min(size, sum(counts)), replace=False))
    parts, start = [], 0
    for path, count in zip(files, counts, strict=True):
        mine = picks[(picks >= start) & (picks < start + count)] - start
        if len(mine):
            table = _read(fs, path, COLUMNS)
            parts.append(table.filter(table.column("error").is_null()).take(pa.array(mine)))
        start += count
    return pa.concat_tables(parts)


def iter_chunks(fs: Any, files: list[str], rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """Good rows of every shard, in order, as tables of about `rows` rows."""
    buffer: list[pa.Table] = []
    held = 0
    for path in files:
        with fs.open(path, "rb") as fh:
            file = pq.ParquetFile(fh)
            for batch in file.iter_batches(batch_size=min(rows, 8192), columns=_present(file, COLUMNS)):
                table = pa.Table.from_batches([batch])
                table = table.filter(table.column("error").is_null())
                buffer.append(table)
                held += table.num_rows
                if held >= rows:
                    yield pa.concat_tables(buffer)
                    buffer, held = [], 0
    if held:
        yield pa.concat_tables(buffer)


def index_from_parquet(
    library: Library, dest: str, *, chunk_rows: int = CHUNK_ROWS, progress: bool = False
) -> IngestReport:
    """Add every tagged image of the shards in `dest` to `library`: rows, tags and vector index."""
    from autotag.library import IngestReport
    from autotag.progress import ProgressBar

    fs, files = shard_files(dest)
    meta = shard_meta(fs, files[0])
    if meta is None:
        raise AutotagError(f"{files[0]} is not a readable shard written by `autotag batch`; rewrite it")
    index = library.use_index(meta["encoder"], int(meta["dim"]))
    report = IngestReport()
    counts = []  # good rows per shard (failed images have no embedding)
    for path in files:
        table = _read(fs, path, ["path", "error"])
        bad = table.filter(table.column("error").is_valid())
        report.failed.extend(zip(bad.column("path").to_pylist(), bad.column("error").to_pylist(), strict=True))
        counts.append(table.num_rows - bad.num_rows)
    total = sum(counts)
    chunks: Iterator[pa.Table] = iter_chunks(fs, files, chunk_rows)
    sampled: set[str] = set()
    first = None
    if index.expect(total, library.kind):
        first = sample_rows(fs, files, counts, max(chunk_rows, 2 * IVFPQ_MIN_TRAIN))
        chunks = _chain([first], chunks)  # the sample goes in first and trains the quantisers

    with index.lock, ProgressBar(total if progress else 0, "indexing") as bar:
        for table in chunks:
            items = [item for item in _items(table, int(meta["dim"])) if item.content_hash not in sampled]
            library.add_items(items, meta["model"], report)
            if table is first:
                sampled.update(table.column("content_hash").to_pylist())
            bar.advance(table.num_rows)
        library.save()
    return report


def _chain(*parts: Any) -> Iterator[pa.Table]:
    for part in parts:
        yield from part


def _items(table: pa.Table, dim: int) -> list[Item]:
    """Rows of good images -> the Items the pipeline made of them (outputs only, no pixels)."""
    from autotag.pipeline import Item

    vectors = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, dim)
    names = set(table.schema.names) - {"embedding"}
    columns = {name: table.column(name).to_pylist() for name in COLUMNS if name in names}
    absent = [None] * table.num_rows
    facets = {name: columns.get(name, absent) for name in FACET_TYPES}
    for objects in facets["objects"]:  # a detector's object carries no source in its record (Detection.to_dict)
        for o in objects or ():
            if o.get("source") is None:
                o.pop("source", None)
    return [
        Item(
            columns["path"][row],
            content_hash=columns["content_hash"][row],
            meta={"width": columns["width"][row], "height": columns["height"][row]},
            phash=int(columns["phash"][row]),
            embedding=vectors[row],
            tags=[
                Tag(t["name"], float(t["score"]), t.get("id") or "", t.get("kind") or "leaf", t.get("detail") or "")
                for t in columns["tags"][row] or []
            ],
            **{name: values[row] for name, values in facets.items()},
        )
        for row in range(table.num_rows)
    ]
