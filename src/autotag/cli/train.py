"""`autotag train`: a thin wrapper over autotag.train.train_model."""

from __future__ import annotations

from pathlib import Path

import typer

from autotag.cli.app import command

DATASET_HELP = (
    "Dataset spec: manifest:FILE.csv|jsonl, folder:DIR, coco:ANN.json[:IMAGES], fashion-mnist[:DIR], "
    "fashion-mosaic:DIR, ... or a path to a manifest. Splits named train/val/test are used when present."
)


@command(
    "train",
    help="Train a tagger for your own labels (image heads + user-tag head + fusion + label count) and write "
    "a model folder: config.json, model.safetensors, labels.json, thresholds.json, curves.png, metrics.json.\n\n"
    "Example: autotag train --dataset fashion-mosaic:data/mosaic --out runs/mosaic --config train.toml",
)
def train_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help=DATASET_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write (e.g. runs/NAME)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML file of training settings "
                                       "(keys of autotag.train.TrainConfig, e.g. pool_grid = 2, epochs = 40)."),
    finetune: bool = typer.Option(False, "--finetune", help="Fine-tune the backbone first (slow on a CPU)."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="At most N images per split (quick runs)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default 0)."),
) -> None:
    from autotag.train import TrainConfig, train_model

    cfg = TrainConfig.from_toml(config, limit=limit, seed=seed)
    folder = train_model(dataset, out, cfg, finetune=finetune, log=lambda s: typer.echo(s, err=True))
    typer.echo(str(folder))
