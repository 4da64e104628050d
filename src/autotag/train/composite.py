"""`autotag train`: dataset spec -> model folder (optionally fine-tuning the backbone first).

Flow: load the dataset and its splits -> [fine-tune the backbone on train/val images] -> write the
encoder ONNX into the folder when it is not a registered encoder as-is -> embed every split with that
ONNX encoder (the same code path that serves it) -> fit the composite heads (staged) -> fit per-label
thresholds on validation -> score validation/test with every decision rule -> write the folder,
curves.png and metrics.json.
"""

from __future__ import annotations

import hashlib
import json
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from autotag.types import AutotagError


@dataclass
class TrainConfig:
    # encoder
    encoder: str = "efficientnet_lite0"
    input_size: int | None = None  # None = the encoder's own size
    pool_grid: int = 1  # g > 1 pools the last feature map on a g x g grid (keeps coarse layout)
    tiles: int = 1  # t > 1 embeds each of the t x t image tiles on its own (collages, grids)
    # heads (autotag.heads.CompositeTagger)
    visual_hidden: int = 512
    tag_hidden: int = 256
    count_hidden: int = 64
    loss: str = "bce"
    use_user_tags: bool = True
    max_user_tags: int = 1000
    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 3e-4
    schedule: str = "cosine"
    patience: int = 8
    seed: int = 0
    # decisions
    rule: str = "top-k-predicted"
    k: int = 3
    floor: float = 0.1
    threshold_objective: str = "f1"
    target_precision: float = 0.9
    # fine-tuning (autotag.train.finetune), used with --finetune
    finetune_size: int | None = None  # None = input_size
    finetune_epochs: int = 3
    finetune_lr: float = 2e-3
    finetune_batch_size: int = 64
    finetune_blocks: str = "all"  # "all" or the number of last blocks to train
    augment: float = 0.3
    flip: bool = True
    finetune_max_minutes: float | None = None
    # data
    limit: int | None = None  # at most this many images per split (quick runs)
    val_fraction: float = 0.1  # carved from train when the dataset has no validation split

    @classmethod
    def from_toml(cls, path: str | Path | None, **overrides: Any) -> TrainConfig:
        values: dict[str, Any] = {}
        if path:
            p = Path(path).expanduser()
            if not p.is_file():
                raise AutotagError(f"training config {p} not found")
            try:
                values = tomllib.loads(p.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise AutotagError(f"training config {p} is not valid TOML: {exc}") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise AutotagError(f"unknown training settings {unknown}; valid: {', '.join(sorted(known))}")
        config = cls(**values)
        try:
            config.check_values()
        except AutotagError as exc:
            raise AutotagError(f"training config {path}: {exc}" if path else str(exc)) from exc
        return config

    def check_values(self) -> None:
        """Every setting of the right type and in range (a TOML file can hold anything)."""
        for f in fields(self):
            value, kinds = getattr(self, f.name), str(f.type).replace(" ", "").split("|")
            if value is None and "None" in kinds:
                continue
            if not any(_KIND_TEST[k](value) for k in kinds if k in _KIND_TEST):
                example = f.default if f.default is not None else _EXAMPLES.get(f.name)
                raise AutotagError(f"{f.name} = {_toml(value)} is not {_KIND_WORDS[kinds[0]]}; "
                                   f"e.g. {f.name} = {_toml(example)}")
            low, high, low_open = _RANGES.get(f.name, (None, None, False))
            too_low = low is not None and (value < low or (low_open and value == low))
            if too_low or (high is not None and value > high):
                bounds = [f"{'above' if low_open else 'at least'} {low}" if low is not None else "",
                          f"at most {high}" if high is not None else ""]
                raise AutotagError(f"{f.name} = {_toml(value)} is out of range: it must be "
                                   f"{' and '.join(b for b in bounds if b)}")
        if not (self.finetune_blocks == "all" or self.finetune_blocks.isdigit()):
            raise AutotagError(f"finetune_blocks = {_toml(self.finetune_blocks)}: give \"all\" or a number of blocks, "
                               'e.g. "3"')

    def check(self, finetune: bool = False) -> None:
        """Refuse bad values and unknown names before any image is read: a bad rule would otherwise be saved
        into the model folder and only fail when tagging, a bad loss or epoch count after minutes of embedding."""
        self.check_values()
        from autotag.decide import OBJECTIVES, RULES
        from autotag.encoders import ENCODERS
        from autotag.heads.losses import LOSSES
        from autotag.heads.training import SCHEDULES

        registries = {"encoder": ENCODERS, "rule": RULES, "loss": LOSSES, "schedule": SCHEDULES,
                      "threshold_objective": OBJECTIVES}
        for key, registry in registries.items():
            try:
                registry.check(getattr(self, key))
            except AutotagError as exc:
                raise AutotagError(f"training setting {key}: {exc}") from exc
        if RULES.get(self.rule).needs == "truth":
            raise AutotagError(f"training setting rule: {self.rule} needs the true labels, so it cannot tag new "
                               "images; choose another rule")
        encoder = ENCODERS.get(self.encoder)
        size = self.input_size or encoder.spec.input_size
        reshaped = size != encoder.spec.input_size or self.pool_grid != 1 or self.tiles != 1
        if not encoder.trainable and (finetune or reshaped):
            trainable = [name for name, e in ENCODERS.items() if e.trainable]
            raise AutotagError(f"encoder {self.encoder} is inference-only: heads can be trained on its embeddings, "
                               "but fine-tuning, input_size, pool_grid and tiles need one of "
                               f"{', '.join(trainable)}")
        for key, value in (("input_size", size), ("finetune_size", self.finetune_size or size)):
            if value % self.tiles:
                raise AutotagError(f"{key} = {value} is not a multiple of tiles = {self.tiles}")
        if self.tiles > 1 and self.pool_grid > 1:
            raise AutotagError("choose pool_grid or tiles, not both")


_KIND_TEST = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
}
_KIND_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a quoted name"}
_EXAMPLES = {"input_size": 224, "finetune_size": 224, "finetune_max_minutes": 30, "limit": 1000}
# setting -> (lowest, highest, lowest excluded); None = no bound
_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "input_size": (32, None, False), "pool_grid": (1, None, False), "tiles": (1, None, False),
    "visual_hidden": (1, None, False), "tag_hidden": (1, None, False), "count_hidden": (1, None, False),
    "max_user_tags": (1, None, False), "epochs": (1, None, False), "batch_size": (1, None, False),
    "lr": (0, None, True), "weight_decay": (0, None, False), "patience": (0, None, False),
    "k": (1, None, False), "floor": (0, 1, False), "target_precision": (0, 1, True),
    "finetune_size": (32, None, False), "finetune_epochs": (1, None, False), "finetune_lr": (0, None, True),
    "finetune_batch_size": (1, None, False), "augment": (0, 1, False), "finetune_max_minutes": (0, None, True),
    "limit": (1, None, False), "val_fraction": (0, 1, True),
}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else str(value)


