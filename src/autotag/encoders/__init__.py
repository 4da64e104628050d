"""Image encoders: a registry of names, one factory, ONNX Runtime backends."""

from autotag.encoders.base import Encoder, EncoderSpec
from autotag.encoders.registry import create_encoder, list_encoders, register_encoder

__all__ = ["Encoder", "EncoderSpec", "create_encoder", "list_encoders", "register_encoder"]
