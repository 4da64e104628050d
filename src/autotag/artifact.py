"""A trained model is a folder; this module writes it and loads it back without any training code.

    config.json         format version, encoder (name, input size, pooling, optional ONNX file),
                        heads' shapes and parameters, user-tag vocabulary, decision rule, training
                        settings and dataset fingerprint
    model.safetensors   every head weight (and the embedding standardisation)
    labels.json         the ordered vocabulary = the column order of every score matrix
    thresholds.json     per-label thresholds fitted on validation data, and the global threshold
    encoder.onnx        optional: the encoder when it is not a registered one as-is (fine-tuned, other
                        size or pooling), with the same two outputs (logits, embedding)
    encoder.safetensors optional: the fine-tuned backbone's PyTorch weights (for re-export)

Anything missing, unknown or of the wrong shape is one AutotagError saying which file and what to do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autotag.types import AutotagError, Tag

FORMAT = "autotag-model"
FORMAT_VERSION = 1
CONFIG_KEYS = {"format", "version", "encoder", "heads", "decision", "training", "dataset", "metrics", "created"}
ENCODER_KEYS = {"name", "input_size", "pool_grid", "tiles", "embedding_dim", "onnx", "finetuned", "mean", "std"}
DECISION_KEYS = {"rule", "k", "threshold", "floor"}
MAX_EXPORT_DIFF = 1e-3


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


def export_onnx_checked(module, inputs: tuple, path: Path, input_names: list[str], output_names: list[str],
                        reference: Any = None) -> float:
    """Export `module` to ONNX at `path` (atomically) and check ONNX Runtime against `reference`
    (a module, or a function of the inputs returning tensors); returns the max abs difference."""
    import onnxruntime as ort
    import torch

    module.eval()
    path = Path(path)
    tmp = path.with_suffix(f".tmp{os.getpid()}.onnx")
    dynamic = {n: {0: "batch"} for n in [*input_names, *output_names]}
    try:
        with torch.no_grad():
            torch.onnx.export(module, inputs, str(tmp), input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic, opset_version=17, dynamo=False)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {n: t.numpy() for n, t in zip(input_names, inputs, strict=True)})
        with torch.no_grad():
            want = (reference or module)(*inputs)
        want = want if isinstance(want, (tuple, list)) else (want,)
        diff = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))
        if not diff < MAX_EXPORT_DIFF:
            raise AutotagError(f"ONNX export to {path.name} disagrees with PyTorch (max abs diff {diff:.2e}); "
                               "check the torch/onnxruntime versions")
        os.replace(tmp, path)
        return diff
    finally:
        if tmp.exists():
            tmp.unlink()


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


def make_encoder(folder: Path, enc: dict[str, Any]):  # -> autotag.encoders.Encoder
    """The encoder a model folder describes: a registered one, or the folder's own encoder.onnx."""
    from autotag.encoders import Encoder, EncoderSpec, create_encoder

    if not enc.get("onnx"):
        return create_encoder(enc["name"])
    onnx_file = Path(folder) / enc["onnx"]
    if not onnx_file.is_file():
        raise AutotagError(f"model folder {folder} lacks its encoder file {enc['onnx']}; copy the whole folder")
    spec = EncoderSpec(name=f"{enc['name']}@{Path(folder).name}", input_size=int(enc["input_size"]),
                       embedding_dim=int(enc["embedding_dim"]), num_logits=1000, label_set="imagenet-1k",
                       mean=float(enc.get("mean", 127.0)), std=float(enc.get("std", 128.0)))
    return Encoder(spec, onnx_file)


