"""Images from a GAN or VAE run: samples, latent walks and (VAE) reconstructions.

Every family's training module provides ``load_generator(run_dir)`` returning an :class:`ImageGenerator`; this
module dispatches on the run's ``card.json`` family and uses only that protocol, so it holds no model code.
Latents come from a ``torch.Generator`` seeded by the user, so the same seed gives the same images, and a walk
between seeds ``a`` and ``b`` starts and ends at exactly the images ``--seed a`` and ``--seed b`` give.
All files are written atomically.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from genchain import rundir
from genchain.errors import ConfigError, InputError, RunDirError
from genchain.fileio import atomic_path
from genchain.train.image_data import to_uint8, to_unit_range

DECODE_BATCH = 256


class ImageGenerator(Protocol):
    """What a family's ``load_generator(run_dir)`` returns."""

    latent_dim: int
    num_classes: int | None
    label_names: list[str] | None
    image_size: int
    channels: int

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (N, latent_dim) -> float images (N, C, H, W) in [-1, 1]."""

    def sample_latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` draws from the prior, (n, latent_dim)."""


def load_image_generator(run_dir: str | Path) -> ImageGenerator:
    """The image generator of a GAN or VAE run dir."""
    card = rundir.read_card(run_dir)
    family = card.get("family")
    if family == "gan":
        from genchain.train.gan import load_generator
    elif family == "vae":
        from genchain.train.vae import load_generator
    else:
        raise RunDirError(f"{run_dir} holds a {family!r} model ({card.get('model', '?')}), not an image generator; "
                          "pass a run dir trained with `genchain train gan` or `genchain train vae`")
    return load_generator(run_dir)


# ------------------------------------------------------------------------------------------------ files
def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: int = 0) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> one uint8 image (C, rows * (H + p) + p, nrow * (W + p) + p), row-major."""
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value,
                      dtype=torch.uint8)
    for i in range(n):
        top, left = padding + (i // nrow) * (h + padding), padding + (i % nrow) * (w + padding)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def to_pil(image: torch.Tensor) -> Image.Image:
    """uint8 (C, H, W) with C = 1 or 3 -> a PIL image (L or RGB)."""
    array = image.permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def save_png(path: str | Path, image: torch.Tensor) -> Path:
    """Write uint8 (C, H, W) as a PNG, atomically."""
    with atomic_path(path) as tmp:
        to_pil(image).save(tmp, format="PNG")
    return Path(path)


def _save_gif(path: Path, frames: list[torch.Tensor], frame_ms: int = 100) -> Path:
    """uint8 frames (C, H, W) -> a looping GIF, atomically."""
    images = [to_pil(frame) for frame in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return path


# ------------------------------------------------------------------------------------------------ latents and labels
def resolve_label(generator: ImageGenerator, label: str | None) -> int | None:
    """A class name or index -> its index; None stays None. Errors name the classes the run knows."""
    if label is None:
        return None
    if not generator.num_classes:
        raise ConfigError("--label needs a class-conditional model; this run was trained without labels "
                          "(train with conditional=true)")
    names = list(generator.label_names or [])
    if label in names:
        return names.index(label)
    if re.fullmatch(r"\d+", label) and int(label) < generator.num_classes:
        return int(label)
    known = ", ".join(names) if names else f"0..{generator.num_classes - 1}"
    raise ConfigError(f"unknown label {label!r}; this run knows: {known}")


def _labels(generator: ImageGenerator, n: int, label: int | None) -> torch.Tensor | None:
    """Labels for ``n`` images: the one asked for, or every class in turn for a conditional model."""
    if not generator.num_classes:
        return None
    if label is not None:
        return torch.full((n,), label, dtype=torch.long)
    return torch.arange(n) % generator.num_classes


def _decode(generator: ImageGenerator, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Latents -> uint8 images (N, C, H, W), in batches."""
    out = []
    with torch.no_grad():
        for start in range(0, len(z), DECODE_BATCH):
            chunk = None if labels is None else labels[start : start + DECODE_BATCH]
            out.append(to_uint8(generator.decode(z[start : start + DECODE_BATCH], chunk)))
    return torch.cat(out)


def _seed_latent(generator: ImageGenerator, seed: int) -> torch.Tensor:
    return generator.sample_latents(1, torch.Generator().manual_seed(seed))[0]


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for GAN latents): stays on the Gaussian's shell."""
    a64, b64 = a.double(), b.double()
    cos = torch.dot(a64, b64) / (a64.norm() * b64.norm())
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:  # (anti)parallel: nothing to curve along
        return torch.lerp(a64, b64, t).to(a.dtype)
    return ((torch.sin((1 - t) * omega) * a64 + torch.sin(t * omega) * b64) / torch.sin(omega)).to(a.dtype)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "label"


