"""Image encoders: a registry of names, one factory, ONNX Runtime backends."""

from autotag.encoders.base import Encoder, EncoderSpec
from autotag.encoders.registry import ENCODERS, create_encoder, encoder_spec, list_encoders, register_encoder

__all__ = ["ENCODERS", "Encoder", "EncoderSpec", "create_encoder", "encoder_spec", "list_encoders",
           "register_encoder"]