@dataclass
class SplitData:
    sources: list[str]
    Y: np.ndarray
    user_tags: list[list[str]]


def _splits(spec: str, cfg: TrainConfig) -> tuple[list[str], dict[str, SplitData], dict[str, Any]]:
    from autotag.data import Dataset, load_dataset

    data = load_dataset(spec)
    if len(data) == 0:
        raise AutotagError(f"dataset {spec} has no images")
    present = data.splits()
    val_name = next((n for n in ("val", "validation") if n in present), None)
    parts: dict[str, Any] = {}
    if "train" in present:
        parts["train"] = data.split("train")
    else:
        parts["train"] = data if not present else None
        if parts["train"] is None:
            raise AutotagError(f"dataset {spec} has splits {present} but none is called train")
    if val_name:
        parts["val"] = data.split(val_name)
    if "test" in present:
        parts["test"] = data.split("test")
    out: dict[str, SplitData] = {}
    rng = np.random.default_rng(cfg.seed)
    for name, part in parts.items():
        records = list(part.records)
        if cfg.limit and len(records) > cfg.limit:
            keep = np.sort(rng.choice(len(records), cfg.limit, replace=False))
            records = [records[i] for i in keep]
        Y = Dataset(records, list(data.labels)).label_matrix()
        out[name] = SplitData([r.source for r in records], Y, [list(r.user_tags) for r in records])
    if "val" not in out:
        train = out["train"]
        order = rng.permutation(len(train.sources))
        n_val = max(1, int(len(order) * cfg.val_fraction))
        pick = (lambda idx: SplitData([train.sources[i] for i in idx], train.Y[idx],  # noqa: E731
                                      [train.user_tags[i] for i in idx]))
        out["val"], out["train"] = pick(order[:n_val]), pick(order[n_val:])
    digest = hashlib.sha256("\n".join(sorted(r.source for r in data.records)).encode()).hexdigest()[:16]
    info = {"spec": spec, "name": data.name, "n_images": len(data), "single_label": data.single_label,
            "sizes": {k: len(v.sources) for k, v in out.items()}, "fingerprint": digest}
    return list(data.labels), out, info


