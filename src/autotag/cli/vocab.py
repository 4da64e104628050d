"""`autotag vocab map`, `autotag hashtags` and `autotag audit`: thin wrappers over autotag.taxonomy."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

from autotag.cli.app import FORMAT_HELP, Format, app, command, emit, fail, resolve_format
from autotag.types import AutotagError

vocab_app = typer.Typer(help="Target vocabularies: map a label set onto your own tags. Example: autotag vocab map "
                        "--target hashtags.yaml --out mapping/", no_args_is_help=True)  # fmt: skip
app.add_typer(vocab_app, name="vocab")


def _vocab_command(name: str, **kwargs: Any) -> Callable:
    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def run(*a: Any, **kw: Any) -> Any:
            try:
                return func(*a, **kw)
            except AutotagError as exc:
                fail(str(exc))

        vocab_app.command(name, **kwargs)(run)
        return func

    return wrap


@_vocab_command(
    "map",
    help="Map a source label set onto a target vocabulary; writes mapping.json and review.yaml.\n\n"
    "Example: autotag vocab map --target hashtags.yaml --source imagenet --out mapping/",
)
def vocab_map_command(
    target: str = typer.Option(
        "hashtags", "--target", "-t", help="Vocabulary YAML/TOML file ('hashtags': the shipped one)."
    ),
    source: str = typer.Option(
        "imagenet", "--source", "-s", help="'imagenet', a trained model folder, or a labels file."
    ),
    overrides: str | None = typer.Option(
        None, "--overrides", help="Manual decisions (or an edited review.yaml); they win."
    ),
    out: str = typer.Option(..., "--out", "-o", help="Folder for mapping.json and review.yaml."),
    no_text: bool = typer.Option(False, "--no-text", help="Skip text-embedding similarity (WordNet only)."),
    fit: str | None = typer.Option(
        None, "--fit", help="Labelled pictures (a dataset spec, e.g. realphotos:DIR) to fit the operating points on."
    ),
) -> None:
    from autotag.taxonomy.mapping import map_vocabulary, write_mapping

    mapping = map_vocabulary(target, source, overrides, use_text=not no_text)
    paths = write_mapping(mapping, out)
    if str(source).lower() == "imagenet":  # the default model speaks through the consumer vocabulary
        paths = _consumer_mapping(target, mapping, out, fit)
    counts = mapping.counts()
    typer.echo(
        f"{len(mapping.entries)} {source} labels -> {len(mapping.tag_names)} tags: {counts['mapped']} mapped, "
        f"{counts['override']} by override, {counts['ambiguous']} ambiguous, {counts['unmapped']} unmapped "
        f"({counts['in_other']} in '{mapping.other}')"
    )
    typer.echo(
        f"wrote {paths['mapping']} and {paths['review']} (edit it, mark entries 'reviewed', pass it as --overrides)"
    )


def _consumer_mapping(target: str, classes: Any, out: str, fit: str | None) -> dict[str, Any]:
    """Write mapping.json over the consumer vocabulary and fitted operating points; warn about dead tags."""
    import json
    from pathlib import Path

    from autotag.read import ART_STYLES
    from autotag.suggest.hashtags import fit_vocabulary
    from autotag.taxonomy.consumer import default_consumer
    from autotag.taxonomy.mapping import map_onto_consumer
    from autotag.taxonomy.vocabulary import load_vocabulary

    vocab = load_vocabulary(target)
    mapping = map_onto_consumer(vocab, default_consumer(), classes, ART_STYLES)
    for line in mapping.warnings():
        typer.echo(f"warning: {line}", err=True)
    folder = Path(out)
    paths = {"mapping": folder / "mapping.json", "review": folder / "review.yaml",
             "points": folder / "operating_points.json"}  # fmt: skip
    paths["mapping"].write_text(json.dumps(mapping.to_dict(), indent=1) + "\n")
    fit_vocabulary(mapping, vocab, fit).save(paths["points"])
    typer.echo(f"wrote {paths['points']}: operating points " + (f"fitted on {fit}" if fit else
               "from the shipped hashtags' fit (pass --fit labelled pictures to fit your own)"))  # fmt: skip
    return paths


def _hashtags_table(rows: list[dict]):  # -> rich Table
    from rich.table import Table

    table = Table(show_lines=True)
    table.add_column("image", overflow="fold")
    table.add_column("hashtags")
    for row in rows:
        if row["error"]:
            table.add_row(row["path"], f"[red]error: {row['error']}[/red]")
        elif row.get("out_of_domain"):
            table.add_row(row["path"], "[dim](out of domain: no suggestion)[/dim]")
        else:
            chips = [f"[bold]#{t['name']}[/bold] {t['score']:.2f}" for t in row["tags"]]
            table.add_row(row["path"], ", ".join(chips) or "[dim](not sure enough: no suggestion)[/dim]")
    return table


@command(
    "hashtags",
    help="Suggest popular photo hashtags, only when sure (an empty list means no confident suggestion).\n\n"
    "Example: autotag hashtags photos/ --format table",
)
def hashtags_command(
    paths: list[str] = typer.Argument(..., help="Image files, folders, globs, or - to read paths from stdin."),
    mapping: str | None = typer.Option(
        None, "--mapping", help="A mapping.json from `autotag vocab map` (default: shipped)."
    ),
    operating_points: str | None = typer.Option(None, "--operating-points", help="Thresholds JSON for --mapping."),
    fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
) -> None:
    from autotag.ingest import discover
    from autotag.pipeline import Tagger
    from autotag.suggest.hashtags import HashtagSuggester, iter_hashtags

    files = discover(paths)
    suggester = HashtagSuggester.from_files(mapping, operating_points) if mapping else None
    failed = 0

    def records():
        nonlocal failed
        for row in iter_hashtags(files, tagger=Tagger.default(), suggester=suggester):
            if row["error"]:
                failed += 1
                typer.echo(f"autotag: {row['path']}: {row['error']}", err=True)
            yield row

    emit(records(), resolve_format(fmt), table=_hashtags_table)
    if failed:
        typer.echo(f"autotag: {failed} of {len(files)} images failed", err=True)
        raise typer.Exit(1)


@command(
    "audit",
    help="Score how well each user-typed tag fits an image and flag the ones that do not.\n\n"
    'Example: autotag audit cat.jpg --user-tags "cat, car, instagood"',
)
def audit_command(
    image: str = typer.Argument(..., help="One image file."),
    user_tags: str = typer.Option(..., "--user-tags", "-u", help="Comma-separated tags typed by the uploader."),
    flag_below: float | None = typer.Option(
        None, "--flag-below", min=0.0, max=1.0, help="Flag tags whose relevance is below this (default: fitted)."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="A trained model folder (default: ImageNet)."),
    fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
) -> None:
    from autotag.pipeline import Tagger
    from autotag.suggest.audit import audit_user_tags

    results = audit_user_tags(image, user_tags, flag_below=flag_below, tagger=Tagger.load(model) if model else None)
    emit(({"path": image, **a.to_dict()} for a in results), resolve_format(fmt))
