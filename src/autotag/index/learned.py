"""Learned retrieval head: a small projection of the frozen embeddings, trained with a metric-learning
loss so that images sharing a label end up closer than in the raw embedding space.

Training uses torch (imported inside `train_retrieval_head`); applying a trained head is a two-layer
numpy forward pass, so indexing and search never need torch. A head is saved as
`retrieval_head.safetensors` + `retrieval_head.json`, either on its own or inside a model folder;
a library's index applies it to every vector (stored and query) when its folder holds one.

Losses (registered names): `supcon` (supervised contrastive, every same-label item in the batch is a
positive), `triplet` (batch-hard triplets with a margin), `contrastive` (pairwise, Hadsell et al.).
bench/bench_retrieval.py compares them; supcon is the default because it scored best there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from autotag.registry import Registry
from autotag.types import AutotagError

RETRIEVAL_LOSSES: Registry[Callable[..., Any]] = Registry("retrieval loss")  # (z, positives, config) -> loss
WEIGHTS_FILE = "retrieval_head.safetensors"
CONFIG_FILE = "retrieval_head.json"
FORMAT_VERSION = 1


@dataclass
class RetrievalHeadConfig:
    input_dim: int = 1280
    hidden_dim: int = 512
    output_dim: int = 128
    loss: str = "supcon"
    temperature: float = 0.1  # supcon
    margin: float = 0.3  # triplet (cosine distance margin) and contrastive (euclidean margin on the sphere)
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    encoder: str = ""  # the embedding's encoder, so a head is not applied to another encoder's vectors

    def check(self) -> None:
        RETRIEVAL_LOSSES.check(self.loss)
        if min(self.input_dim, self.hidden_dim, self.output_dim, self.epochs, self.batch_size) <= 0:
            raise AutotagError("retrieval head dims, epochs and batch size must be positive")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class RetrievalHead:
    """Applies the trained projection: unit(x) -> Linear -> ReLU -> Linear -> unit."""

    def __init__(self, config: RetrievalHeadConfig, weights: dict[str, np.ndarray], history: list[float] | None = None):
        expected = {
            "w1": (config.hidden_dim, config.input_dim),
            "b1": (config.hidden_dim,),
            "w2": (config.output_dim, config.hidden_dim),
            "b2": (config.output_dim,),
        }
        for name, shape in expected.items():
            if name not in weights or tuple(weights[name].shape) != shape:
                got = None if name not in weights else tuple(weights[name].shape)
                raise AutotagError(f"retrieval head weight {name} has shape {got}, expected {shape}; retrain the head")
        self.config = config
        self.weights = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        self.history = history or []

    @property
    def output_dim(self) -> int:
        return self.config.output_dim

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        single = x.ndim == 1
        x = np.atleast_2d(x)
        if x.shape[1] != self.config.input_dim:
            raise AutotagError(
                f"retrieval head expects {self.config.input_dim}-dim embeddings, got {x.shape[1]}; "
                "use the encoder the head was trained on"
            )
        w = self.weights
        h = np.maximum(_unit(x) @ w["w1"].T + w["b1"], 0.0)
        out = _unit(h @ w["w2"].T + w["b2"])
        return out[0] if single else out

    __call__ = transform

    def save(self, folder: str | Path) -> Path:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.weights, str(folder / WEIGHTS_FILE))
        meta = {"format_version": FORMAT_VERSION, "config": asdict(self.config), "loss_history": self.history}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> RetrievalHead:
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise AutotagError(f"no retrieval head in {folder} ({CONFIG_FILE} + {WEIGHTS_FILE}); train one first")
        meta = json.loads((folder / CONFIG_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise AutotagError(f"retrieval head in {folder} has format {meta.get('format_version')}; retrain it")
        known = {f.name for f in fields(RetrievalHeadConfig)}
        unknown = set(meta["config"]) - known
        if unknown:
            raise AutotagError(f"retrieval head config in {folder} has unknown keys {sorted(unknown)}")
        config = RetrievalHeadConfig(**meta["config"])
        return cls(config, load_file(str(folder / WEIGHTS_FILE)), meta.get("loss_history"))


def has_retrieval_head(folder: str | Path) -> bool:
    return (Path(folder) / CONFIG_FILE).is_file() and (Path(folder) / WEIGHTS_FILE).is_file()


def _positive_mask(labels: np.ndarray) -> np.ndarray:
    """(N, N) bool: items sharing a label. labels: (N,) class ids or (N, L) indicator matrix."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return labels[:, None] == labels[None, :]
    y = (labels > 0).astype(np.float32)
    return (y @ y.T) > 0


def _pairs(z: Any, positives: Any) -> tuple[Any, Any, Any, Any]:
    """(similarity matrix, diagonal mask, positive pairs without self, negative pairs)."""
    import torch

    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    return z @ z.T, eye, positives & ~eye, ~positives


