"""Training: staged composite heads on embeddings, backbone fine-tuning, augmentations, schedules."""

from autotag.train.composite import TrainConfig, train_model

__all__ = ["TrainConfig", "train_model"]
