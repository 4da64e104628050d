"""autotag: tag images automatically with neural networks.

    from autotag import Tagger
    tagger = Tagger.default()
    tags = tagger.tag("photo.jpg")

Names are imported lazily so that `autotag --help` stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["AutotagError", "Tag", "TagOptions", "Tagger", "create_encoder", "load_model", "__version__"]

_LAZY = {
    "Tagger": "autotag.pipeline",
    "TagOptions": "autotag.pipeline",
    "Tag": "autotag.types",
    "AutotagError": "autotag.types",
    "create_encoder": "autotag.encoders",
    "load_model": "autotag.artifact",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autotag' has no attribute {name!r}")
