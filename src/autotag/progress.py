"""A progress bar for long loops (tagging, indexing, encoding a dataset)."""

from __future__ import annotations

import sys


class ProgressBar:
    """A rich progress bar on stderr; does nothing when total is 0 or stderr is not a terminal (rich
    would draw nothing there, and importing it costs a short run ~40 ms)."""

    def __init__(self, total: int, description: str = "images") -> None:
        self._bar = None
        if total and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task(description, total=total)

    def __enter__(self) -> ProgressBar:
        if self._bar:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar:
            self._bar.stop()

    def advance(self, n: int = 1) -> None:
        if self._bar:
            self._bar.advance(self._task, n)
