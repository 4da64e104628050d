"""Turning what a user typed (files, folders, globs, '-') into a list of image paths."""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from autotag.types import AutotagError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".jfif"}
)


def _folder_images(folder: Path) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(
            os.path.join(root, f) for f in sorted(files) if Path(f).suffix.lower() in IMAGE_EXTENSIONS
        )
    return found


def discover(inputs: Iterable[str], stdin: Iterable[str] | None = None) -> list[str]:
    """Expand files, folders (recursively, image extensions only), globs and '-' (paths on stdin).

    An explicitly named file is kept whatever its extension, so that a wrong file gets a clear
    per-file error later instead of vanishing silently. A pattern or path matching nothing is an error.
    """
    paths: list[str] = []
    for item in inputs:
        if item == "-":
            lines = stdin if stdin is not None else sys.stdin
            paths.extend(line.strip() for line in lines if line.strip())
            continue
        p = Path(item)
        if p.is_dir():
            paths.extend(_folder_images(p))
        elif p.exists() or "://" in item:
            paths.append(item)
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise AutotagError(f"no files match {item!r}")
            for m in matches:
                paths.extend(_folder_images(Path(m)) if Path(m).is_dir() else [m])
        else:
            raise AutotagError(f"no such file or folder: {item}")
    seen: set[str] = set()
    return [p for p in paths if not (p in seen or seen.add(p))]