# -- saving -----------------------------------------------------------------------------------------------
def save_model(folder: str | Path, estimator: Any, *, encoder: dict[str, Any], decision: dict[str, Any],
               thresholds: Sequence[float] | None = None, global_threshold: float = 0.5,
               training: dict[str, Any] | None = None, dataset: dict[str, Any] | None = None,
               metrics: dict[str, Any] | None = None) -> Path:
    """Write a fitted CompositeTagger and its settings as a model folder (see the module docstring)."""
    import time

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta, tensors = estimator.state()
    labels = meta["labels"]
    unknown = set(encoder) - ENCODER_KEYS
    if unknown or set(decision) - DECISION_KEYS:
        raise AutotagError(f"unknown encoder/decision keys {sorted(unknown | (set(decision) - DECISION_KEYS))}")
    config = {
        "format": FORMAT, "version": FORMAT_VERSION, "encoder": encoder,
        "heads": {k: v for k, v in meta.items() if k != "labels"}, "decision": decision,
        "training": training or {}, "dataset": dataset or {}, "metrics": metrics or {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    per_label = list(thresholds) if thresholds is not None else [global_threshold] * len(labels)
    if len(per_label) != len(labels):
        raise AutotagError(f"{len(per_label)} thresholds for {len(labels)} labels")
    (folder / "thresholds.json").write_text(json.dumps(
        {"global": float(global_threshold), "per_label": {lab: float(t) for lab, t in zip(labels, per_label,
                                                                                           strict=True)}},
        indent=1) + "\n")
    (folder / "config.json").write_text(json.dumps(config, indent=2, default=_jsonable) + "\n")
    return folder


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


# -- loading ----------------------------------------------------------------------------------------------
def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise AutotagError(f"model folder {path.parent} has no {path.name} ({what}); retrain or copy the whole folder")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AutotagError(f"{path} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}); "
                           "the model folder is corrupted: retrain or restore it") from exc


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

    def make_encoder(self):  # -> autotag.encoders.Encoder
        return make_encoder(self.path, self.config["encoder"])

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

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise AutotagError(f"model folder {folder} does not exist; train one with: autotag train --out {folder}")
    config = _read_json(folder / "config.json", "the model settings")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise AutotagError(f"{folder / 'config.json'} is not an autotag model config")
    if int(config.get("version", -1)) > FORMAT_VERSION:
        raise AutotagError(f"model {folder} has format version {config.get('version')}, newer than this autotag "
                           f"({FORMAT_VERSION}); upgrade autotag")
    unknown = set(config) - CONFIG_KEYS
    unknown |= {f"encoder.{k}" for k in set(config.get("encoder", {})) - ENCODER_KEYS}
    unknown |= {f"decision.{k}" for k in set(config.get("decision", {})) - DECISION_KEYS}
    if unknown:
        raise AutotagError(f"{folder / 'config.json'} has unknown keys {sorted(unknown)}; it was written by "
                           "another autotag version or edited by hand")
    labels = _read_json(folder / "labels.json", "the label vocabulary")
    heads_config = config.get("heads") if isinstance(config.get("heads"), dict) else {}
    trained_labels = (heads_config.get("params") or {}).get("labels") or labels
    if not isinstance(labels, list) or labels != trained_labels:
        # labels.json is the column order of every score matrix: a renamed, reordered or missing entry
        # would silently put scores under the wrong names
        raise AutotagError(f"{folder / 'labels.json'} ({len(labels)} labels) does not match the labels the model "
                           f"was trained with ({len(trained_labels)}); restore the folder's own labels.json")
    thresholds_doc = _read_json(folder / "thresholds.json", "the decision thresholds")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise AutotagError(f"model folder {folder} has no model.safetensors (the head weights); retrain or restore it")
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for truncated or garbled files
        raise AutotagError(f"{weights} cannot be read ({type(exc).__name__}); the file is corrupted: "
                           "retrain or restore it") from exc
    heads = dict(config["heads"])
    heads["labels"] = labels
    try:
        estimator = CompositeTagger.from_state(heads, tensors)
    except KeyError as exc:
        raise AutotagError(f"{folder / 'config.json'} lacks the heads setting {exc}; the folder is corrupted") from exc
    if len(estimator.classes_) != estimator.config_["n_labels"]:
        raise AutotagError(f"{folder}: {len(labels)} labels but the heads have {estimator.config_['n_labels']} outputs")
    per_label = thresholds_doc.get("per_label", {}) if isinstance(thresholds_doc, dict) else {}
    missing = [lab for lab in labels if lab not in per_label]
    if missing:
        raise AutotagError(f"{folder / 'thresholds.json'} lacks thresholds for {missing[:3]}; the folder is corrupted")
    thresholds = np.array([float(per_label[lab]) for lab in labels])
    return TrainedModel(folder, config, labels, estimator, thresholds, float(thresholds_doc.get("global", 0.5)))


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
