"""`autotag tag` and `autotag models`."""

from __future__ import annotations

import typer

from autotag.cli.app import FORMAT_HELP, Format, command, emit, resolve_format
from autotag.types import AutotagError


def _tags_table(rows: list[dict]):  # -> rich Table
    from rich.table import Table

    table = Table(show_lines=True)
    table.add_column("image", overflow="fold")
    table.add_column("tags")
    for row in rows:
        if row["error"]:
            table.add_row(row["path"], f"[red]error: {row['error']}[/red]")
            continue
        chips = [
            f"[bold]{t['name']}[/bold] {t['score']:.2f}"
            if t["kind"] != "ancestor"
            else f"[dim]{t['name']} {t['score']:.2f}[/dim]"
            for t in row["tags"]
        ]
        table.add_row(row["path"], ", ".join(chips) or "[dim](none above threshold)[/dim]")
    return table


@command(
    "tag",
    help="Tag images: files, folders (recursive), globs, or - for paths on stdin.\n\n"
    "Example: autotag tag photos/ --format jsonl > tags.jsonl",
)
def tag_command(
    paths: list[str] = typer.Argument(
        ..., help="Image files, folders, globs, or - to read paths from stdin."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Encoder name (see `autotag models`) or model folder."
    ),
    top_k: int | None = typer.Option(
        None, "--top-k", min=1, help="At most this many labels per image (default: the top_k setting, 5)."
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", min=0.0, max=1.0, help="Drop labels scoring below this (default: the threshold setting)."
    ),
    ancestor_threshold: float = typer.Option(
        0.3, help="Minimum summed probability for a WordNet ancestor tag."
    ),
    max_tags: int = typer.Option(15, "--max-tags", min=1, help="At most this many tags in all."),
    no_ancestors: bool = typer.Option(
        False, "--no-ancestors", help="Only leaf labels, no WordNet ancestors."
    ),
    user_tags: str | None = typer.Option(
        None, "--user-tags", help="Tags typed by the uploader, separated by commas or semicolons."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Images per encoder batch."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Decoding threads."),
    max_pixels: int | None = typer.Option(
        None, "--max-pixels", min=1, help="Refuse images above this many pixels."
    ),
    fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    write_xmp: bool = typer.Option(
        False, "--write-xmp", help="Write the tags into each file as XMP dc:subject + IPTC Keywords."
    ),
    sidecar: bool = typer.Option(False, "--sidecar", help="With --write-xmp: write photo.jpg.xmp instead."),
    replace_keywords: bool = typer.Option(
        False, "--replace-keywords", help="With --write-xmp: drop the file's existing keywords."
    ),
) -> None:
    from autotag.ingest import discover
    from autotag.pipeline import Tagger, TagOptions
    from autotag.usertags import parse_user_tags

    files = discover(paths)
    tagger = Tagger.load(model, batch_size=batch_size, workers=workers, max_pixels=max_pixels, top_k=top_k,
                         threshold=threshold)
    settings = tagger.settings  # the flags over AUTOTAG_* over the config file over the defaults
    options = TagOptions(settings.top_k, settings.threshold, not no_ancestors, ancestor_threshold, max_tags)
    tags = parse_user_tags(user_tags) or None
    failed = 0

    def records():
        nonlocal failed
        for pred in tagger.tag_many(files, user_tags=tags, options=options, progress=len(files) > 20):
            if pred.error:
                failed += 1
                typer.echo(f"autotag: {pred.path}: {pred.error}", err=True)
            elif write_xmp or sidecar:
                from autotag.keywords import write_keywords

                try:
                    write_keywords(pred.path, [t.name for t in pred.tags], sidecar=sidecar, replace=replace_keywords)
                except AutotagError as exc:
                    failed += 1
                    typer.echo(f"autotag: {exc}", err=True)
            yield {k: v for k, v in pred.to_dict().items() if k in ("path", "content_hash", "tags", "error")}

    emit(records(), resolve_format(fmt), table=_tags_table)
    if failed:
        typer.echo(f"autotag: {failed} of {len(files)} images failed", err=True)
        raise typer.Exit(1)


@command("models", help="List the registered encoders: input size, embedding size, label set, and what "
         "`autotag train` can do with each.\n\nExample: autotag models")
def models_command(fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP)) -> None:
    from autotag.encoders import ENCODERS

    emit(({"name": name, "input_size": e.spec.input_size, "embedding_dim": e.spec.embedding_dim,
           "labels": e.spec.label_set, "training": "heads, fine-tuning" if e.trainable else "heads only"}
          for name, e in ENCODERS.items()), resolve_format(fmt))