def _load_pixels(sources: list[str], size: int) -> np.ndarray:
    from autotag.ingest import decode_image, load_source
    from autotag.train.finetune import images_to_uint8

    return images_to_uint8([decode_image(load_source(s)) for s in sources], size)


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """One panel per training stage: training and validation loss by epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(dict.fromkeys(str(h.get("stage", "train")) for h in history))
    if not stages:
        return
    fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 2.8), squeeze=False)
    for ax, stage in zip(axes[0], stages, strict=True):
        rows = [h for h in history if str(h.get("stage", "train")) == stage]
        for key in ("train_loss", "val_loss", "val_score"):
            ys = [h[key] for h in rows if key in h]
            if ys:
                ax.plot(range(1, len(ys) + 1), ys, label=key.replace("_", " "))
        ax.set_title(stage)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def evaluate_rules(model: Any, Y: np.ndarray, embeddings: np.ndarray, user_tags: list[list[str]] | None,
                   k: int = 3, floor: float = 0.1) -> dict[str, dict[str, Any]]:
    """multilabel_report of every registered decision rule on one split (per_class left out), keyed by
    the rule spec `autotag eval --rule` accepts ("top-k:3", "per-label", ...)."""
    from autotag.decide import RULES, decide, rule_spec
    from autotag.metrics import multilabel_report

    scores, counts = model.estimator.predict_proba_and_count(embeddings, user_tags)
    arguments = {"k": k, "floor": floor, "threshold": model.global_threshold}
    supplies = {"counts": counts, "thresholds": model.thresholds, "truth": Y}
    out = {}
    for name, rule in RULES.items():
        params = {rule.argument: arguments[rule.argument]} if rule.argument else {}
        report = multilabel_report(Y, decide(name, scores, **params, **supplies), scores)
        out[rule_spec(name, params)] = {key: v for key, v in report.items() if key != "per_class"}
    return out


def train_model(dataset: str, out: str | Path, config: TrainConfig | None = None, finetune: bool = False,
                log: Callable[[str], None] = print) -> Path:
    """Train a model folder from a dataset spec; returns the folder."""
    from autotag.artifact import export_encoder, load_model, save_model
    from autotag.decide import fit_thresholds
    from autotag.encoders import encoder_spec
    from autotag.encoders.efficientnet_lite import pooled_dim
    from autotag.heads import CompositeTagger
    from autotag.pipeline import Tagger

    cfg = config or TrainConfig()
    cfg.check(finetune)
    t0 = time.time()
    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    labels, splits, data_info = _splits(dataset, cfg)
    log(f"dataset {dataset}: {data_info['sizes']} images, {len(labels)} labels")
    if cfg.use_user_tags and not any(tags for split in splits.values() for tags in split.user_tags):
        log("warning: the dataset has no user tags, so the model will not use them (--user-tags at tagging "
            "time will change nothing); give a manifest with a user_tags column to train with them")
    spec = encoder_spec(cfg.encoder)
    size = cfg.input_size or spec.input_size
    history: list[dict[str, Any]] = []
    backbone = None
    if finetune:
        from autotag.train.finetune import FineTuneConfig
        from autotag.train.finetune import finetune as run_finetune

        ft_size = cfg.finetune_size or size
        log(f"fine-tuning {cfg.encoder} at {ft_size}px")
        ft_cfg = FineTuneConfig(encoder=cfg.encoder, size=ft_size, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr,
                                batch_size=cfg.finetune_batch_size, pool_grid=cfg.pool_grid, tiles=cfg.tiles,
                                loss="bce",
                                train_blocks=cfg.finetune_blocks if cfg.finetune_blocks == "all"
                                else int(cfg.finetune_blocks), augment=cfg.augment, flip=cfg.flip,
                                seed=cfg.seed, max_minutes=cfg.finetune_max_minutes, tta=False)
        result = run_finetune(_load_pixels(splits["train"].sources, ft_size), splits["train"].Y.astype(np.float32),
                              _load_pixels(splits["val"].sources, ft_size), splits["val"].Y, ft_cfg, log=log)
        backbone = result.net.backbone
        history += [{"stage": "fine-tune", **h} for h in result.history]
    custom = finetune or size != spec.input_size or cfg.pool_grid != 1 or cfg.tiles != 1
    encoder_info = {"name": cfg.encoder, "input_size": size, "pool_grid": cfg.pool_grid, "tiles": cfg.tiles,
                    "embedding_dim": pooled_dim(spec.embedding_dim, cfg.pool_grid, cfg.tiles),
                    "onnx": "encoder.onnx" if custom else None,
                    "finetuned": finetune}
    if custom:
        diff = export_encoder(folder, cfg.encoder, size, cfg.pool_grid, backbone, cfg.tiles)
        log(f"encoder.onnx written (max abs diff vs PyTorch {diff:.1e})")
    from autotag.artifact import make_encoder

    tagger = Tagger(make_encoder(folder, encoder_info))
    emb = {name: tagger.embed(part.sources, progress=True) for name, part in splits.items()}
    log(f"embedded {sum(len(e) for e in emb.values())} images ({time.time() - t0:.0f}s so far)")

    tags = {name: (part.user_tags if cfg.use_user_tags else None) for name, part in splits.items()}
    est = CompositeTagger(labels=labels, visual_hidden=cfg.visual_hidden, tag_hidden=cfg.tag_hidden,
                          count_hidden=cfg.count_hidden, loss=cfg.loss, use_user_tags=cfg.use_user_tags,
                          max_user_tags=cfg.max_user_tags, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                          weight_decay=cfg.weight_decay, schedule=cfg.schedule, patience=cfg.patience, seed=cfg.seed)
    est.fit(emb["train"], splits["train"].Y, tags["train"], val=(emb["val"], splits["val"].Y, tags["val"]))
    history += est.history_
    val_scores = est.predict_proba(emb["val"], tags["val"])
    thresholds = fit_thresholds(splits["val"].Y, val_scores, cfg.threshold_objective, cfg.target_precision)
    rule = cfg.rule if not data_info["single_label"] or cfg.rule != "top-k-predicted" else "top-k"
    decision = {"rule": rule, "k": 1 if data_info["single_label"] and rule == "top-k" else cfg.k,
                "floor": cfg.floor}
    save_model(folder, est, encoder=encoder_info, decision=decision, thresholds=thresholds,
               training={**asdict(cfg), "finetune": finetune, "seconds": round(time.time() - t0, 1)},
               dataset=data_info)
    model = load_model(folder)
    metrics = {name: evaluate_rules(model, splits[name].Y, emb[name], tags[name], cfg.k, cfg.floor)
               for name in splits if name != "train"}
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    try:
        plot_curves(history, folder / "curves.png")
    except Exception as exc:  # a plot must never lose a trained model
        log(f"could not draw curves.png: {exc}")
    main = metrics.get("test", metrics["val"])
    log(f"done in {time.time() - t0:.0f}s: " + ", ".join(
        f"{name} H-F1 {m['H-F1'] * 100:.1f}" for name, m in main.items()))
    return folder
