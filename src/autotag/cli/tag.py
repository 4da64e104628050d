"""`autotag tag` and `autotag models`."""

from __future__ import annotations

from pathlib import Path

import typer

from autotag.cli.app import FORMAT_HELP, Format, command, emit, resolve_format
from autotag.types import AutotagError

# what a tag record keeps: the picture's identity, its tags and its facets, each in its own field
RECORD_KEYS = ("path", "content_hash", "tags", "objects", "object_counts", "colors", "style", "properties", "error")
BROADER = ("ancestor", "category")  # kinds shown dimmed: broader words beside the labels


def count_words(counts: dict[str, int]) -> list[str]:
    """{"person": 3, "cup": 1} -> ["group of people", "cup"]: people counted as people say it."""
    words = []
    for name, n in counts.items():
        if name == "person":
            words.append("1 person" if n == 1 else "2 people" if n == 2 else f"group of people ({n})")
        else:
            words.append(name if n == 1 else f"{n} x {name}")
    return words


def _facets_cell(row: dict) -> str:
    lines = []
    if row.get("object_counts"):
        lines.append("objects: " + ", ".join(count_words(row["object_counts"])))
    if row.get("colors"):
        swatches = " ".join(f"[{c['hex']}]\u25a0[/] {c['name']}" for c in row["colors"])
        lines.append(f"colours: {swatches}")
    facts = []
    if row.get("style"):
        facts.append(row["style"]["style"])
    if row.get("properties"):
        p = row["properties"]
        facts += [p["shape"], p["aspect_ratio"], p["resolution"]]
        facts += [p["tone"]] if p.get("tone") not in (None, "normal") else []
    if facts:
        lines.append(" \u00b7 ".join(facts))
    return "\n".join(lines)


def _chip(tag: dict) -> str:
    if tag["kind"] in BROADER:
        return f"[dim]{tag['name']} {tag['score']:.2f}[/dim]"
    detail = f" [dim]({tag['detail']})[/dim]" if tag.get("detail") else ""
    return f"[bold]{tag['name']}[/bold] {tag['score']:.2f}{detail}"


def _tags_table(rows: list[dict]):  # -> rich Table
    from rich.table import Table

    table = Table(show_lines=True)
    table.add_column("image", overflow="fold")
    table.add_column("tags")
    table.add_column("objects, colours, picture")
    names = [Path(row["path"]).name for row in rows]
    for row, name in zip(rows, names, strict=True):
        shown = name if names.count(name) == 1 else row["path"]  # compact: the file name when it is unique
        if row["error"]:
            table.add_row(shown, f"[red]error: {row['error']}[/red]", "")
            continue
        chips = ", ".join(_chip(t) for t in row["tags"])
        table.add_row(shown, chips or "[dim]not sure[/dim]", _facets_cell(row))
    return table


def csv_columns(row: dict) -> dict:
    """One flat row per picture for CSV: each facet in its own columns."""
    props = row.get("properties") or {}
    style = row.get("style") or {}
    return {
        "path": row["path"],
        "content_hash": row.get("content_hash") or "",
        "tags": ";".join(t["name"] for t in row.get("tags") or []),
        "tag_scores": ";".join(f"{t['score']:.4f}" for t in row.get("tags") or []),
        "objects": ";".join(f"{k}:{v}" for k, v in (row.get("object_counts") or {}).items()),
        "colors": ";".join(c["name"] for c in row.get("colors") or []),
        "color_shares": ";".join(f"{c['share']:.4f}" for c in row.get("colors") or []),
        "color_hex": ";".join(c["hex"] for c in row.get("colors") or []),
        "style": style.get("style", ""),
        **{key: props.get(key, "") for key in ("width", "height", "orientation", "shape", "aspect_ratio",
                                               "resolution", "tone")},
        "error": row.get("error") or "",
    }  # fmt: skip


