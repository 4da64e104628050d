"""The one Dataset interface every reader returns, and the registry of readers by name."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotag.registry import Registry
from autotag.types import AutotagError, ImageRecord


@dataclass
class Dataset:
    """Records (image file, label set, user tags, split) plus the ordered label vocabulary.

    `labels` is the column order of every label matrix and score matrix built from this dataset.
    """

    records: list[ImageRecord]
    labels: list[str]
    name: str = ""
    single_label: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    def splits(self) -> list[str]:
        """Split names present, in first-seen order (records without a split are left out)."""
        return list(dict.fromkeys(r.split for r in self.records if r.split))

    def split(self, name: str) -> Dataset:
        """The records of one split, same vocabulary; an unknown split is an error naming the known ones."""
        records = [r for r in self.records if r.split == name]
        if not records:
            known = self.splits()
            hint = f"splits present: {', '.join(known)}" if known else "this dataset has no split column"
            raise AutotagError(f"dataset {self.name or '?'} has no split {name!r}; {hint}")
        return Dataset(records, list(self.labels), f"{self.name}[{name}]", self.single_label, dict(self.info))

    def subset(self, n: int, seed: int = 0) -> Dataset:
        """A seeded random sample of n records (all of them when n >= len), original order kept."""
        if n >= len(self.records):
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self.records), n, replace=False))
        records = [self.records[i] for i in keep]
        return Dataset(records, list(self.labels), f"{self.name}[:{n}]", self.single_label, dict(self.info))

    @property
    def sources(self) -> list[str]:
        return [r.source for r in self.records]

    def label_matrix(self, labels: list[str] | None = None) -> np.ndarray:
        """(N, L) uint8 indicator in the order of `labels` (default: the dataset's own vocabulary).

        Labels of a record that are not in `labels` are ignored, so a model's vocabulary can be used.
        """
        vocab = list(self.labels if labels is None else labels)
        column = {name: j for j, name in enumerate(vocab)}
        out = np.zeros((len(self.records), len(vocab)), dtype=np.uint8)
        for i, rec in enumerate(self.records):
            for name in rec.labels:
                j = column.get(name)
                if j is not None:
                    out[i, j] = 1
        return out

    def label_indices(self) -> np.ndarray:
        """Single-label datasets: (N,) int class index of each record."""
        if not self.single_label:
            raise AutotagError(f"dataset {self.name} is multi-label; use label_matrix() instead")
        column = {name: j for j, name in enumerate(self.labels)}
        return np.array([column[r.labels[0]] for r in self.records], dtype=np.int64)

    def user_tag_counts(self) -> Counter[str]:
        return Counter(t for r in self.records for t in r.user_tags)

    def label_counts(self) -> Counter[str]:
        return Counter(t for r in self.records for t in r.labels)


Reader = Callable[..., Dataset]
READERS: Registry[tuple[Reader, str]] = Registry("dataset reader")  # name -> (reader, usage line)


def register_reader(name: str, usage: str) -> Callable[[Reader], Reader]:
    """Register `reader(argument: str, **options) -> Dataset` under `name`; usage is shown in errors."""

    def wrap(func: Reader) -> Reader:
        READERS.register(name, (func, usage))
        return func

    return wrap


def list_readers() -> dict[str, str]:
    """Reader name -> usage line."""
    return {name: usage for name, (_, usage) in READERS.items()}


def _usage() -> str:
    return "; ".join(usage for usage in list_readers().values())


def load_dataset(spec: str, **options: Any) -> Dataset:
    """Open a dataset from a spec such as `manifest:data.csv`, `coco:instances_val2017.json:val2017`,
    `fashion-mnist` or a plain path to a .csv/.jsonl manifest or a written FashionMosaic folder."""
    spec = str(spec).strip()
    name, _, argument = spec.partition(":")
    if name in READERS:
        reader = READERS.get(name)[0]
        return reader(argument, **options)
    path = Path(spec).expanduser()
    if path.suffix.lower() in (".csv", ".jsonl"):
        return READERS.get("manifest")[0](spec, **options)
    if path.is_dir() and (path / "manifest.jsonl").is_file():
        kind = "fashion-mosaic" if (path / "mosaic.json").is_file() else "manifest"
        return READERS.get(kind)[0](str(path if kind == "fashion-mosaic" else path / "manifest.jsonl"), **options)
    raise AutotagError(f"unknown dataset {spec!r}; use one of: {_usage()}")


def require_file(path: Path, what: str, hint: str = "") -> Path:
    """The path if it is a file, else a one-line error naming what is missing."""
    if not path.is_file():
        raise AutotagError(f"{what} not found: {path}" + (f"; {hint}" if hint else ""))
    return path
