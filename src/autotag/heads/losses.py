"""Multi-label losses by registered name: bce, focal, asl. Each takes (logits, targets in {0,1})."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autotag.registry import Registry

LOSSES: Registry[Callable[..., Any]] = Registry("loss")


def register_loss(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return LOSSES.register(name)


def list_losses() -> list[str]:
    return LOSSES.names()


def create_loss(name: str, **params: Any):  # -> torch.nn.Module
    return LOSSES.get(name)(**params)


def _module(fn: Callable[..., Any]):
    import torch

    class Loss(torch.nn.Module):
        def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return fn(logits, targets.to(logits.dtype))

    return Loss()


@register_loss("bce")
def bce(pos_weight: float | None = None):
    """Binary cross-entropy on logits, mean over entries."""
    import torch.nn.functional as F

    def loss(logits, targets):
        weight = None
        if pos_weight is not None:
            weight = 1 + (pos_weight - 1) * targets
        return F.binary_cross_entropy_with_logits(logits, targets, weight=weight)

    return _module(loss)


@register_loss("focal")
def focal(gamma: float = 2.0, alpha: float = 0.25):
    """Focal loss (Lin et al.): down-weights easy entries by (1 - p_t)^gamma."""
    import torch
    import torch.nn.functional as F

    def loss(logits, targets):
        ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        a_t = alpha * targets + (1 - alpha) * (1 - targets)
        return (a_t * (1 - p_t) ** gamma * ce).mean() * 4  # x4 keeps its scale near BCE's for alpha=.25

    return _module(loss)


@register_loss("asl")
def asl(gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05, eps: float = 1e-8):
    """Asymmetric loss (Ridnik et al.): focuses negatives harder and shifts their probability by `clip`."""
    import torch

    def loss(logits, targets):
        p = torch.sigmoid(logits)
        p_neg = (p - clip).clamp(min=0) if clip > 0 else p
        loss_pos = targets * torch.log(p.clamp(min=eps)) * (1 - p) ** gamma_pos
        loss_neg = (1 - targets) * torch.log((1 - p_neg).clamp(min=eps)) * p_neg**gamma_neg
        return -(loss_pos + loss_neg).mean()

    return _module(loss)
