"""The `autotag` command: one Typer app; each area adds its commands in its own module."""

from autotag.cli.app import app, main

# Importing a module registers its commands on `app`.
from autotag.cli import tag as _tag  # noqa: F401,E402  isort: skip
from autotag.cli import serve as _serve  # noqa: F401,E402  isort: skip
from autotag.cli import library as _library  # noqa: F401,E402  isort: skip
from autotag.cli import search as _search  # noqa: F401,E402  isort: skip
from autotag.cli import data as _data  # noqa: F401,E402  isort: skip
from autotag.cli import vocab as _vocab  # noqa: F401,E402  isort: skip
from autotag.cli import train as _train  # noqa: F401,E402  isort: skip
from autotag.cli import batch as _batch  # noqa: F401,E402  isort: skip
from autotag.cli import teach as _teach  # noqa: F401,E402  isort: skip

__all__ = ["app", "main"]
