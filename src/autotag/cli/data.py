"""`autotag eval`, `autotag embed` and `autotag mosaic`: thin wrappers over autotag.evaluate and autotag.data."""

from __future__ import annotations

from pathlib import Path

import typer

from autotag.cli.app import ADVANCED, FORMAT_HELP, Format, command, emit, resolve_format

DATASET_HELP = (
    "Dataset spec: manifest:FILE.csv|jsonl, folder:DIR, coco:ANN.json[:IMAGES], nus-wide:DIR, "
    "danbooru:FILE.jsonl, fashion-mnist[:DIR], fashion-mosaic:DIR, realphotos[:DIR] (scored on the tags shown: "
    "hit@5, precision, coverage, wrong-rate, jargon), or a path to a manifest."
)


@command(
    "eval",
    help="Evaluate models on a labelled dataset; print the metric table and write a report folder "
    "(metrics.json, report.md, plots, example gallery).\n\n"
    "Example: autotag eval --model default --dataset fashion-mnist --split test --limit 1000 --out reports/fm",
)
def eval_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help=DATASET_HELP),
    model: list[str] = typer.Option(
        ["default"],
        "--model",
        "-m",
        help="'default' (ImageNet model via a label mapping) or a model folder; repeat to compare.",
    ),
    rule: list[str] = typer.Option(
        [],
        "--rule",
        "-r",
        help="Decision rule, repeat to compare: argmax, threshold:T, top-k:K, oracle-k, model (a trained model's "
        "stored rule), ... (default: per dataset; an unknown name lists every rule).",
    ),  # fmt: skip
    split: str | None = typer.Option("test", "--split", "-s", help="Split to evaluate; 'all' for every record."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Evaluate a seeded random sample of N images."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample and of the gallery."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Report folder to write."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or fill the embedding cache."),
    fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
) -> None:
    from autotag.data import load_dataset
    from autotag.evaluate import evaluate, evaluate_shown_tags, is_shown_tags_benchmark
    from autotag.report import write_report

    data = load_dataset(dataset)
    if split and split != "all":
        data = data.split(split)
    if is_shown_tags_benchmark(data):  # the real-photo benchmark: scored on what a person sees
        if rule:
            typer.echo("note: --rule does not apply to the real-photo benchmark (the tags shown are scored)", err=True)
        rows = evaluate_shown_tags(data, model, limit=limit, seed=seed, progress=True)
        if out is not None:
            import json

            out.mkdir(parents=True, exist_ok=True)
            (out / "shown_tags.json").write_text(json.dumps(rows, indent=1) + "\n")
            typer.echo(f"report written to {out}/shown_tags.json", err=True)
        emit(rows, resolve_format(fmt))
        return
    result = evaluate(data, model, rule or None, limit=limit, seed=seed, cache=not no_cache, progress=True)
    for note in result.info.get("skipped", []):
        typer.echo(f"autotag: note: {note}", err=True)
    if out is not None:
        write_report(result, out, seed=seed)
        typer.echo(f"report written to {out}/report.md", err=True)
    if result.errors:
        typer.echo(f"{len(result.errors)} unreadable images skipped", err=True)
    emit(result.table(), resolve_format(fmt))


@command(
    "embed",
    help="Compute and cache the embeddings of every image of a dataset, so training and evaluation reuse them.\n\n"
    "Example: autotag embed fashion-mosaic:.cache/fashion-mosaic --split train",
    rich_help_panel=ADVANCED,
)
def embed_command(
    dataset: str = typer.Argument(..., help=DATASET_HELP),
    model: str | None = typer.Option(None, "--model", "-m", help="Encoder name (default: the configured one)."),
    split: str | None = typer.Option(None, "--split", "-s", help="Only this split."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Only a seeded random sample of N images."),
    fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
) -> None:
    from autotag.data import load_dataset
    from autotag.evaluate import write_embeddings

    data = load_dataset(dataset)
    if split:
        data = data.split(split)
    if limit:
        data = data.subset(limit)
    emit([write_embeddings(data, model, progress=True)], resolve_format(fmt))


@command(
    "mosaic",
    help="Write the FashionMosaic multi-label benchmark (images + manifest.jsonl) built from Fashion-MNIST.\n\n"
    "Example: autotag mosaic --out data/fashion-mosaic   (standard: 20k/5k/5k, seed 0)",
    rich_help_panel=ADVANCED,
)
def mosaic_command(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write."),
    n_train: int = typer.Option(20_000, "--train", min=0, help="Training images."),
    n_val: int = typer.Option(5_000, "--val", min=0, help="Validation images."),
    n_test: int = typer.Option(5_000, "--test", min=0, help="Test images."),
    seed: int = typer.Option(0, "--seed"),
    grid: int = typer.Option(2, "--grid", min=1, help="Cells per side."),
    max_items: int = typer.Option(4, "--max-items", min=1, help="Most garments per image."),
    p_mention: float = typer.Option(0.5, "--p-mention", min=0, max=1, help="Chance a true class is tagged."),
    wrong_rate: float = typer.Option(1.0, "--wrong-rate", min=0, help="Mean wrong user tags per image."),
    source: Path | None = typer.Option(None, "--fashion-mnist", help="Folder of the Fashion-MNIST idx files."),
) -> None:
    from autotag.data import write_fashion_mosaic

    folder = write_fashion_mosaic(
        out, n_train, n_val, n_test, seed, fashion_mnist_dir=source, progress=True,
        grid=grid, max_items=max_items, p_mention=p_mention, wrong_rate=wrong_rate,
    )  # fmt: skip
    typer.echo(f"FashionMosaic written to {folder} (manifest.jsonl, labels.txt, mosaic.json)")
