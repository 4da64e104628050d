"""`autotag batch`: tag a large collection into Parquet shards, locally or on a Ray cluster."""

from __future__ import annotations

import typer

from autotag.cli.app import FORMAT_HELP, Format, command, emit, resolve_format


@command(
    "batch",
    help="Tag a collection into Parquet shards (path, hash, tags, objects, colors, style, properties, embedding) "
    "plus _summary.json. "
    "Finished shards are skipped on a rerun; a bad image is recorded, never fatal.\n\n"
    "Example: autotag batch photos/ --out tags/ --engine ray",
)
def batch_command(
    sources: list[str] = typer.Argument(
        ...,
        metavar="SOURCE",
        help="Folders, globs, image paths/URIs (fsspec), or a manifest (.csv/.jsonl/.parquet, `path` column)."
    ),
    out: str = typer.Option(..., "--out", "-o", help="Folder or fsspec URI for the shards."),
    engine: str = typer.Option("local", "--engine", "-e", help="local (this process) or ray."),
    model: str | None = typer.Option(None, "--model", "-m", help="Encoder name (`autotag models`) or model folder."),
    shard_size: int = typer.Option(1000, "--shard-size", min=1, help="Images per shard (the unit of resume)."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Images per encoder batch (default: the batch_size setting)."
    ),
    top_k: int | None = typer.Option(
        None, "--top-k", min=1, help="At most this many labels per image (default: the top_k setting, 5)."
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", min=0.0, max=1.0, help="Drop labels scoring below this (default: the threshold setting)."
    ),
    no_objects: bool = typer.Option(False, "--no-objects", help="Run no object detector (faster)."),
    actors: int | None = typer.Option(None, "--actors", min=1, help="Model actors for --engine ray (default: 1/CPU)."),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster to join, e.g. auto or ray://head:10001 (default: RAY_ADDRESS, else local)."
    ),
    db: str | None = typer.Option(None, "--db", help="Also give this library's learned tags (`autotag tags`)."),
    fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
) -> None:
    from autotag.distributed import BatchJob, run_batch

    learned: tuple[str, ...] = ()
    if db is not None:
        from autotag.library import Library

        with Library.open(db, create=False) as library:
            learned = tuple(doc for _, doc in library.store.learned_models().values())
    job = BatchJob(model=model, top_k=top_k, threshold=threshold, shard_size=shard_size, batch_size=batch_size,
                   objects=False if no_objects else None, learned=learned)  # fmt: skip
    summary = run_batch(sources, out, engine=engine, job=job, actors=actors, address=address)
    for failure in summary["failures"]:
        typer.echo(f"autotag: {failure['path']}: {failure['error']}", err=True)
    emit([{k: v for k, v in summary.items() if k != "failures"}], resolve_format(fmt))
    if summary["failed"]:  # one rule with `autotag tag`: every image is processed, any failure exits 1
        typer.echo(f"autotag: {summary['failed']} of {summary['images']} images failed (recorded in the shards)",
                   err=True)
        raise typer.Exit(1)
