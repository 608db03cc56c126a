"""Encoding and decoding of the payloads a dataset stores: PNG images and 16-bit WAV audio.

Images are stored as PNG (lossless, so cleaning and augmenting never add compression artefacts) in mode
``L`` (grey) or ``RGB``. Audio is stored as mono 16-bit PCM WAV at the dataset's sampling rate: every tool
reads it, and 16 bits are more than the models here resolve. Decoding errors become :class:`InputError`
naming what was being read, so callers can skip a corrupt file and count it.
"""

from __future__ import annotations

import io
from math import gcd

import numpy as np
from PIL import Image, UnidentifiedImageError

from genchain.errors import InputError

IMAGE_MODES = ("L", "RGB")


def decode_image(data: bytes, what: str = "image") -> Image.Image:
    """A fully decoded PIL image (``load()`` forces truncated files to fail here, not later)."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{what} is not a readable image ({err})") from err
    return image


def normalise_image(image: Image.Image, mode: str, size: int | None = None) -> Image.Image:
    """Convert to ``mode`` (transparency composited on white) and, when ``size`` is given, resize the short
    side to it and centre-crop to a square."""
    if mode not in IMAGE_MODES:
        raise InputError(f"image mode {mode!r} is not supported; use L or RGB")
    if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    image = image.convert(mode)
    if size is not None and image.size != (size, size):
        w, h = image.size
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.LANCZOS)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return image


def encode_png(image: Image.Image | np.ndarray) -> bytes:
    """PNG bytes of a PIL image or a uint8 array shaped (H, W) or (H, W, 3)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # fast; PNG is lossless at every level
    return buffer.getvalue()


def image_array(data: bytes) -> np.ndarray:
    """A stored image as uint8 (H, W) or (H, W, 3)."""
    return np.asarray(decode_image(data))


def decode_audio(data: bytes, what: str = "audio") -> tuple[np.ndarray, int]:
    """``(samples, rate)``: float32 mono in [-1, 1] from WAV/FLAC/OGG bytes (channels are averaged)."""
    import soundfile as sf

    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise InputError(f"{what} is not readable audio ({err})") from err
    if samples.shape[0] == 0:
        raise InputError(f"{what} holds no audio samples")
    return samples.mean(axis=1).astype(np.float32), int(rate)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited polyphase resampling (scipy), exact for integer rate ratios."""
    if rate_in == rate_out:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(rate_in, rate_out)
    return resample_poly(samples, rate_out // g, rate_in // g).astype(np.float32)


def encode_wav(samples: np.ndarray, rate: int) -> bytes:
    """Mono 16-bit PCM WAV bytes; samples beyond [-1, 1] are clipped rather than wrapped."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0), rate, format="WAV",
             subtype="PCM_16")
    return buffer.getvalue()
