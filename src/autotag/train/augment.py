"""Batched image augmentations on torch tensors with one strength knob `k` (0 = none, 1 = strong).

Everything is a per-sample random affine map (rotation, zoom-in crop, translation, shear, aspect,
horizontal flip) applied with one `grid_sample`, then brightness/contrast jitter. Each operation
fires with a probability that grows with k, and its range grows with k too, so one number moves
the whole recipe from gentle to heavy. No torchvision: only torch tensor ops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class AugmentSpec:
    strength: float = 0.5  # k
    flip: bool = True  # horizontal flips make sense for clothes and photos, not for text
    max_rotation_deg: float = 20.0
    max_translate: float = 0.12  # fraction of the image side
    max_zoom: float = 0.25  # zoom-in fraction, i.e. a random crop of (1 - zoom) of the side
    max_shear_deg: float = 12.0
    max_log_aspect: float = 0.25
    max_jitter: float = 0.3  # brightness / contrast, relative

    def probability(self) -> float:
        k = min(max(self.strength, 0.0), 1.0)
        return 0.0 if k == 0 else min(1.0, 0.25 + 0.75 * k)


def augment_batch(x, spec: AugmentSpec, generator=None):
    """x: (N, C, H, W) float tensor, already normalised. Returns a new tensor of the same shape."""
    import torch
    import torch.nn.functional as F

    k = min(max(spec.strength, 0.0), 1.0)
    n = x.shape[0]
    if k == 0 or n == 0:
        return x
    p = spec.probability()
    dev = x.device

    def uniform(scale: float):
        return (torch.rand(n, generator=generator) * 2 - 1).to(dev) * scale

    def fires():
        return (torch.rand(n, generator=generator) < p).to(dev).float()

    angle = uniform(math.radians(spec.max_rotation_deg) * k) * fires()
    shear = uniform(math.radians(spec.max_shear_deg) * k) * fires()
    zoom = 1 - torch.rand(n, generator=generator).to(dev) * spec.max_zoom * k * fires()
    log_aspect = uniform(spec.max_log_aspect * k) * fires()
    moved = fires()
    tx, ty = uniform(spec.max_translate * 2 * k) * moved, uniform(spec.max_translate * 2 * k) * moved
    flip = torch.ones(n, device=dev)
    if spec.flip:
        flip = torch.where(torch.rand(n, generator=generator).to(dev) < 0.5, -1.0, 1.0)

    # Output->input sampling matrix: A = R(angle) @ Shear @ diag(zoom*aspect*flip, zoom/aspect)
    sx = zoom * torch.exp(log_aspect) * flip
    sy = zoom * torch.exp(-log_aspect)
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    a00 = cos * sx
    a01 = (cos * tan - sin) * sy
    a10 = sin * sx
    a11 = (sin * tan + cos) * sy
    theta = torch.stack([torch.stack([a00, a01, tx], 1), torch.stack([a10, a11, ty], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    jitter = fires().view(n, 1, 1, 1)
    brightness = uniform(spec.max_jitter * k).view(n, 1, 1, 1) * jitter
    contrast = 1 + uniform(spec.max_jitter * k).view(n, 1, 1, 1) * jitter
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return (out - mean) * contrast + mean + brightness
