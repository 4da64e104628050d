"""Trainable heads over image embeddings: torch modules, losses by name, sklearn-style estimators."""

from autotag.heads.estimators import (
    CompositeTagger,
    HeadClassifier,
    NotFittedError,
    build_tag_vocabulary,
    check_is_fitted,
    tag_bags,
)
from autotag.heads.losses import create_loss, list_losses, register_loss

__all__ = [
    "CompositeTagger",
    "HeadClassifier",
    "NotFittedError",
    "build_tag_vocabulary",
    "check_is_fitted",
    "create_loss",
    "list_losses",
    "register_loss",
    "tag_bags",
]