@command(
    "tag",
    help="Tag images: files, folders (recursive), globs, http(s):// URLs, or - for paths on stdin.\n\n"
    "Example: autotag tag photos/ --format jsonl > tags.jsonl",
)
def tag_command(
    paths: list[str] = typer.Argument(
        ..., help="Image files, folders, globs, URLs, or - to read paths from stdin."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Encoder name (see `autotag models`) or model folder."
    ),
    top_k: int | None = typer.Option(
        None, "--top-k", min=1, help="At most this many labels and objects per image (default: the top_k setting, 5)."
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", min=0.0, max=1.0, help="Drop tags scoring below this (default: the threshold setting)."
    ),
    max_tags: int = typer.Option(15, "--max-tags", min=1, help="At most this many tags in all."),
    no_categories: bool = typer.Option(
        False, "--no-categories", "--no-ancestors", help="Only labels and objects, no categories (animal, plant, ...)."
    ),
    no_objects: bool = typer.Option(
        False, "--no-objects", help="No object detector (faster): the classifier's tags through the same vocabulary."
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
    xmp_colors: bool = typer.Option(
        False, "--xmp-colors", help="With --write-xmp: also write the dominant colour names as keywords."
    ),
    db: str | None = typer.Option(
        None, "--db", help="Also give this library's learned tags (`autotag tags`); the images are not added to it."
    ),
) -> None:
    from autotag.ingest import discover
    from autotag.pipeline import Tagger, TagOptions
    from autotag.usertags import parse_user_tags

    files = discover(paths)
    tagger = Tagger.load(model, batch_size=batch_size, workers=workers, max_pixels=max_pixels, top_k=top_k,
                         threshold=threshold, objects=False if no_objects else None)  # fmt: skip
    settings = tagger.settings  # the flags over AUTOTAG_* over the config file over the defaults
    options = TagOptions(settings.top_k, settings.threshold, not no_categories, max_tags)
    tags = parse_user_tags(user_tags) or None
    if tags and tagger.model is not None and not tagger.model.needs_user_tags:
        typer.echo("autotag: warning: this model was trained without user tags, so --user-tags changes nothing; "
                   "train with a dataset that has user tags to use them", err=True)
    elif tags and tagger.model is None:
        typer.echo("autotag: warning: the default model does not read user tags (`autotag audit` checks them)",
                   err=True)
    failed = 0
    learned = {}
    if db is not None:
        from autotag.library import Library

        with Library.open(db, create=False) as library:
            learned = library.learned_models()

    def records():
        nonlocal failed
        for pred in tagger.tag_many(files, user_tags=tags, options=options, progress=len(files) > 20):
            if learned and pred.error is None:
                from autotag.heads.learned_tag import learned_tags

                pred.tags = [*pred.tags, *learned_tags(learned, pred.embedding[None])[0]]
            if pred.error:
                failed += 1
                typer.echo(f"autotag: {pred.path}: {pred.error}", err=True)
            elif write_xmp or sidecar:
                from autotag.keywords import write_keywords

                words = [t.name for t in pred.tags] + ([c.name for c in pred.colors or []] if xmp_colors else [])
                try:
                    write_keywords(pred.path, words, sidecar=sidecar, replace=replace_keywords)
                except AutotagError as exc:
                    failed += 1
                    typer.echo(f"autotag: {exc}", err=True)
            yield {k: v for k, v in pred.to_dict().items() if k in RECORD_KEYS}

    emit(records(), resolve_format(fmt), table=_tags_table, flat=csv_columns)
    if failed:
        typer.echo(f"autotag: {failed} of {len(files)} images failed", err=True)
        raise typer.Exit(1)


@command("models", help="List the registered encoders: which is the default, input size, parameters, speed "
         "(relative to efficientnet_lite0), file size, embedding size, label set, and what `autotag train` can "
         "do with each.\n\nExample: autotag models")
def models_command(fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP)) -> None:
    from autotag.config import load_settings
    from autotag.encoders import ENCODERS

    default = load_settings().model
    emit(({"name": name, "default": name == default, "input_size": e.spec.input_size,
           "params_m": e.spec.params_m, "speed": e.spec.relative_speed, "size_mb": e.spec.size_mb,
           "embedding_dim": e.spec.embedding_dim, "labels": e.spec.label_set,
           "training": "heads, fine-tuning" if e.trainable else "heads only"}
          for name, e in ENCODERS.items()), resolve_format(fmt), table=_models_table)


def _models_table(rows: list[dict]):  # -> rich Table
    from rich.table import Table

    t = Table(caption="speed: images/s relative to efficientnet_lite0 on the same CPU (BENCHMARKS.md)")
    for column in ("", "name", "input", "parameters", "speed", "size", "labels", "training"):
        t.add_column(column, justify="right" if column in ("input", "parameters", "speed", "size") else "left")
    for r in rows:
        t.add_row("default" if r["default"] else "", r["name"], f"{r['input_size']} px",
                  f"{r['params_m']:.2f} M" if r["params_m"] else "", f"{r['speed']:.2f}x" if r["speed"] else "",
                  f"{r['size_mb']:.1f} MB" if r["size_mb"] else "", r["labels"], r["training"])
    return t
