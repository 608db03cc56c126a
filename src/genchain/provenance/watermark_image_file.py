"""Reading an image file for watermarking and writing it back in its own format, losing as little as possible.

Separate from :mod:`genchain.provenance.watermark_image` because it is about file formats (Pillow's PNG, JPEG and
WebP writers), not about the watermark. A JPEG is re-encoded with the quantisation tables and chroma subsampling
it was read with (what libjpeg's ``-qtables`` would do), so the rewrite neither bloats nor degrades it beyond one
more rounding; PNG and lossless WebP stay lossless. Metadata that Pillow can carry over (PNG text chunks, EXIF, ICC
profiles, DPI) is kept; anything else, including an earlier C2PA manifest, is not, so mark before signing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin, PngImagePlugin, UnidentifiedImageError

from genchain.errors import InputError
from genchain.fileio import atomic_path

FORMATS = ("PNG", "JPEG", "WEBP")


@dataclass
class LoadedImage:
    """Pixels to mark plus what is needed to write them back the way they came."""

    path: Path
    format: str
    mode: str  # Pillow mode to write: L, LA, RGB or RGBA
    pixels: np.ndarray  # uint8 (H, W), (H, W, 3) or (H, W, 4): what the watermark sees
    alpha: np.ndarray | None = None  # the alpha of an LA image, reattached on writing
    options: dict = field(default_factory=dict)  # keyword arguments for Image.save


def read_for_watermark(path: str | Path) -> LoadedImage | dict:
    """The image at ``path`` ready to mark, or ``{"reason": ...}`` when it cannot carry the watermark."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file")
    try:
        with Image.open(path) as image:
            image.load()
            return _loaded(path, image)
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"{path} is not a readable image ({err}); the watermark needs a PNG, JPEG or WebP") from None


def _loaded(path: Path, image: Image.Image) -> LoadedImage | dict:
    if image.format not in FORMATS:
        return {"reason": f"{path.name} is {image.format}; the image watermark is written into PNG, JPEG and WebP"}
    if getattr(image, "n_frames", 1) > 1:
        return {"reason": f"{path.name} is animated ({image.n_frames} frames); only still images are marked"}
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        return {"reason": f"{path.name} has pixel mode {image.mode}; the watermark needs 8-bit grey or RGB(A)"}
    pixels = np.asarray(image)
    alpha = None
    if image.mode == "LA":
        pixels, alpha = np.ascontiguousarray(pixels[..., 0]), np.ascontiguousarray(pixels[..., 1])
    return LoadedImage(path, image.format, image.mode, pixels, alpha, _save_options(path, image))


def _save_options(path: Path, image: Image.Image) -> dict:
    options: dict = {key: image.info[key] for key in ("icc_profile", "exif", "dpi") if image.info.get(key)}
    if image.format == "PNG":
        text = getattr(image, "text", {}) or {}
        if text:
            info = PngImagePlugin.PngInfo()
            for key, value in text.items():
                if value.isascii():
                    info.add_text(key, value)
                else:
                    info.add_itxt(key, value)
            options["pnginfo"] = info
    elif image.format == "JPEG":
        options["qtables"] = image.quantization
        sampling = JpegImagePlugin.get_sampling(image)
        if sampling != -1:
            options["subsampling"] = sampling
        if image.info.get("progressive"):
            options["progressive"] = True
    else:  # WEBP: lossless files carry a VP8L chunk
        head = path.read_bytes()[:4096]
        options.update({"lossless": True} if b"VP8L" in head else {"quality": 95})
    return options


def write_watermarked(loaded: LoadedImage, pixels: np.ndarray) -> Path:
    """Write marked ``pixels`` over ``loaded.path`` atomically, in its format and with its options."""
    if loaded.alpha is not None:
        pixels = np.dstack([pixels, loaded.alpha])
    image = Image.fromarray(pixels, mode=loaded.mode) if pixels.ndim == 3 else Image.fromarray(pixels)
    with atomic_path(loaded.path) as tmp:
        image.save(tmp, format=loaded.format, **loaded.options)
    return loaded.path