# ------------------------------------------------------------------------------------------------ commands
def sample(run: str | Path, out_dir: str | Path, *, num: int = 16, label: str | None = None, seed: int = 0,
           grid: bool = False) -> list[Path]:
    """Draw ``num`` images; write one PNG each, or one grid PNG (``out_dir`` may then name the .png itself).

    A conditional model given no label cycles through its classes (one class per grid column).
    """
    if num <= 0:
        raise ConfigError(f"--num must be positive, got {num}")
    generator = load_image_generator(run)
    index = resolve_label(generator, label)
    z = generator.sample_latents(num, torch.Generator().manual_seed(seed))
    images = _decode(generator, z, _labels(generator, num, index))
    out_dir = Path(out_dir)
    prefix = f"{_safe(label)}_" if label is not None else ""
    if grid:
        target = out_dir if out_dir.suffix.lower() == ".png" else out_dir / f"{prefix}grid_seed{seed}.png"
        nrow = generator.num_classes if generator.num_classes and index is None else None
        return [save_png(target, make_grid(images, nrow=nrow))]
    return [save_png(out_dir / f"{prefix}seed{seed}_{i:04d}.png", image) for i, image in enumerate(images)]


def interpolate(run: str | Path, out_path: str | Path, *, seeds: tuple[int, int] = (0, 1), steps: int = 16,
                label: str | None = None) -> Path:
    """Walk from seed a's latent to seed b's (slerp, ``steps`` frames, both ends included) into a GIF or PNG strip.

    Each frame is one image, or for a conditional model given no label a row with one image per class.
    """
    if steps < 2:
        raise ConfigError(f"--steps must be at least 2, got {steps}")
    out_path = Path(out_path)
    if out_path.suffix.lower() not in (".gif", ".png"):
        raise ConfigError(f"the walk is written as .gif or .png; got {out_path.name!r}")
    generator = load_image_generator(run)
    index = resolve_label(generator, label)
    a, b = _seed_latent(generator, seeds[0]), _seed_latent(generator, seeds[1])
    per_frame = generator.num_classes if generator.num_classes and index is None else 1
    z = torch.stack([slerp(a, b, i / (steps - 1)) for i in range(steps)])  # (steps, latent_dim)
    z = z.repeat_interleave(per_frame, dim=0)  # (steps * per_frame, latent_dim)
    images = _decode(generator, z, _labels(generator, len(z), index))
    frames = [make_grid(images[i * per_frame : (i + 1) * per_frame], nrow=per_frame) for i in range(steps)]
    if out_path.suffix.lower() == ".png":
        return save_png(out_path, make_grid(torch.stack(frames), nrow=steps, padding=0))
    return _save_gif(out_path, frames)


def reconstruct(run: str | Path, image_paths: list[Path], out_dir: str | Path, *, label: str | None = None
                ) -> list[Path]:
    """VAE: encode and decode each image; write ``original | reconstruction`` side by side, one PNG per input.

    A conditional VAE encodes and decodes given a class: ``label`` names the class of every image.
    """
    generator = load_image_generator(run)
    encode = getattr(generator, "encode", None)
    if encode is None:
        raise ConfigError(f"{run} holds a {rundir.read_card(run).get('family')} model, which has no encoder; "
                          "--reconstruct needs a VAE run (genchain train vae)")
    if not image_paths:
        raise InputError("no images given to reconstruct")
    index = resolve_label(generator, label)
    if generator.num_classes and index is None:
        raise ConfigError("this VAE is class-conditional: pass --label with the class of the images")
    originals = torch.stack([_read_image(Path(p), generator.channels, generator.image_size) for p in image_paths])
    labels = _labels(generator, len(originals), index)
    with torch.no_grad():
        recon = _decode(generator, encode(to_unit_range(originals), labels), labels)
    out_dir = Path(out_dir)
    return [save_png(out_dir / f"recon_{i:03d}_{_safe(Path(p).stem)}.png",
                     make_grid(torch.stack([originals[i], recon[i]]), nrow=2))
            for i, p in enumerate(image_paths)]


def _read_image(path: Path, channels: int, size: int) -> torch.Tensor:
    """An image file as uint8 (C, size, size) in the run's mode, resized and centre-cropped."""
    try:
        with Image.open(path) as image:
            image = ImageOps.fit(image.convert("L" if channels == 1 else "RGB"), (size, size),
                                 Image.Resampling.BILINEAR)
    except FileNotFoundError as err:
        raise InputError(f"image {path} does not exist") from err
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"{path} is not an image PIL can read ({err})") from err
    array = np.asarray(image)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.transpose(2, 0, 1).copy())
