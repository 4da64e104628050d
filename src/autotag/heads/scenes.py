"""Scene words the ImageNet classifier has no class for (sky, sunset, sea, mountain, night, ...).

ImageNet-1k names objects, not places: a sunset, a starry sky or a meadow has no class, so the consumer
vocabulary alone leaves landscape wallpapers "not sure". The encoder's embedding still sees them. Each
scene word is one learned tag (heads/learned_tag.py: a linear model over the square-rooted, centred
embedding), trained by scripts/train_scenes.py on real photos labelled by looking at them (the FIT half
of the real-photo benchmark and bench/realphotos/scenes_extra.yaml) and shipped as scenes.json beside
this file. A word's score is the model's probability; it counts as evidence for the category of the
same name (taxonomy/decisions.py) only at or above its threshold, fitted out-of-fold for precision.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotag.heads.learned_tag import LearnedTag, features
from autotag.types import AutotagError

SCENES_PATH = Path(__file__).with_name("scenes.json")


@dataclass(frozen=True)
class SceneHeads:
    """Every scene word's model over one encoder's embeddings; all share one feature centre."""

    encoder: str
    models: tuple[LearnedTag, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(m.tag for m in self.models)

    @property
    def dim(self) -> int:
        return len(self.models[0].weights) if self.models else 0

    @functools.cached_property
    def _stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        centre = self.models[0].centre
        if any(not np.array_equal(m.centre, centre) for m in self.models):
            raise AutotagError("scene models must share one feature centre")
        weights = np.stack([m.weights for m in self.models], axis=1)
        bias = np.array([m.bias for m in self.models], np.float32)
        thresholds = np.array([m.threshold for m in self.models], np.float32)
        return centre, weights, bias, thresholds

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, D) embeddings -> (N, K) logit of each scene word, in `words` order."""
        x = np.asarray(embeddings, np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise AutotagError(f"scene models read {self.dim}-d embeddings, got shape {x.shape}")
        centre, weights, bias, _ = self._stacked
        return features(x, centre) @ weights + bias

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, D) embeddings -> (N, K) probability of each scene word, in `words` order."""
        return 1.0 / (1.0 + np.exp(-self.logits(embeddings)))

    def found(self, embedding: np.ndarray) -> dict[str, float]:
        """One embedding -> {scene word: probability} for the words at or above their thresholds."""
        if not self.models:
            return {}
        logit = self.logits(np.asarray(embedding, np.float32).reshape(1, -1))[0]
        prob = 1.0 / (1.0 + np.exp(-logit))
        thresholds = self._stacked[3]
        return {w: float(p) for w, p, s, t in zip(self.words, prob, logit, thresholds, strict=True) if s >= t}

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "meta": self.meta, "models": [m.to_dict() for m in self.models]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "scene models") -> SceneHeads:
        try:
            models = tuple(LearnedTag.from_dict(m) for m in data["models"])
            return cls(str(data["encoder"]), models, dict(data.get("meta") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise AutotagError(f"{where} is unreadable: {exc}") from exc

    def save(self, path: Path | str = SCENES_PATH) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=0) + "\n")

    @classmethod
    def load(cls, path: Path | str = SCENES_PATH) -> SceneHeads:
        p = Path(path)
        if not p.is_file():
            raise AutotagError(f"scene models file {p} does not exist (scripts/train_scenes.py writes it)")
        return cls.from_dict(json.loads(p.read_text()), str(p))


@functools.cache
def default_scene_heads() -> SceneHeads | None:
    """The shipped scene models (None before scripts/train_scenes.py has written them)."""
    return SceneHeads.load() if SCENES_PATH.is_file() else None


def scene_evidence(
    embedding: np.ndarray | None, heads: SceneHeads | None = None, encoder: str | None = None
) -> dict[str, float]:
    """The scene words an embedding earns, with their probabilities; {} when the scene models read
    another encoder's embeddings (`encoder`, its registered name, when known; else by size) or there is
    no embedding. EfficientNet-Lite1/2 embed in 1280 dimensions too, but not in Lite0's space."""
    heads = heads if heads is not None else default_scene_heads()
    if heads is None or embedding is None or np.asarray(embedding).size != heads.dim:
        return {}
    if encoder is not None and encoder != heads.encoder:
        return {}
    return heads.found(embedding)
