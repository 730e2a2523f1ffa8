"""Training-time augmentation, for generalisation beyond the phantoms (SynthSeg's lesson):
random intensity scale/offset, noise, blur and gamma, and random in-plane rotation, scaling
and translation. Intensity changes are drawn per sample; all are applied to whole batches.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from training.data import normalise

__all__ = ["intensity_hu", "spatial", "blur_gamma", "jitter_mask_edge"]


def intensity_hu(hu: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """HU (B, ...) -> normalised [0, 1] after a random linear scale (0.9-1.1), offset (+-25 HU)
    and Gaussian noise (SD 0-20 HU), drawn per sample."""
    shape = (hu.shape[0],) + (1,) * (hu.ndim - 1)
    scale = 1.0 + strength * rng.uniform(-0.1, 0.1, shape)
    offset = strength * rng.uniform(-25.0, 25.0, shape)
    noise_sd = strength * rng.uniform(0.0, 20.0, shape)
    out = hu.astype(np.float32) * scale.astype(np.float32) + offset.astype(np.float32)
    out += rng.standard_normal(hu.shape, dtype=np.float32) * noise_sd.astype(np.float32)
    return normalise(out)


def spatial(images: torch.Tensor, labels: torch.Tensor | None, rng: np.random.Generator,
            max_rotation_deg: float = 12.0, scale_range: tuple[float, float] = (0.85, 1.15),
            max_shift: float = 0.08) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random rotation/scale/shift per sample: images bilinear (edges replicated), labels
    nearest. ``images`` (B, C, H, W) float; ``labels`` (B, H, W) int64 or None."""
    batch = images.shape[0]
    angle = np.radians(rng.uniform(-max_rotation_deg, max_rotation_deg, batch))
    scale = rng.uniform(*scale_range, batch)
    shift = rng.uniform(-max_shift, max_shift, (batch, 2))
    theta = np.zeros((batch, 2, 3), np.float32)
    theta[:, 0, 0] = np.cos(angle) / scale
    theta[:, 0, 1] = -np.sin(angle) / scale
    theta[:, 1, 0] = np.sin(angle) / scale
    theta[:, 1, 1] = np.cos(angle) / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(torch.from_numpy(theta), list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                           align_corners=False)
    if labels is not None:
        labels = F.grid_sample(labels[:, None].float(), grid, mode="nearest",
                               padding_mode="zeros", align_corners=False)[:, 0].long()
    return images, labels


def blur_gamma(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Half the batches get a Gaussian blur (sigma 0.3-1.0 pixel; thicker reconstruction
    kernels); then a per-sample gamma (0.8-1.25) on the [0, 1] intensities."""
    if rng.random() < 0.5:
        sigma = rng.uniform(0.3, 1.0)
        radius = max(1, math.ceil(2 * sigma))
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(x ** 2) / (2 * sigma ** 2))
        kernel = kernel / kernel.sum()
        channels = images.shape[1]
        horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
        vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
        images = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="replicate"), horizontal,
                          groups=channels)
        images = F.conv2d(F.pad(images, (0, 0, radius, radius), mode="replicate"), vertical,
                          groups=channels)
    shape = (images.shape[0],) + (1,) * (images.ndim - 1)
    gamma = torch.from_numpy(np.exp(rng.uniform(np.log(0.8), np.log(1.25), shape))
                             .astype(np.float32))
    return images.clamp(0.0, 1.0) ** gamma


def jitter_mask_edge(masks: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Per sample, grow (a third), shrink (a third) or keep a mask's edge by one pixel, so a
    model fed a mask copes with a segmentation that is a little off. ``masks`` (B, C, H, W)."""
    out = []
    for sample in masks:
        choice = rng.integers(3)
        if choice == 0:
            sample = F.max_pool2d(sample[None], 3, stride=1, padding=1)[0]
        elif choice == 1:
            sample = -F.max_pool2d(-sample[None], 3, stride=1, padding=1)[0]
        out.append(sample)
    return torch.stack(out)
