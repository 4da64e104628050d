"""`autotag teach`, `autotag tags` and `autotag forget-tag`: tags a library learns from its owner's
examples, thin calls into autotag.library.Library."""

from __future__ import annotations

from pathlib import Path

import typer

from autotag.cli.app import DB_HELP, FORMAT_HELP, Format, command, emit, fail, resolve_format


def _image(arg: str) -> str | int:
    """A library id ("42") unless a file of that name exists; else a path or URL."""
    return int(arg) if arg.isdigit() and not Path(arg).exists() else arg


def _hits_table(title: str):
    def table(rows: list[dict]):  # -> rich Table
        from rich.table import Table

        t = Table(title=title)
        for column in ("id", "score", "path"):
            t.add_column(column, justify="right" if column != "path" else "left", overflow="fold")
        for r in rows:
            t.add_row(str(r["id"]), f"{r['score']:.3f}", r["path"])
        return t

    return table


@command(
    "teach",
    help="Teach a library a tag by example: the pictures that show it (paths or library ids) and, with --not, "
    "pictures that do not. The tag's model is retrained on every change and tags the library, new images "
    "included; prints the images that now carry it, best first, and names the ones to judge next.\n\n"
    "Example: autotag teach sky beach.jpg 12 40 --db library.db --not 17 33",
)
def teach_command(
    tag: str = typer.Argument(..., help="The tag, e.g. sky, or \"my cat Shrek\"."),
    images: list[str] | None = typer.Argument(None, help="Example pictures: paths, URLs or library ids."),
    not_: list[str] | None = typer.Option(
        None, "--not", help="Pictures that are NOT the tag (paths or ids); everything after --not up to the next "
        "option."
    ),  # fmt: skip
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    suggest: int = typer.Option(8, "--suggest", min=0, help="Name this many pictures to judge next."),
    limit: int = typer.Option(0, "--limit", min=0, help="Print at most this many images (0: all)."),
    fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
) -> None:
    from autotag.library import Library

    if not images and not not_:
        fail(f"give example pictures of {tag!r} (paths or library ids), or --not PICTURES that are not it")
    with Library.open(db, create=False) as library:
        taught = library.teach(tag, [_image(a) for a in images or []], [_image(a) for a in not_ or []],
                               suggestions=suggest)  # fmt: skip
    result = taught.to_dict()
    rows = result["images"][: limit or None]
    typer.echo(
        f"{result['tag']}: {result['summary']} (version {result['version']}); {len(result['images'])} images "
        "carry it" + (f", precision about {result['estimated_precision']:.0%}" if result["estimated_precision"]
                      else " (cautious threshold: teach more examples or judge the suggestions)"),
        err=True,
    )  # fmt: skip
    if result["suggestions"]:
        ids = " ".join(str(h["id"]) for h in result["suggestions"])
        typer.echo(f"judge next (least sure first): {ids}  ->  autotag teach {tag!r} IDS... / --not IDS...",
                   err=True)  # fmt: skip
    emit(rows, resolve_format(fmt), table=_hits_table(f"images tagged {result['tag']!r}, best first"))


@command(
    "tags",
    help="List the tags a library has learned by example, with their example and rejection counts.\n\n"
    "Example: autotag tags --db library.db",
)
def tags_command(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
) -> None:
    from autotag.library import Library

    with Library.open(db, create=False) as library:
        counts = library.store.learned_counts()
        rows = [
            {"name": t.name, "examples": len(t.examples), "rejections": len(t.rejections),
             "images": counts.get(t.name, 0), "version": t.version,
             "updated_at": t.updated_at.isoformat(timespec="seconds") if t.updated_at else None}
            for t in library.learned_tags()
        ]  # fmt: skip
    if not rows:
        typer.echo("no learned tags yet; teach one: autotag teach TAG PHOTO... --db LIB", err=True)
    emit(rows, resolve_format(fmt))


@command(
    "forget-tag",
    help="Forget a learned tag: its examples, models and the tag on every image (the images stay).\n\n"
    "Example: autotag forget-tag sky --db library.db",
)
def forget_tag_command(
    tag: str = typer.Argument(..., help="A learned tag (see `autotag tags`)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    from autotag.library import Library

    with Library.open(db, create=False) as library:
        library.forget_tag(tag)
    typer.echo(f"forgot the learned tag {tag!r}; the images stay", err=True)
