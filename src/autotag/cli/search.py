"""`autotag index`, `autotag images`, `autotag similar`, `autotag duplicates`, `autotag map`: thin calls into
autotag.library.Library."""

from __future__ import annotations

from pathlib import Path

import typer

from autotag.cli.app import DB_HELP, FORMAT_HELP, Format, command, emit, fail, resolve_format

MODEL_HELP = "Encoder name (see `autotag models`) or model folder; must match the one the index was built with."


def _open(db: str | None, model: str | None = None, kind: str = "auto", *, create: bool = False):
    """The library (autotag.library.Library); only `index` may create one."""
    from autotag.library import Library

    return Library.open(db, model=model, kind=kind, create=create)


@command(
    "index",
    help="Add images to a library's similar-image index (already indexed content is skipped).\n\n"
    "Example: autotag index photos/ --db library.db\n\n"
    "From `autotag batch` shards: autotag index --from-parquet tags/ --db library.db",
)
def index_command(
    paths: list[str] | None = typer.Argument(None, help="Image files, folders, globs, or - to read paths from stdin."),
    from_parquet: str | None = typer.Option(
        None, "--from-parquet", help="Index the shards `autotag batch --out` wrote here instead of PATHS."
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    model: str | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    kind: str = typer.Option("auto", "--kind", help="Index kind: auto (by size), exact, hnsw or ivfpq."),
    head: Path | None = typer.Option(None, "--head", help="Retrieval-head folder to use for similar-search."),
    fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
) -> None:
    from autotag.index.vector import check_kind
    from autotag.ingest import discover

    check_kind(kind)
    if from_parquet is not None:
        if paths or model or head:
            fail("--from-parquet takes no PATHS, --model or --head: the shards fix the images and the encoder")
        from autotag.distributed.index import index_from_parquet

        with _open(db, kind=kind, create=True) as library:
            report = index_from_parquet(library, from_parquet, progress=True)
    else:
        if not paths:
            fail("give image PATHS to index, or --from-parquet DEST")
        with _open(db, model, kind, create=True) as library:
            report = library.ingest(discover(paths), head=head, progress=True)
    for path, error in report.failed:
        typer.echo(f"autotag: {path}: {error}", err=True)
    for path, image_id in report.skipped_files:
        typer.echo(f"autotag: {path}: already in the library as image {image_id} (same content)", err=True)
    emit([report.to_dict()], resolve_format(fmt))


@command(
    "images",
    help="List a library's images by tag, colour, style and object (every one given must match), newest first.\n\n"
    "Example: autotag images --db library.db --color blue --style photo --object person",
)
def images_command(
    tag: str | None = typer.Option(None, "--tag", "-t", help="A tag (predicted, typed or added)."),
    color: str | None = typer.Option(None, "--color", "--colour", help="A dominant colour: red, blue, ..."),
    style: str | None = typer.Option(None, "--style", help="photo, art, or an art style: abstract, illustration, ..."),
    obj: str | None = typer.Option(None, "--object", help="A detected object: person, cup, car, ..."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many images."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many matches first (paging)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
) -> None:
    with _open(db) as library:
        found, total = library.find(tag=tag, color=color, style=style, object=obj, limit=limit, offset=offset)
        rows = [library.describe(image) for image in found]
    fmt = resolve_format(fmt)
    if fmt in (Format.table, Format.csv):
        rows = [_image_row(r) for r in rows]
    emit(rows, fmt)
    typer.echo(f"{len(rows)} of {total} matching images", err=True)


def _image_row(record: dict) -> dict:
    style = record.get("style") or {}
    return {
        "id": record["id"],
        "path": record["path"],
        "tags": ", ".join(t["name"] for t in record["tags"]),
        "objects": ", ".join(f"{k} x{v}" if v > 1 else k for k, v in (record.get("object_counts") or {}).items()),
        "colors": ", ".join(c["name"] for c in record.get("colors") or []),
        "style": style.get("style", ""),
    }


@command(
    "similar",
    help="Find the library images most similar to an image (which need not be in the library).\n\n"
    "Example: autotag similar cat.jpg -k 10 --db library.db",
)
def similar_command(
    image: str = typer.Argument(..., help="Query image: a file path or URL."),
    k: int = typer.Option(10, "-k", "--k", min=1, help="How many similar images."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    model: str | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
) -> None:
    with _open(db, model) as library:
        hits = library.similar(image, k)
    rows = [{"id": h.image.id, "path": h.image.source, "similarity": round(h.score, 6)} for h in hits]
    emit(rows, resolve_format(fmt))


@command(
    "duplicates",
    help="Groups of near-duplicate images in a library (re-encodes, resizes, crops, small edits).\n\n"
    "Example: autotag duplicates --db library.db --threshold 0.85 --format json",
)
def duplicates_command(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    threshold: float | None = typer.Option(
        None, "--threshold", "-t", min=0.01, max=1.0,
        help="Cosine similarity at which the embedding alone makes a duplicate (default 0.84).",
    ),
    model: str | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
) -> None:
    from autotag.index.duplicates import DEFAULT_THRESHOLD

    with _open(db, model) as library:
        groups = library.duplicates(threshold or DEFAULT_THRESHOLD)
        indexed = len(library.index)
    fmt = resolve_format(fmt)
    if not groups and fmt is Format.table:  # an empty table is a blank line: say what was looked at
        typer.echo(f"no duplicates among {indexed} images")
        return
    if fmt in (Format.table, Format.csv):
        rows = []
        for number, group in enumerate(groups, 1):  # exact copies (same bytes) come first
            best: dict[int, float] = {}
            for pair in group["pairs"]:
                sim = pair["similarity"] if pair["similarity"] is not None else 1.0
                for i in (pair["a"], pair["b"]):
                    best[i] = max(best.get(i, 0.0), sim)
            rows.extend(
                {"group": number, "id": im["id"], "path": im["path"],
                 "similarity": "same bytes" if group["exact"] else round(best.get(im["id"], 1.0), 4)}
                for im in group["images"]
            )
        emit(rows, fmt)
    else:
        emit(groups, fmt)


@command(
    "map",
    help="Draw a 2-D map (t-SNE) of a library: an HTML page with thumbnails on hover, optionally a PNG.\n\n"
    "Example: autotag map --db library.db --out map.html --png map.png",
)
def map_command(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    out: Path = typer.Option(Path("map.html"), "--out", "-o", help="HTML file to write."),
    png: Path | None = typer.Option(None, "--png", help="Also write a PNG coloured by top tag."),
    limit: int = typer.Option(5000, "--limit", min=2, help="Map at most this many images (a seeded sample)."),
    model: str | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
) -> None:
    with _open(db, model) as library:
        info = library.map(out, out_png=png, limit=limit)
    typer.echo(f"wrote {info['html']}" + (f" and {info['png']}" if info["png"] else "") + f" ({info['images']} images)")
