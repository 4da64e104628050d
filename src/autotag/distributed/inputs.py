"""What `autotag batch SOURCE` may be: folders, globs, files, URIs (fsspec), or one manifest file
(CSV, JSONL or Parquet with a `path`, `uri`, `url` or `image` column). Always a sorted, de-duplicated
list, so the same SOURCE always cuts into the same shards."""

from __future__ import annotations

import glob
from pathlib import Path, PurePosixPath

from autotag.ingest import IMAGE_EXTENSIONS, discover
from autotag.types import AutotagError

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".parquet")
PATH_COLUMNS = ("path", "uri", "url", "image", "source")


def is_manifest(item: str) -> bool:
    return PurePosixPath(item.split("?")[0]).suffix.lower() in MANIFEST_SUFFIXES


def read_manifest(manifest: str) -> list[str]:
    """The image references of a manifest; relative local paths are taken relative to its folder."""
    import fsspec
    import pyarrow.csv
    import pyarrow.json
    import pyarrow.parquet as pq

    suffix = PurePosixPath(manifest).suffix.lower()
    try:
        with fsspec.open(manifest, "rb") as fh:
            if suffix == ".csv":
                table = pyarrow.csv.read_csv(fh)
            elif suffix == ".jsonl":
                table = pyarrow.json.read_json(fh)
            else:
                table = pq.read_table(fh)
    except FileNotFoundError as exc:
        raise AutotagError(f"manifest {manifest} does not exist") from exc
    except Exception as exc:  # noqa: BLE001 - a malformed manifest is one line for the user
        raise AutotagError(f"cannot read manifest {manifest}: {type(exc).__name__}: {exc}") from exc
    column = next((c for c in PATH_COLUMNS if c in table.column_names), None)
    if column is None:
        raise AutotagError(
            f"manifest {manifest} has no image column; name one of {', '.join(PATH_COLUMNS)} "
            f"(it has: {', '.join(table.column_names)})"
        )
    base = Path(manifest).parent if "://" not in manifest else None
    refs = []
    for value in table.column(column).to_pylist():
        if not value:
            continue
        value = str(value)
        if base is not None and "://" not in value and not Path(value).is_absolute():
            value = str(base / value)
        refs.append(value)
    return refs


def _remote_listing(pattern: str) -> list[str]:
    """Images under a remote folder (`s3://bucket/photos/`) or matching a remote glob."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(pattern)
    names = fs.glob(root) if glob.has_magic(root) else fs.find(root)
    found = [n for n in names if PurePosixPath(n).suffix.lower() in IMAGE_EXTENSIONS]
    if not found:
        raise AutotagError(f"no images found at {pattern}")
    return [fs.unstrip_protocol(n) for n in found]


def resolve_inputs(sources: list[str]) -> list[str]:
    """Every image reference SOURCE stands for, sorted and unique."""
    if not sources:
        raise AutotagError("give at least one SOURCE: a folder, a glob, a manifest or image paths/URIs")
    refs: list[str] = []
    local: list[str] = []
    for item in sources:
        if is_manifest(item):
            refs.extend(read_manifest(item))
        elif "://" in item and (item.endswith("/") or glob.has_magic(item.split("://", 1)[1])):
            refs.extend(_remote_listing(item))
        else:
            local.append(item)
    if local:
        refs.extend(discover(local))
    if not refs:
        raise AutotagError(f"no images found in {' '.join(sources)}")
    return sorted(set(refs))
