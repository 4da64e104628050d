"""Encoder names map to plain factory functions (the timm pattern): one decorator, one factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from autotag.types import AutotagError

if TYPE_CHECKING:
    from autotag.encoders.base import Encoder

_FACTORIES: dict[str, Callable[..., Encoder]] = {}
_CACHE: dict[str, Encoder] = {}


def register_encoder(name: str) -> Callable[[Callable[..., Encoder]], Callable[..., Encoder]]:
    def wrap(factory: Callable[..., Encoder]) -> Callable[..., Encoder]:
        _FACTORIES[name] = factory
        return factory

    return wrap


def _load_backends() -> None:
    import autotag.encoders.efficientnet_lite  # noqa: F401 - registers its names
    import autotag.encoders.quantized  # noqa: F401 - registers the INT8 variants


def list_encoders() -> list[str]:
    _load_backends()
    return sorted(_FACTORIES)


def create_encoder(name: str, *, cached: bool = True) -> Encoder:
    """Build (or reuse, per process) the encoder registered under `name`."""
    _load_backends()
    if name not in _FACTORIES:
        raise AutotagError(f"unknown encoder {name!r}; valid encoders: {', '.join(sorted(_FACTORIES))}")
    if cached and name in _CACHE:
        return _CACHE[name]
    encoder = _FACTORIES[name]()
    if cached:
        _CACHE[name] = encoder
    return encoder
