"""Fine-tuning the EfficientNet-Lite backbone itself in PyTorch.

Images are held in memory as one uint8 tensor (N, C, H, W) at (or near) the training resolution,
so a batch is an index, a resize, a normalisation and the batched augmentation of
`autotag.train.augment`: no per-image Python work, which matters on a 2-core CPU.

The network is the pretrained backbone, a pooling of its last feature map (global, or a g x g grid
that keeps coarse spatial layout: a spatial-pyramid level), dropout and a new linear classifier.
Its two outputs follow the encoder contract: (task logits, embedding).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from autotag.registry import Registry
from autotag.train.augment import AugmentSpec, augment_batch

# Fine-tuning schedules after the linear warm-up: (progress after warm-up in [0, 1]) -> rate multiplier,
# and the multiplier the warm-up starts from. Unlike the heads' per-epoch schedules (autotag.heads.training)
# these anneal by progress, so a wall-clock budget still anneals fully.
FINETUNE_SCHEDULES: Registry[tuple[Callable[[float], float], float]] = Registry("fine-tune schedule")


def _cosine(rest: float, floor: float = 0.0) -> float:
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * rest))


FINETUNE_SCHEDULES.register("onecycle", (lambda rest: _cosine(rest, 1 / 4000), 0.05))
FINETUNE_SCHEDULES.register("cosine", (_cosine, 0.0))
FINETUNE_SCHEDULES.register("step", (lambda rest: 0.1 ** min(2, int(rest * 3)), 0.0))


@dataclass
class FineTuneConfig:
    encoder: str = "efficientnet_lite0"
    size: int = 64  # training / inference resolution (reduced on CPU)
    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 3e-4
    schedule: str = "onecycle"
    warmup_fraction: float = 0.15
    train_blocks: int | str = "all"  # "all", or how many last MBConv blocks to train (plus the head conv)
    pool_grid: int = 1  # 1 = global average; g = g x g grid of averages, embedding dim g*g*features
    tiles: int = 1  # t > 1: each of the t x t image tiles embedded on its own (see pool_features)
    dropout: float = 0.2
    loss: str = "ce"  # "ce" (single label, with label smoothing) or a multi-label loss name: bce/focal/asl
    label_smoothing: float = 0.1
    augment: float = 0.3  # strength k of autotag.train.augment
    flip: bool = True
    ema_decay: float = 0.998  # 0 disables the exponential moving average of the weights
    tta: bool = True  # evaluate on the image and its mirror, average
    seed: int = 0
    threads: int | None = None
    max_minutes: float | None = None  # wall-clock budget: the schedule anneals by time and stops at the end
    val_monitor: int = 1000  # validation images scored after each epoch (the full split is scored at the end)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_finetune_net(encoder: str, num_outputs: int, pool_grid: int = 1, dropout: float = 0.2,
                       pretrained_model=None, tiles: int = 1):
    """A fresh network: pretrained backbone (or the given one) + pooling + linear classifier."""
    import torch
    from torch import nn

    from autotag.encoders.efficientnet_lite import build_torch_model, pool_features, pooled_dim, spec_for

    class FineTuneNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = pretrained_model if pretrained_model is not None else build_torch_model(encoder)
            self.embedding_dim = pooled_dim(spec_for(encoder).embedding_dim, pool_grid, tiles)
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(self.embedding_dim, num_outputs)

        def embed(self, x: torch.Tensor) -> torch.Tensor:
            return pool_features(self.backbone, x, pool_grid, tiles)[1]

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            embedding = self.embed(x)
            return self.classifier(self.dropout(embedding)), embedding

    return FineTuneNet()


def prepare_batch(images_u8, size: int, mean: float = 127.0, std: float = 128.0):
    """uint8 (N, C, H, W) -> normalised float (N, 3, size, size), channels-last."""
    import torch
    import torch.nn.functional as F

    x = images_u8.float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > size)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last)


def images_to_uint8(images, size: int) -> np.ndarray:
    """PIL images -> uint8 (N, 3, size, size): shorter side to `size`, centre square."""
    from PIL import Image

    out = np.zeros((len(images), 3, size, size), np.uint8)
    for i, im in enumerate(images):
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.BILINEAR, reducing_gap=3.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        out[i] = np.asarray(im.crop((left, top, left + size, top + size))).transpose(2, 0, 1)
    return out


def _set_trainable(net, train_blocks: int | str) -> None:
    if train_blocks == "all":
        return
    n = int(train_blocks)
    for p in net.backbone.parameters():
        p.requires_grad_(False)
    blocks = list(net.backbone._blocks)
    trainable = blocks[len(blocks) - n:] if n > 0 else []
    for module in [*trainable, net.backbone._conv_head, net.backbone._bn1]:
        for p in module.parameters():
            p.requires_grad_(True)


def _make_loss(config: FineTuneConfig):
    import torch

    if config.loss == "ce":
        return torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    from autotag.heads.losses import create_loss

    return create_loss(config.loss)


def lr_factor(schedule: str, progress: float, warmup_fraction: float) -> float:
    """Learning-rate multiplier at `progress` in [0, 1] of training.

    onecycle: linear warm-up from 1/20 to 1, then cosine down to 1/4000; cosine: warm-up then cosine
    to 0; step: warm-up then /10 at 1/3 and 2/3 of the remaining steps.
    """
    anneal, start = FINETUNE_SCHEDULES.get(schedule)
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup_fraction:
        return start + (1 - start) * progress / warmup_fraction
    return anneal((progress - warmup_fraction) / max(1e-9, 1 - warmup_fraction))


@dataclass
class FineTuneResult:
    net: Any  # the trained FineTuneNet (EMA weights if they validated better)
    config: FineTuneConfig
    history: list[dict[str, float]]
    seconds: float
    used_ema: bool


def predict_logits(net, images_u8, size: int, batch_size: int = 256, tta: bool = False,
                   with_embeddings: bool = False, both: bool = False):
    """Eval-mode forward over a uint8 tensor; optional mirror test-time augmentation.

    With tta and both=True returns (plain logits, tta logits) from one pass over the data.
    """
    import torch

    net.eval()
    device = next(net.parameters()).device
    outs, embs, plain = [], [], []
    with torch.inference_mode():
        for start in range(0, len(images_u8), batch_size):
            x = prepare_batch(images_u8[start:start + batch_size], size).to(device)
            logits, emb = net(x)
            plain.append(logits.float().cpu())
            if tta:
                logits = (logits + net(torch.flip(x, dims=[3]))[0]) / 2
            outs.append(logits.float().cpu())
            if with_embeddings:
                embs.append(emb.float().cpu())
    logits = torch.cat(outs).numpy() if outs else np.zeros((0, net.classifier.out_features), np.float32)
    if tta and both:
        return (torch.cat(plain).numpy() if plain else logits), logits
    if with_embeddings:
        return logits, (torch.cat(embs).numpy() if embs else np.zeros((0, net.embedding_dim), np.float32))
    return logits


def _score(logits: np.ndarray, targets: np.ndarray, single_label: bool) -> float:
    """Validation score used to pick the checkpoint: accuracy, or micro-F1 at 0.5."""
    if single_label:
        return float((logits.argmax(1) == targets).mean())
    pred = logits > 0
    tp = (pred & (targets > 0)).sum()
    return float(2 * tp / max(1, pred.sum() + (targets > 0).sum()))


def finetune(train_images, train_targets, val_images, val_targets, config: FineTuneConfig,
             log: Callable[[str], None] = print) -> FineTuneResult:
    """Fine-tune a pretrained backbone. Targets: int class ids (loss "ce") or multi-hot (N, L)."""
    import torch

    lr_factor(config.schedule, 0.0, config.warmup_fraction)  # validates the name before any work
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    single_label = config.loss == "ce"
    train_x = torch.as_tensor(np.ascontiguousarray(train_images))
    val_x = torch.as_tensor(np.ascontiguousarray(val_images))
    train_y = torch.as_tensor(np.asarray(train_targets), dtype=torch.long if single_label else torch.float32)
    num_outputs = int(train_y.max()) + 1 if single_label else train_y.shape[1]
    if single_label and val_targets is not None and len(val_targets):
        num_outputs = max(num_outputs, int(np.max(val_targets)) + 1)

    net = build_finetune_net(config.encoder, num_outputs, config.pool_grid, config.dropout, tiles=config.tiles)
    _set_trainable(net, config.train_blocks)
    net = net.to(device).to(memory_format=torch.channels_last)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(train_x) // config.batch_size)
    total = steps_per_epoch * config.epochs
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    loss_fn = _make_loss(config)
    scaler = torch.amp.GradScaler("cuda") if cuda else None
    ema = copy.deepcopy(net).eval() if config.ema_decay > 0 else None
    if ema is not None:
        for p in ema.parameters():
            p.requires_grad_(False)
    aug = AugmentSpec(strength=config.augment, flip=config.flip)
    gen = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    start = time.time()
    step = 0
    out_of_time = False

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), transient=True) as progress:
        task = progress.add_task("fine-tune", total=total)
        for epoch in range(config.epochs):
            net.train()
            order = torch.randperm(len(train_x), generator=gen)
            running, seen = 0.0, 0
            for b in range(steps_per_epoch):
                # Progress is steps done, or wall-clock time used when a budget is set, whichever is
                # further: under a budget the schedule still anneals fully instead of being cut off.
                done = step / total
                if config.max_minutes:
                    done = max(done, (time.time() - start) / 60 / config.max_minutes)
                if done >= 1:
                    out_of_time = True
                    break
                for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                    group["lr"] = base * lr_factor(config.schedule, done, config.warmup_fraction)
                idx = order[b * config.batch_size:(b + 1) * config.batch_size]
                x = augment_batch(prepare_batch(train_x[idx], config.size), aug, gen).to(device)
                x = x.contiguous(memory_format=torch.channels_last)
                y = train_y[idx].to(device)
                with torch.autocast("cuda", enabled=cuda):
                    logits, _ = net(x)
                    loss = loss_fn(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                step += 1
                if ema is not None:
                    decay = min(config.ema_decay, (1 + step) / (10 + step))
                    with torch.no_grad():
                        for pe, pn in zip(ema.parameters(), net.parameters(), strict=True):
                            pe.lerp_(pn, 1 - decay)
                        for be, bn in zip(ema.buffers(), net.buffers(), strict=True):
                            be.copy_(bn)
                running += float(loss.detach()) * len(idx)
                seen += len(idx)
                progress.update(task, advance=1, description=f"epoch {epoch + 1} loss {running / seen:.4f}")
            monitored = ema if ema is not None else net
            n_val = min(len(val_x), config.val_monitor)
            val_logits = predict_logits(monitored, val_x[:n_val], config.size)
            row = {"epoch": epoch + 1, "steps": step, "train_loss": running / max(1, seen),
                   "val_score": _score(val_logits, np.asarray(val_targets)[:n_val], single_label),
                   "lr": optimizer.param_groups[0]["lr"], "minutes": (time.time() - start) / 60}
            history.append(row)
            log("  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            if out_of_time:
                log(f"schedule finished by the time budget ({config.max_minutes} min) in epoch {epoch + 1}")
                break
    used_ema = False
    if ema is not None:
        targets = np.asarray(val_targets)
        raw_score = _score(predict_logits(net, val_x, config.size), targets, single_label)
        ema_score = _score(predict_logits(ema, val_x, config.size), targets, single_label)
        used_ema = ema_score >= raw_score
        chosen = "ema" if used_ema else "raw"
        log(f"full validation: raw {raw_score:.4f}, ema {ema_score:.4f} -> using {chosen}")
    final = ema if used_ema else net
    final.eval()
    return FineTuneResult(final, config, history, time.time() - start, used_ema)
