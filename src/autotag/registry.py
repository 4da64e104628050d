"""One registry type for every name a user can choose (encoders, heads, losses, decision rules,
dataset readers, index kinds, engines, schedules, retrieval losses).

A registry maps names to objects (usually factories). Modules that register into a registry they do
not own are listed as `plugins` (dotted module names) and imported on the first lookup, so the module
holding the registry never imports its plugins at import time and no import circle forms (the timm
pattern: a decorator fills the table, one lookup reads it). An unknown name is one AutotagError that
lists every valid name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar, overload

from autotag.types import AutotagError

T = TypeVar("T")


class Registry(Generic[T]):
    """`kind` names the thing in errors ("unknown encoder 'x'; valid: a, b")."""

    def __init__(self, kind: str, plugins: Sequence[str] = ()) -> None:
        self.kind = kind
        self._plugins = tuple(plugins)
        self._loaded = not self._plugins
        self._items: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: T | None = None) -> T | Callable[[T], T]:
        """`@registry.register("name")` on a function or class, or `registry.register("name", obj)`.
        Registering a taken name is a programming error, so two plugins never silently shadow each other."""

        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # set first: a plugin that looks names up while importing must not recurse
            for module in self._plugins:
                importlib.import_module(module)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def check(self, name: str) -> str:
        """`name` if it is registered, else the one-line error listing the valid names."""
        self._load()
        if name not in self._items:
            raise AutotagError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names()) or 'none'}")
        return name

    def get(self, name: str) -> T:
        return self._items[self.check(name)]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return sorted(self._items.items())
