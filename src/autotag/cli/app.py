"""The Typer app and the conventions every command shares: --format, one-line errors, output writers."""

from __future__ import annotations

import csv
import functools
import io
import json
import sys
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any, TypeVar

import typer
from typer.core import TyperOption

from autotag.types import AutotagError

# Typer's help prints every option's type, flags included ("--help <bool>"), which reads as if the flag
# wanted a value. A flag takes none: show no type for it.
_option_type = TyperOption.display_type_rich


def _no_type_for_flags(self: TyperOption, ctx: Any) -> str | None:
    return None if self.is_flag else _option_type(self, ctx)


TyperOption.display_type_rich = _no_type_for_flags  # type: ignore[method-assign]

ADVANCED = "Data and advanced"  # help panel of the commands a first-time user does not need

def spread_not(argv: list[str]) -> list[str]:
    """`teach TAG a b --not c d` -> `... --not c --not d`: every value after --not up to the next option
    is a rejection (an option takes one value, so `d` would otherwise silently become an example)."""
    if len(argv) < 2 or argv[1] != "teach":
        return argv
    out, rejecting = [], False
    for arg in argv:
        if arg == "--not":
            rejecting = True
            continue
        if arg.startswith("-") and arg != "-":
            rejecting = False
        out += ["--not", arg] if rejecting else [arg]
    return out


class AutotagApp(typer.Typer):
    """The app; before parsing, `teach ... --not a b` becomes `--not a --not b` (spread_not), whichever
    entry point runs it (the `autotag` script calls the app itself, not `main`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        sys.argv = spread_not(sys.argv)
        return super().__call__(*args, **kwargs)


app = AutotagApp(
    name="autotag",
    help="Tag images automatically with neural networks. Example: autotag tag photos/",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


class Format(StrEnum):
    table = "table"
    jsonl = "jsonl"
    json = "json"
    csv = "csv"


FORMAT_HELP = "Output format: table (default on a terminal), jsonl, json or csv."
DB_HELP = "Image library: a SQLite file path or a postgresql:// URL (default: the user data folder)."


def resolve_format(fmt: Format | None) -> Format:
    if fmt is not None:
        return fmt
    return Format.table if sys.stdout.isatty() else Format.jsonl


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit."""
    typer.echo(f"autotag: error: {message}", err=True)
    raise typer.Exit(code)


def command(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """Like app.command, but any AutotagError becomes a one-line message and exit code 2."""

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def run(*a: Any, **kw: Any) -> Any:
            try:
                return func(*a, **kw)
            except AutotagError as exc:
                fail(str(exc))
            except KeyboardInterrupt:
                fail("interrupted", 130)

        app.command(*args, **kwargs)(run)
        return func

    return wrap


def _flat(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join(
            f"{v['name']}:{v['score']:.4f}" if isinstance(v, dict) and "name" in v else str(v) for v in value
        )
    if isinstance(value, dict):
        return json.dumps(value)
    return "" if value is None else value


def emit(
    records: Iterable[dict[str, Any]],
    fmt: Format,
    table: Callable[[list[dict]], Any] | None = None,
    flat: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """Write records to stdout in the chosen format. jsonl streams; the others collect first.
    `flat`: how a record becomes one CSV row (default: nested values joined or as JSON)."""
    out = sys.stdout
    if fmt is Format.jsonl:
        for rec in records:
            out.write(json.dumps(rec) + "\n")
            out.flush()
        return
    rows = list(records)
    if fmt is Format.json:
        json.dump(rows, out, indent=2)
        out.write("\n")
    elif fmt is Format.csv:
        if flat is not None:
            rows = [flat(row) for row in rows]
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _flat(row.get(k)) for k in columns})
        out.write(buf.getvalue())
    else:
        from rich.console import Console

        console = Console()
        if table is not None:
            console.print(table(rows))
        else:
            from rich.table import Table

            t = Table(show_lines=False)
            columns = list(rows[0]) if rows else []
            for c in columns:
                t.add_column(c)
            for row in rows:
                t.add_row(*(str(_flat(row.get(c))) for c in columns))
            console.print(t)


def main() -> None:
    app()
