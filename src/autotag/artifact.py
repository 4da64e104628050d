"""Trained models: save a fitted CompositeTagger as a model folder and load it back without any
training code (the folder's files are read and written by autotag.modelfolder.ModelFolder), build the
encoder a folder describes, and export a folder's encoder or whole pipeline to ONNX.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autotag.encoders.export import MAX_EXPORT_DIFF, export_onnx_checked
from autotag.modelfolder import ModelFolder
from autotag.types import AutotagError, Tag


# -- encoders that are not a registered one as-is -----------------------------------------------------
def build_encoder_net(name: str, pool_grid: int = 1, backbone_state: dict[str, Any] | None = None,
                      tiles: int = 1):
    """A fresh PyTorch encoder: pretrained backbone (optionally loaded with trained weights) whose two
    outputs are (ImageNet logits of the globally pooled features, embedding pooled as
    autotag.encoders.efficientnet_lite.pool_features does)."""
    from torch import nn

    from autotag.encoders.efficientnet_lite import build_torch_model, pool_features

    class EncoderNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = build_torch_model(name)

        def forward(self, x):
            pooled, embedding = pool_features(self.backbone, x, pool_grid, tiles)
            return self.backbone._fc(pooled), embedding

    net = EncoderNet()
    if backbone_state is not None:
        try:
            net.backbone.load_state_dict(backbone_state)
        except RuntimeError as exc:
            raise AutotagError(f"fine-tuned encoder weights do not fit {name}: {str(exc).splitlines()[0]}") from exc
    return net.eval()


def export_encoder(folder: Path, name: str, input_size: int, pool_grid: int,
                   trained_backbone=None, tiles: int = 1) -> float:
    """Write encoder.onnx (+ encoder.safetensors when fine-tuned) from a FRESH instance loaded with the
    trained weights, checked against the trained module itself."""
    import torch

    state = None
    if trained_backbone is not None:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in trained_backbone.state_dict().items()}
        save_file(state, str(folder / "encoder.safetensors"))
    fresh = build_encoder_net(name, pool_grid, state, tiles)
    reference = None
    if trained_backbone is not None:
        trained = build_encoder_net(name, pool_grid, tiles=tiles)
        trained.backbone = trained_backbone.eval()
        reference = trained
    probe = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 3, input_size, input_size))
                             .astype(np.float32))
    return export_onnx_checked(fresh, (probe,), folder / "encoder.onnx", ["image"], ["logits", "embedding"],
                               reference)


def make_encoder(folder: Path, enc: dict[str, Any], threads: int | None = None):  # -> autotag.encoders.Encoder
    """The encoder a model folder describes: a registered one, or the folder's own encoder.onnx (the
    registered backbone's spec with the folder's input size, embedding size and normalisation)."""
    from dataclasses import replace

    from autotag.encoders import Encoder, create_encoder, encoder_spec

    if not enc.get("onnx"):
        return create_encoder(enc["name"], threads=threads)
    onnx_file = Path(folder) / enc["onnx"]
    if not onnx_file.is_file():
        raise AutotagError(f"model folder {folder} lacks its encoder file {enc['onnx']}; copy the whole folder")
    base = encoder_spec(enc["name"])
    spec = replace(base, name=f"{enc['name']}@{Path(folder).name}", input_size=int(enc["input_size"]),
                   embedding_dim=int(enc["embedding_dim"]), mean=float(enc.get("mean", base.mean)),
                   std=float(enc.get("std", base.std)))
    return Encoder(spec, onnx_file, threads=threads)


# -- saving -----------------------------------------------------------------------------------------------
def save_model(folder: str | Path, estimator: Any, *, encoder: dict[str, Any], decision: dict[str, Any],
               thresholds: Sequence[float] | None = None, global_threshold: float = 0.5,
               training: dict[str, Any] | None = None, dataset: dict[str, Any] | None = None,
               metrics: dict[str, Any] | None = None) -> Path:
    """Write a fitted CompositeTagger and its settings as a model folder (see autotag.modelfolder)."""
    meta, tensors = estimator.state()
    labels = meta["labels"]
    config = {"encoder": encoder, "heads": {k: v for k, v in meta.items() if k != "labels"}, "decision": decision,
              "training": training or {}, "dataset": dataset or {}, "metrics": metrics or {}}
    per_label = list(thresholds) if thresholds is not None else [global_threshold] * len(labels)
    return ModelFolder(folder).write(config=config, labels=labels, tensors=tensors, thresholds=per_label,
                                     global_threshold=global_threshold).path


# -- loading ----------------------------------------------------------------------------------------------
class TrainedModel:
    """A loaded model folder: labels, config, encoder factory, scores, counts and decisions."""

    def __init__(self, path: Path, config: dict[str, Any], labels: list[str], estimator: Any,
                 thresholds: np.ndarray, global_threshold: float) -> None:
        self.path = path
        self.config = config
        self.labels = labels
        self.estimator = estimator
        self.thresholds = thresholds
        self.global_threshold = global_threshold

    @property
    def needs_user_tags(self) -> bool:
        return bool(self.estimator.vocabulary_)

    def make_encoder(self, threads: int | None = None):  # -> autotag.encoders.Encoder
        return make_encoder(self.path, self.config["encoder"], threads)

    def predict_scores(self, embeddings: Any, logits: Any = None,
                       user_tags: list[list[str]] | None = None) -> np.ndarray:
        """(N, L) probabilities; columns follow `labels`. `logits` are accepted for the contract, unused."""
        return self.estimator.predict_proba(embeddings, user_tags)

    def predict_count(self, embeddings: Any, logits: Any = None,
                      user_tags: list[list[str]] | None = None) -> np.ndarray:
        return self.estimator.predict_count(embeddings, user_tags)

    def decide(self, scores: Any, counts: Any = None, rule: str | None = None, **params: Any) -> list[list[Tag]]:
        """Tags per image by the stored decision rule (or `rule`), best first.

        Rules needing a label count use `counts` (from predict_count); without them the count is
        estimated as the number of labels scoring >= 0.5, clipped to [1, max count seen in training].
        """
        from autotag.decide import RULES, decide

        scores = np.asarray(scores, dtype=np.float64)
        stored = dict(self.config.get("decision", {}))
        rule = rule or stored.pop("rule", "top-k-predicted")
        stored.pop("rule", None)
        stored.update(params)
        if RULES.get(rule).needs == "counts" and counts is None:
            counts = np.clip((scores >= 0.5).sum(1), 1, self.estimator.max_count_)
        if rule == "per-label":
            stored.setdefault("thresholds", self.thresholds)
        if rule == "threshold":
            stored.setdefault("threshold", self.global_threshold)
        chosen = decide(rule, scores, counts=counts, **stored)
        out = []
        for row, keep in zip(scores, chosen, strict=True):
            idx = np.nonzero(keep)[0]
            idx = idx[np.argsort(-row[idx], kind="stable")]
            out.append([Tag(self.labels[j], float(row[j]), self.labels[j], "label") for j in idx])
        return out

    def tag(self, embeddings: Any, logits: Any = None, user_tags: list[list[str]] | None = None,
            rule: str | None = None) -> list[list[Tag]]:
        """Scores, predicted counts and decisions in one call."""
        scores, counts = self.estimator.predict_proba_and_count(embeddings, user_tags)
        return self.decide(scores, counts=counts, rule=rule)


def load_model(path: str | Path) -> TrainedModel:
    """Load a model folder written by `save_model` / `autotag train`."""
    from autotag.heads.estimators import CompositeTagger

    folder = ModelFolder(path)
    config = folder.config()
    labels = folder.labels(config)
    thresholds, global_threshold = folder.thresholds(labels)
    tensors = folder.weights()
    heads = dict(config["heads"])
    heads["labels"] = labels
    try:
        estimator = CompositeTagger.from_state(heads, tensors)
    except KeyError as exc:
        raise AutotagError(f"{folder.path / folder.CONFIG} lacks the heads setting {exc}; the folder is "
                           "corrupted") from exc
    return TrainedModel(folder.path, config, labels, estimator, thresholds, global_threshold)


# -- one-file export of the whole inference pipeline -----------------------------------------------------
def export_pipeline(model: TrainedModel | str | Path, out: str | Path) -> dict[str, float]:
    """Write one ONNX file: preprocessed image (N, 3, S, S) [+ user-tag bag (N, V)] -> (scores (N, L),
    raw label count (N,)). Checked against the Python path (ONNX encoder + heads); returns the differences.
    """
    import torch

    from autotag.heads.estimators import tag_bags

    if not isinstance(model, TrainedModel):
        model = load_model(model)
    enc = model.config["encoder"]
    state = None
    if (model.path / "encoder.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(model.path / "encoder.safetensors"))
    encoder_net = build_encoder_net(enc["name"], int(enc.get("pool_grid", 1)), state, int(enc.get("tiles", 1)))
    heads = model.estimator.module_
    mean, std = model.estimator.count_mean_, model.estimator.count_std_
    with_tags = heads.user_tags is not None

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.heads = encoder_net, heads

        def forward(self, image, tag_bag=None):
            fused, count, _ = self.heads(self.encoder(image)[1], tag_bag)
            return torch.sigmoid(fused), count * std + mean

    size = int(enc["input_size"])
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.uniform(-1, 1, (3, 3, size, size)).astype(np.float32))
    vocab = model.estimator.vocabulary_
    probe_tags = [[vocab[i % len(vocab)] for i in range(j, j + 2)] for j in range(3)] if with_tags else None
    inputs: tuple = (image,)
    names = ["image"]
    if with_tags:
        inputs = (image, torch.from_numpy(tag_bags(probe_tags, vocab, 3)))
        names.append("user_tags")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch_diff = export_onnx_checked(Pipeline(), inputs, out, names, ["scores", "count"])
    # ... and against the serving path: the ONNX encoder, then the heads in Python.
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    scores_onnx = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})[0]
    logits, embeddings = model.make_encoder().run(image.numpy())
    scores_python = model.predict_scores(embeddings, logits, probe_tags)
    python_diff = float(np.abs(scores_onnx - scores_python).max())
    if not python_diff < MAX_EXPORT_DIFF:
        out.unlink()
        raise AutotagError(f"exported pipeline disagrees with the Python path (max abs diff {python_diff:.2e})")
    return {"vs_torch": torch_diff, "vs_python": python_diff}
