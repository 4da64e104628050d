"""Typed settings in one place: defaults < config file < AUTOTAG_* environment < CLI flags.

The config file is TOML at $AUTOTAG_CONFIG or <user config dir>/autotag/config.toml, flat keys
named like the fields below. CLI options default to None ("unset") and are passed as keyword
arguments to `load_settings`, so an unset flag falls back to the environment, the file, the default.
Every default a command shares (model, top_k, threshold, batch size, threads) is written here once.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from autotag.types import AutotagError


def _user_dir(kind: str) -> Path:
    import platformdirs

    return Path(getattr(platformdirs, f"user_{kind}_dir")("autotag"))


@dataclass(frozen=True)
class Settings:
    model: str = "efficientnet_lite0"
    cache_dir: Path = Path()  # ONNX exports and embedding caches; filled from platformdirs
    data_dir: Path = Path()  # default image library database
    batch_size: int = 8  # images per encoder batch; small batches run sooner, no slower on 2 cores (bench_tagging)
    workers: int = 4  # decoding threads
    decode_memory_mb: int = 256  # what the decoding threads' full-size pictures may hold at once (DecodeBudget)
    threads: int = 0  # ONNX Runtime threads per encoder; 0 = its own choice (every core)
    max_pixels: int = 100_000_000
    top_k: int = 5  # at most this many leaf labels per image
    threshold: float = 0.05  # labels scoring below this are dropped
    max_upload_bytes: int = 25_000_000
    objects: bool = True  # the default model also runs the object detector (people, cups, cars, ...)
    detector: str = "centernet-coco"  # the object detector's registered name
    api_keys: str = ""  # comma-separated; empty means no key needed

    @property
    def default_db(self) -> str:
        return str(self.data_dir / "library.db")


def _coerce(value: Any, kind: Any, key: str) -> Any:
    try:
        if kind in (Path, "Path"):
            return Path(value).expanduser()
        if kind in (int, "int"):
            return int(value)
        if kind in (float, "float"):
            return float(value)
        if kind in (bool, "bool"):
            return _boolean(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise AutotagError(f"setting {key}: {value!r} is not a valid {kind}") from exc


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def load_settings(**overrides: Any) -> Settings:
    """The settings after every layer; `overrides` are the command's flags (None = not given)."""
    known = {f.name: f.type for f in fields(Settings)}
    values: dict[str, Any] = {"cache_dir": _user_dir("cache"), "data_dir": _user_dir("data")}
    named = os.environ.get("AUTOTAG_CONFIG")
    config_file = Path(named).expanduser() if named else _user_dir("config") / "config.toml"
    if named and not config_file.is_file():
        raise AutotagError(f"config file {config_file} (named by AUTOTAG_CONFIG) not found; create it or unset "
                           "AUTOTAG_CONFIG")
    if config_file.is_file():
        try:
            from_file = tomllib.loads(config_file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise AutotagError(f"config file {config_file} is not valid TOML: {exc}") from exc
        unknown = set(from_file) - set(known)
        if unknown:
            raise AutotagError(
                f"config file {config_file}: unknown keys {sorted(unknown)}; valid: {sorted(known)}"
            )
        values.update(from_file)
    for name in known:
        env = os.environ.get(f"AUTOTAG_{name.upper()}")
        if env is not None:
            values[name] = env
    unknown = set(overrides) - set(known)
    if unknown:
        raise TypeError(f"unknown settings {sorted(unknown)}")  # a programming error, not a user's
    values.update({k: v for k, v in overrides.items() if v is not None})
    return replace(Settings(), **{k: _coerce(v, known[k], k) for k, v in values.items()})
