"""The one checked ONNX export: every ONNX file autotag writes (the registered encoders, a model
folder's own encoder, the one-file pipeline) goes through `export_onnx_checked`, with one tolerance."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from autotag.types import AutotagError

MAX_EXPORT_DIFF = 1e-3  # max abs difference between ONNX Runtime and PyTorch on the probe inputs


def export_onnx_checked(module: Any, inputs: tuple, path: str | Path, input_names: list[str],
                        output_names: list[str], reference: Callable[..., Any] | None = None) -> float:
    """Export `module` to ONNX at `path` and check ONNX Runtime against `reference` (a module, or a function
    of the inputs returning tensors; default `module` itself) on `inputs`; returns the max abs difference.

    The file appears atomically and only when the check passes, so a concurrent process never reads half
    a file and a disagreeing export is never used. The batch axis of every input and output is dynamic.
    """
    import onnxruntime as ort
    import torch

    module.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", prefix=f".{path.stem}.", dir=path.parent)
    os.close(fd)
    dynamic = {n: {0: "batch"} for n in [*input_names, *output_names]}
    try:
        with torch.no_grad(), warnings.catch_warnings():  # the tracer's constant-folding notes are noise
            warnings.simplefilter("ignore")
            torch.onnx.export(module, inputs, tmp, input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic, opset_version=17, dynamo=False)
        session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        got = session.run(None, {n: t.numpy() for n, t in zip(input_names, inputs, strict=True)})
        with torch.no_grad():
            want = (reference or module)(*inputs)
        want = want if isinstance(want, (tuple, list)) else (want,)
        diff = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))
        if not diff < MAX_EXPORT_DIFF:
            raise AutotagError(f"ONNX export to {path.name} disagrees with PyTorch (max abs diff {diff:.2e} >= "
                               f"{MAX_EXPORT_DIFF}); refusing to use it: check the torch/onnxruntime versions")
        os.replace(tmp, path)
        return diff
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