@RETRIEVAL_LOSSES.register("supcon")
def _supcon(z: Any, positives: Any, cfg: RetrievalHeadConfig) -> Any:
    import torch

    sim, eye, pos, _ = _pairs(z, positives)
    logits = (sim / cfg.temperature).masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    has_pos = pos.any(dim=1)
    per_anchor = -(log_prob.masked_fill(~pos, 0.0).sum(dim=1)) / pos.sum(dim=1).clamp(min=1)
    return per_anchor[has_pos].mean() if has_pos.any() else sim.sum() * 0


def _distances(sim: Any) -> Any:
    return (2 - 2 * sim).clamp(min=1e-9)  # squared euclidean distance between unit vectors


@RETRIEVAL_LOSSES.register("triplet")
def _triplet(z: Any, positives: Any, cfg: RetrievalHeadConfig) -> Any:
    import torch

    sim, _, pos, neg = _pairs(z, positives)
    dist = _distances(sim)
    hardest_pos = dist.masked_fill(~pos, 0.0).max(dim=1).values
    hardest_neg = dist.masked_fill(~neg, float("inf")).min(dim=1).values
    valid = pos.any(dim=1) & neg.any(dim=1)
    loss = torch.relu(hardest_pos.sqrt() - hardest_neg.sqrt() + cfg.margin)
    return loss[valid].mean() if valid.any() else sim.sum() * 0


@RETRIEVAL_LOSSES.register("contrastive")
def _contrastive(z: Any, positives: Any, cfg: RetrievalHeadConfig) -> Any:
    """Pull positives together, push negatives beyond the margin."""
    import torch

    sim, _, pos, neg = _pairs(z, positives)
    d = _distances(sim).sqrt()
    pos_term = (d[pos] ** 2).mean() if pos.any() else d.sum() * 0
    neg_term = (torch.relu(2 * cfg.margin - d[neg]) ** 2).mean() if neg.any() else d.sum() * 0
    return pos_term + neg_term


def train_retrieval_head(
    embeddings: np.ndarray, labels: np.ndarray, config: RetrievalHeadConfig | None = None, **overrides: Any
) -> RetrievalHead:
    """Fit the projection on labelled embeddings; labels are (N,) class ids or an (N, L) 0/1 matrix."""
    import torch

    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise AutotagError("need at least two embeddings (N, D) to train a retrieval head")
    labels = np.asarray(labels)
    if len(labels) != len(x):
        raise AutotagError(f"{len(labels)} labels for {len(x)} embeddings; give one label row per embedding")
    cfg = config or RetrievalHeadConfig(input_dim=x.shape[1])
    if overrides:
        cfg = RetrievalHeadConfig(**{**asdict(cfg), **overrides})
    cfg.input_dim = x.shape[1]
    cfg.check()

    # A small MLP gains nothing from several threads, and on a busy machine OpenMP spin-waiting makes
    # multi-threaded training many times slower; train on one thread and restore the caller's setting.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(x, labels, cfg)
    finally:
        torch.set_num_threads(threads)


def _fit(x: np.ndarray, labels: np.ndarray, cfg: RetrievalHeadConfig) -> RetrievalHead:
    import torch

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(cfg.input_dim, cfg.hidden_dim), torch.nn.ReLU(), torch.nn.Linear(cfg.hidden_dim, cfg.output_dim)
    )
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, int(np.ceil(len(x) / cfg.batch_size)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    xt = torch.from_numpy(_unit(x))
    lab = labels if labels.ndim == 1 else (labels > 0)
    history: list[float] = []
    for _epoch in range(cfg.epochs):
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            if len(batch) < 2:
                continue
            z = torch.nn.functional.normalize(net(xt[batch]), dim=1)
            positives = torch.from_numpy(_positive_mask(lab[batch]))
            loss = RETRIEVAL_LOSSES.get(cfg.loss)(z, positives, cfg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(batch)
        history.append(total / len(x))
    state = net.state_dict()
    weights = {
        "w1": state["0.weight"].numpy(),
        "b1": state["0.bias"].numpy(),
        "w2": state["2.weight"].numpy(),
        "b2": state["2.bias"].numpy(),
    }
    return RetrievalHead(cfg, weights, history)


def precision_at_k(
    query_vectors: np.ndarray, query_labels: np.ndarray, gallery_vectors: np.ndarray, gallery_labels: np.ndarray,
    k: int = 10,
) -> tuple[float, float]:
    """(mean precision@k, mean average precision@k) of cosine retrieval; labels are (N,) class ids."""
    q, g = _unit(query_vectors), _unit(gallery_vectors)
    top = np.argsort(-(q @ g.T), axis=1)[:, :k]
    hits = (np.asarray(gallery_labels)[top] == np.asarray(query_labels)[:, None]).astype(np.float64)
    precision = hits.mean(axis=1)
    cum = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    ap = (cum * hits).sum(axis=1) / np.maximum(hits.sum(axis=1), 1)
    return float(precision.mean()), float(ap.mean())
