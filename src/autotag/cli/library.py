"""Library commands: `autotag refit` (learn thresholds from the feedback people gave)."""

from __future__ import annotations

import typer

from autotag.cli.app import DB_HELP, FORMAT_HELP, Format, command, emit, resolve_format


def _changes_table(rows: list[dict]):  # -> rich Table
    from rich.table import Table

    table = Table()
    for column in ("tag", "accepted", "rejected", "old threshold", "new threshold", "precision before", "after"):
        table.add_column(column)

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    for row in rows:
        moved = row["new_threshold"] != row["old_threshold"]
        new = f"[bold]{row['new_threshold']:.4f}[/bold]" if moved else f"{row['new_threshold']:.4f}"
        table.add_row(
            row["tag"], str(row["accepted"]), str(row["rejected"]), f"{row['old_threshold']:.4f}", new,
            pct(row["precision_before"]), pct(row["precision_after"]),
        )  # fmt: skip
    return table


@command(
    "refit",
    help="Re-fit a trained model's per-tag thresholds from the accept/reject feedback stored in a "
    "library, and record the result as the model's next version (the old one is kept).\n\n"
    "Example: autotag refit --model runs/pets --db library.db",
)
def refit_command(
    model: str = typer.Option(..., "--model", "-m", help="A model registered in the library, or a model folder."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    beta: float = typer.Option(1.0, "--beta", help="F-beta to maximise: below 1 favours precision."),
    min_feedback: int = typer.Option(3, "--min-feedback", min=1, help="Leave tags with fewer judgements alone."),
    use_thresholds: bool = typer.Option(
        False, "--use-thresholds", help="Make the new version decide by per-label thresholds (rule per-label)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would change; write nothing."),
    fmt: Format | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
) -> None:
    from autotag.refit import refit_model
    from autotag.store import open_store

    with open_store(db, create=False) as lib:
        report = refit_model(
            lib, model, beta=beta, min_feedback=min_feedback, use_thresholds=use_thresholds, dry_run=dry_run
        )
    fmt = resolve_format(fmt)
    if fmt in (Format.json, Format.jsonl):
        emit([report.to_dict()], fmt)
    else:
        emit((c.to_dict() for c in report.changes), fmt, table=_changes_table)

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    typer.echo(
        f"precision on {report.feedback_used} judged tags: {pct(report.precision_before)} -> "
        f"{pct(report.precision_after)} (accepted tags still given: {pct(report.recall_after)}; "
        f"{report.feedback_skipped} feedback items not usable)",
        err=True,
    )
    if report.thresholds_unused:
        typer.echo(
            f"note: the model decides by rule {report.rule_after}, which ignores per-label thresholds; "
            "rerun with --use-thresholds to decide by them",
            err=True,
        )
    elif report.rule_after != report.rule_before:
        typer.echo(f"decision rule: {report.rule_before} -> {report.rule_after}", err=True)
    if report.new_version is None:
        typer.echo("dry run: nothing written", err=True)
    else:
        typer.echo(
            f"model {report.model} version {report.new_version} recorded at {report.new_path} "
            f"(version {report.old_version} kept)",
            err=True,
        )
