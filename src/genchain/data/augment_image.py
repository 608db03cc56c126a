"""Image augmentation on batched tensors with kornia: flip, resized crop, rotation and translation (one affine
warp), colour jitter, Gaussian noise and random erasing.

Why the random parameters are drawn here rather than by ``kornia.augmentation`` modules: those draw from
torch's global generator once per batch (ColorJitter even picks one order for the whole batch), so a row's
copy would depend on which other rows shared its batch. Here every number a copy uses comes from that copy's
own NumPy generator, seeded from (seed, row, copy), and the batch only does the arithmetic, with kornia's
kernels -- the ones ``kornia.augmentation`` calls: ``warp_affine`` and the torchvision-compatible colour
adjustments. So output is byte-identical for a seed whatever the batch size (on a given device: CPU and CUDA
may round interpolation differently).

The four geometric operations compose into one 2x3 matrix per image so the image is resampled once (bilinear,
black outside the source). The colour operations match ``kornia.augmentation.ColorJitter`` in a fixed order
(brightness, contrast, saturation, hue); grey images get brightness and contrast only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from kornia.enhance import (
    adjust_brightness_accumulative,
    adjust_contrast_with_mean_subtraction,
    adjust_hue,
    adjust_saturation_with_gray_subtraction,
)
from kornia.geometry.transform import warp_affine

_ASPECT = (3 / 4, 4 / 3)  # aspect ratios of random crops, as torchvision's RandomResizedCrop
_ERASE_AREA = (0.02, 0.2)
_ERASE_ASPECT = (0.3, 3.3)


@dataclass
class _Draw:
    """Every random number one copy of one image needs."""

    matrix: np.ndarray  # (2, 3) source -> output pixel coordinates
    brightness: float
    contrast: float
    saturation: float
    hue: float  # turns
    noise: np.ndarray | None  # (C, H, W)
    erase: tuple[int, int, int, int]  # x0, y0, width, height; width 0 = nothing erased


def _draw(rng: np.random.Generator, params: dict[str, Any], channels: int, height: int, width: int) -> _Draw:
    # Resized crop: a box of a random area fraction and aspect (limited so the box fits), stretched to full size.
    scale = rng.uniform(*params["crop_scale"])
    aspect = math.exp(rng.uniform(math.log(max(_ASPECT[0], scale)), math.log(min(_ASPECT[1], 1 / scale))))
    crop_w, crop_h = width * math.sqrt(scale * aspect), height * math.sqrt(scale / aspect)
    crop_x = rng.uniform(crop_w / 2, width - crop_w / 2) - 0.5  # box centre, in pixel-centre coordinates
    crop_y = rng.uniform(crop_h / 2, height - crop_h / 2) - 0.5
    angle = math.radians(rng.uniform(-params["rotate"], params["rotate"]))
    shift_x = rng.uniform(-params["translate"], params["translate"]) * width
    shift_y = rng.uniform(-params["translate"], params["translate"]) * height
    flip = rng.random() < params["hflip"]

    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    to_origin = np.array([[1, 0, -crop_x], [0, 1, -crop_y], [0, 0, 1]])
    stretch = np.diag([width / crop_w, height / crop_h, 1])
    cos, sin = math.cos(angle), math.sin(angle)
    rotate = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
    place = np.array([[1, 0, centre_x + shift_x], [0, 1, centre_y + shift_y], [0, 0, 1]])
    mirror = np.array([[-1, 0, width - 1], [0, 1, 0], [0, 0, 1]]) if flip else np.eye(3)
    matrix = (mirror @ place @ rotate @ stretch @ to_origin)[:2]

    jitter = [rng.uniform(1 - params[k], 1 + params[k]) for k in ("brightness", "contrast", "saturation")]
    hue = rng.uniform(-params["hue"], params["hue"])
    noise = (rng.standard_normal((channels, height, width), dtype=np.float32) * np.float32(params["noise"])
             if params["noise"] else None)
    erase = (0, 0, 0, 0)
    if rng.random() < params["erase"]:
        area = rng.uniform(*_ERASE_AREA) * width * height
        ratio = math.exp(rng.uniform(*np.log(_ERASE_ASPECT)))
        erase_w = min(width, max(1, round(math.sqrt(area * ratio))))
        erase_h = min(height, max(1, round(math.sqrt(area / ratio))))
        erase = (int(rng.integers(width - erase_w + 1)), int(rng.integers(height - erase_h + 1)), erase_w, erase_h)
    return _Draw(matrix, *jitter, hue, noise, erase)


@torch.no_grad()
def augment_images(images: list[np.ndarray], rngs: list[np.random.Generator], params: dict[str, Any],
                   device: torch.device) -> list[np.ndarray]:
    """One augmented copy of each image (all the same shape: uint8 (H, W) or (H, W, 3)), one generator each.

    Args:
        images: the decoded images of one batch.
        rngs: ``rngs[i]`` draws every random number of ``images[i]``'s copy.
        params: the recipe's image section.
        device: where the arithmetic runs.

    Returns:
        The copies, same shape and dtype as the inputs.
    """
    batch = torch.from_numpy(np.stack(images)).to(device)
    grey = batch.ndim == 3
    x = (batch.unsqueeze(1) if grey else batch.permute(0, 3, 1, 2)).float() / 255  # (B, C, H, W)
    _, channels, height, width = x.shape
    draws = [_draw(rng, params, channels, height, width) for rng in rngs]

    # 1. geometry: one resample per image
    matrices = torch.from_numpy(np.stack([d.matrix for d in draws])).float().to(device)
    x = warp_affine(x, matrices, (height, width), mode="bilinear", padding_mode="zeros", align_corners=True)

    # 2. colour, as kornia's ColorJitter does it (saturation and hue need three channels)
    def factors(name: str) -> torch.Tensor:
        return torch.tensor([getattr(d, name) for d in draws], dtype=torch.float32, device=device)

    x = x.clamp(0, 1)
    if params["brightness"]:
        x = adjust_brightness_accumulative(x, factors("brightness"))
    if params["contrast"]:
        x = adjust_contrast_with_mean_subtraction(x, factors("contrast"))
    if not grey and params["saturation"]:
        x = adjust_saturation_with_gray_subtraction(x, factors("saturation")).clamp(0, 1)
    if not grey and params["hue"]:
        x = adjust_hue(x, factors("hue") * 2 * math.pi).clamp(0, 1)

    # 3. noise and erasing
    if params["noise"]:
        x = x + torch.from_numpy(np.stack([d.noise for d in draws])).to(device)
    if params["erase"]:
        boxes = torch.tensor([d.erase for d in draws], device=device)[:, :, None, None]  # (B, 4, 1, 1)
        cols = torch.arange(width, device=device)[None, None, :]
        rows = torch.arange(height, device=device)[None, :, None]
        inside = ((cols >= boxes[:, 0]) & (cols < boxes[:, 0] + boxes[:, 2])
                  & (rows >= boxes[:, 1]) & (rows < boxes[:, 1] + boxes[:, 3]))  # (B, H, W)
        x = x.masked_fill(inside[:, None], 0.0)

    out = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    out = out[:, 0] if grey else out.permute(0, 2, 3, 1)
    return list(out.cpu().numpy())
