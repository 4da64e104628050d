"""A trained model is a folder; `ModelFolder` is the only code that reads or writes its files:

    config.json         format version, encoder (name, input size, pooling, optional ONNX file),
                        heads' shapes and parameters, user-tag vocabulary, decision rule, training
                        settings and dataset fingerprint
    model.safetensors   every head weight (and the embedding standardisation)
    labels.json         the ordered vocabulary = the column order of every score matrix
    thresholds.json     {"global": g, "per_label": {label: threshold}}, fitted on validation data
    encoder.onnx        optional: the encoder when it is not a registered one as-is (fine-tuned, other
                        size or pooling), with the same two outputs (logits, embedding)
    encoder.safetensors optional: the fine-tuned backbone's PyTorch weights (for re-export)

Every reader checks what it reads against the config, so the model loader (autotag.artifact), the
threshold refit and the label mapping accept exactly the same folders. Anything missing, unknown or
of the wrong shape is one AutotagError saying which file and what to do. Reading needs no torch
except `weights()`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autotag.types import AutotagError

FORMAT = "autotag-model"
FORMAT_VERSION = 1
CONFIG_KEYS = {"format", "version", "encoder", "heads", "decision", "training", "dataset", "metrics", "created"}
ENCODER_KEYS = {"name", "input_size", "pool_grid", "tiles", "embedding_dim", "onnx", "finetuned", "mean", "std"}
DECISION_KEYS = {"rule", "k", "threshold", "floor"}


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _write_json(path: Path, doc: Any, indent: int = 1) -> None:
    """Write atomically: a reader never sees half a file, a failed write leaves the old one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(doc, indent=indent, default=_jsonable) + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ModelFolder:
    """The files of one model folder. `ModelFolder(path)` touches nothing; readers check as they read."""

    CONFIG, LABELS, THRESHOLDS, WEIGHTS = "config.json", "labels.json", "thresholds.json", "model.safetensors"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"ModelFolder({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    # -- reading -------------------------------------------------------------------------------------------
    def _read_json(self, name: str, what: str) -> Any:
        path = self.path / name
        if not self.path.is_dir():
            raise AutotagError(f"model folder {self.path} does not exist; train one with: autotag train --out "
                               f"{self.path}")
        if not path.is_file():
            if name == self.CONFIG:
                raise AutotagError(f"{self.path} is not a trained model folder (no {name}); train one with "
                                   "`autotag train` or copy the whole folder")
            raise AutotagError(f"model folder {self.path} has no {name} ({what}); retrain or copy the whole folder")
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AutotagError(f"{path} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}); "
                               "the model folder is corrupted: retrain or restore it") from exc

    def config(self) -> dict[str, Any]:
        """config.json, checked: an autotag model, not newer than this autotag, no unknown keys."""
        config = self._read_json(self.CONFIG, "the model settings")
        path = self.path / self.CONFIG
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise AutotagError(f"{path} is not an autotag model config")
        if int(config.get("version", -1)) > FORMAT_VERSION:
            raise AutotagError(f"model {self.path} has format version {config.get('version')}, newer than this "
                               f"autotag ({FORMAT_VERSION}); upgrade autotag")
        if not isinstance(config.get("heads"), dict) or not isinstance(config.get("encoder"), dict):
            raise AutotagError(f"{path} lacks its heads or encoder settings; the folder is corrupted")
        unknown = set(config) - CONFIG_KEYS
        unknown |= {f"encoder.{k}" for k in set(config["encoder"]) - ENCODER_KEYS}
        unknown |= {f"decision.{k}" for k in set(config.get("decision") or {}) - DECISION_KEYS}
        if unknown:
            raise AutotagError(f"{path} has unknown keys {sorted(unknown)}; it was written by another autotag "
                               "version or edited by hand")
        return config

    def labels(self, config: dict[str, Any] | None = None) -> list[str]:
        """labels.json: the column order of every score matrix; must be the labels the heads were trained
        with (a renamed, reordered or missing entry would silently put scores under the wrong names)."""
        config = config if config is not None else self.config()
        labels = self._read_json(self.LABELS, "the label vocabulary")
        heads = config["heads"]
        trained = (heads.get("params") or {}).get("labels") or labels
        outputs = (heads.get("heads") or {}).get("n_labels", len(trained))
        if (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or labels != trained
                or len(labels) != outputs):
            count = f"{len(labels)} labels" if isinstance(labels, list) else f"a {type(labels).__name__}"
            raise AutotagError(f"{self.path / self.LABELS} ({count}) does not match the labels the model was "
                               f"trained with ({outputs}); restore the folder's own labels.json")
        return labels

    def thresholds(self, labels: Sequence[str] | None = None) -> tuple[np.ndarray, float]:
        """(per-label thresholds in `labels` order, global threshold); every label must have one."""
        labels = list(labels) if labels is not None else self.labels()
        doc = self._read_json(self.THRESHOLDS, "the decision thresholds")
        per_label = doc.get("per_label") if isinstance(doc, dict) else None
        if not isinstance(per_label, dict) or not isinstance(doc.get("global", 0.5), (int, float)):
            raise AutotagError(f"{self.path / self.THRESHOLDS} is not {{\"global\": g, \"per_label\": "
                               "{label: threshold}}; the folder is corrupted")
        missing = [label for label in labels if label not in per_label]
        if missing:
            raise AutotagError(f"{self.path / self.THRESHOLDS} lacks thresholds for {missing[:3]}; the folder "
                               "is corrupted")
        try:
            values = np.array([float(per_label[label]) for label in labels])
        except (TypeError, ValueError) as exc:
            raise AutotagError(f"{self.path / self.THRESHOLDS}: a threshold is not a number ({exc})") from exc
        return values, float(doc.get("global", 0.5))

    def weights(self) -> dict[str, Any]:
        """model.safetensors as torch tensors (their shapes are checked by the heads that load them)."""
        path = self.path / self.WEIGHTS
        if not path.is_file():
            raise AutotagError(f"model folder {self.path} has no {self.WEIGHTS} (the head weights); retrain or "
                               "restore it")
        try:
            from safetensors.torch import load_file

            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for truncated or garbled files
            raise AutotagError(f"{path} cannot be read ({type(exc).__name__}); the file is corrupted: "
                               "retrain or restore it") from exc

    def check(self) -> list[str]:
        """Read and check every JSON file (no torch); returns the labels. Refuses what the loader refuses."""
        config = self.config()
        labels = self.labels(config)
        self.thresholds(labels)
        if not (self.path / self.WEIGHTS).is_file():
            self.weights()  # the one message for a missing weights file
        return labels

    # -- writing -------------------------------------------------------------------------------------------
    def write(self, *, config: dict[str, Any], labels: Sequence[str], tensors: dict[str, Any],
              thresholds: Sequence[float], global_threshold: float) -> ModelFolder:
        """Write a whole model folder. `config` holds every key but format, version and created."""
        from safetensors.torch import save_file

        labels = [str(label) for label in labels]
        encoder, decision = config.get("encoder", {}), config.get("decision", {})
        unknown = (set(encoder) - ENCODER_KEYS) | (set(decision) - DECISION_KEYS)
        unknown |= set(config) - CONFIG_KEYS
        if unknown:
            raise AutotagError(f"unknown model config keys {sorted(unknown)}")
        self.path.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(self.path / self.WEIGHTS))
        _write_json(self.path / self.LABELS, labels)
        self.write_thresholds(labels, thresholds, global_threshold)
        doc = {"format": FORMAT, "version": FORMAT_VERSION, **config,
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _write_json(self.path / self.CONFIG, doc, indent=2)
        return self

    def write_thresholds(self, labels: Sequence[str], thresholds: Sequence[float],
                         global_threshold: float | None = None) -> None:
        """thresholds.json for `labels` (the global threshold kept when not given). Full precision: a
        refitted threshold sits exactly on a seen score, and rounding up would drop that tag."""
        values = [float(t) for t in thresholds]
        if len(values) != len(labels):
            raise AutotagError(f"{len(values)} thresholds for {len(labels)} labels")
        if global_threshold is None:
            global_threshold = self.thresholds(labels)[1]
        _write_json(self.path / self.THRESHOLDS, {"global": float(global_threshold),
                                                  "per_label": dict(zip(labels, values, strict=True))})

    def set_decision(self, **decision: Any) -> None:
        """Change the stored decision (rule, k, threshold, floor) and keep everything else."""
        config = self.config()
        unknown = set(decision) - DECISION_KEYS
        if unknown:
            raise AutotagError(f"unknown decision keys {sorted(unknown)}; valid: {', '.join(sorted(DECISION_KEYS))}")
        config["decision"] = {**(config.get("decision") or {}), **decision}
        _write_json(self.path / self.CONFIG, config, indent=2)
