"""Encoder names -> registered backends (the timm pattern): one decorator, one factory.

Each backend registers its pretrained config (`EncoderSpec`: input size, normalisation, feature size,
label set) with a build function. The backends import this module; it names them only as plugin
strings that the registry imports on first lookup, so there is no import circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from autotag.encoders.base import Encoder, EncoderSpec
from autotag.registry import Registry


@dataclass(frozen=True)
class RegisteredEncoder:
    spec: EncoderSpec
    build: Callable[..., Encoder]  # build(threads=None) -> Encoder
    trainable: bool  # PyTorch weights exist: training may fine-tune it, change its input size or pooling


ENCODERS: Registry[RegisteredEncoder] = Registry(
    "encoder", plugins=("autotag.encoders.efficientnet_lite", "autotag.encoders.quantized")
)
_CACHE: dict[tuple[str, int | None], Encoder] = {}


def register_encoder(spec: EncoderSpec, *, trainable: bool = True) -> Callable[[Callable[..., Encoder]],
                                                                                Callable[..., Encoder]]:
    def wrap(build: Callable[..., Encoder]) -> Callable[..., Encoder]:
        ENCODERS.register(spec.name, RegisteredEncoder(spec, build, trainable))
        return build

    return wrap


def list_encoders() -> list[str]:
    return ENCODERS.names()


def encoder_spec(name: str) -> EncoderSpec:
    """The registered encoder's pretrained config, without building it (no ONNX export)."""
    return ENCODERS.get(name).spec


def create_encoder(name: str, *, cached: bool = True, threads: int | None = None) -> Encoder:
    """Build (or reuse, per process) the encoder registered under `name`."""
    entry = ENCODERS.get(name)
    key = (name, threads)
    if cached and key in _CACHE:
        return _CACHE[key]
    encoder = entry.build(threads=threads)
    if cached:
        _CACHE[key] = encoder
    return encoder
