"""Images for ``genchain data ingest``: PNG/JPEG/WebP/BMP/GIF files and IDX (MNIST-style) files, stored as PNG.

IDX is the format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number (two
zero bytes, the element type, the number of dimensions), one big-endian uint32 per dimension, then the
elements in row-major order. ``PREFIX-images-idx3-ubyte[.gz]`` holds N images of H x W bytes and its pair
``PREFIX-labels-idx1-ubyte[.gz]`` N label bytes; a ``classes.txt`` beside them names the classes, one a line.
The prefix names the split (``train``, ``t10k`` = test). The images are read one record at a time, so even a
big IDX file never sits in memory.
"""

from __future__ import annotations

import gzip
import re
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from genchain.data.ingest import Item
from genchain.data.media import decode_image, encode_png, normalise_image
from genchain.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
IDX_IMAGES = re.compile(r"^(?P<prefix>.+)-images-idx3-ubyte(?P<gz>\.gz)?$")
IDX_SPLITS = {"train": "train", "t10k": "test", "test": "test", "val": "validation", "validation": "validation"}
CLASSES_FILE = "classes.txt"
_GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")
_UBYTE = 0x08


class ImageReader:
    """One row per image, all in one mode: ``mode`` if given, else the first image's (grey as L, others RGB)."""

    description = ", ".join(IMAGE_SUFFIXES) + " or IDX (*-images-idx3-ubyte[.gz])"
    packages = ("pillow", "numpy")

    def __init__(self, mode: str | None, size: int | None):
        if size is not None and size <= 0:
            raise InputError(f"--image-size must be a positive number of pixels, got {size}")
        self.mode, self.size = mode, size
        self.sizes: Counter = Counter()
        self.counts: Counter = Counter()
        self._idx_labels: dict[Path, np.ndarray] = {}
        self._idx_names: list[str] | None = None

    def accepts(self, path: Path) -> bool:
        return path.suffix.lower() in IMAGE_SUFFIXES or IDX_IMAGES.match(path.name) is not None

    def label_names(self, paths: list[Path]) -> list[str] | None:
        """Class names of the IDX files among ``paths`` that have a label file (None when none has): the lines
        of ``classes.txt`` beside them, else "0", "1", ... Reads (and keeps) the label files, which are small."""
        for path in paths:
            labels_path = _idx_labels_path(path) if IDX_IMAGES.match(path.name) else None
            if labels_path is None:
                continue
            labels = _read_idx(labels_path, ndim=1)
            self._idx_labels[path] = labels
            names = _class_names(path.parent, int(labels.max(initial=0)) + 1)
            if self._idx_names is not None and names != self._idx_names:
                raise InputError(f"{path.parent} names its classes differently from another IDX source; "
                                 "ingest them separately")
            self._idx_names = names
        return self._idx_names

    def items(self, path: Path) -> Iterator[Item]:
        if IDX_IMAGES.match(path.name):
            yield from self._idx_items(path)
            return
        try:
            image = decode_image(path.read_bytes(), str(path))
        except InputError as err:
            warnings.warn(f"skipped: {err}", stacklevel=2)
            self.counts["skipped_corrupt"] += 1
            return
        yield Item(str(path), self._png(image))

    def _idx_items(self, path: Path) -> Iterator[Item]:
        labels = self._idx_labels.get(path)
        split = IDX_SPLITS.get(IDX_IMAGES.match(path.name)["prefix"])  # type: ignore[index]
        with _open_idx(path) as fh:
            count, height, width = _idx_header(fh, path, ndim=3)
            if labels is not None and len(labels) != count:
                raise InputError(f"{path} holds {count} images but its label file {len(labels)} labels; "
                                 "fetch the pair again")
            for index in range(count):
                pixels = np.frombuffer(_read_exact(fh, height * width, path), dtype=np.uint8)
                label = None if labels is None else self._idx_names[labels[index]]  # type: ignore[index]
                yield Item(f"{path}#{index}", self._png(Image.fromarray(pixels.reshape(height, width))), label, split)

    def _png(self, image: Image.Image) -> dict[str, Any]:
        if self.mode is None:
            self.mode = "L" if image.mode in _GREY_MODES else "RGB"
        image = normalise_image(image, self.mode, self.size)
        self.sizes[image.size] += 1
        return {"bytes": encode_png(image), "path": None}

    def params(self) -> dict[str, Any]:
        """The mode every image has, its width and height when they all share one, and how many sizes occur."""
        width, height = next(iter(self.sizes)) if len(self.sizes) == 1 else (None, None)
        return {"image_mode": self.mode, "width": width, "height": height, "sizes": len(self.sizes)}


# --------------------------------------------------------------------------------------------------- IDX
def _idx_labels_path(images: Path) -> Path | None:
    """The ``-labels-idx1-ubyte`` file paired with an images file, compressed or not, if there is one."""
    stem = IDX_IMAGES.match(images.name)["prefix"] + "-labels-idx1-ubyte"  # type: ignore[index]
    for name in (stem + ".gz", stem):
        if (images.parent / name).is_file():
            return images.parent / name
    return None


def _class_names(directory: Path, count: int) -> list[str]:
    path = directory / CLASSES_FILE
    if not path.is_file():
        return [str(i) for i in range(count)]
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) < count:
        raise InputError(f"{path} names {len(names)} classes but the labels go up to {count - 1}; "
                         "list one class name per line")
    return names


def _open_idx(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _read_exact(fh: IO[bytes], size: int, path: Path) -> bytes:
    try:
        data = fh.read(size)
    except (OSError, EOFError, zlib.error) as err:  # a damaged or cut-off gzip stream
        raise InputError(f"{path} is corrupt ({err}); fetch it again") from err
    if len(data) != size:
        raise InputError(f"{path} is truncated: it ends {size - len(data)} bytes short of what its header "
                         "declares; fetch it again")
    return data


def _idx_header(fh: IO[bytes], path: Path, ndim: int) -> tuple[int, ...]:
    """The dimensions after checking the magic number: unsigned bytes in ``ndim`` dimensions."""
    magic = _read_exact(fh, 4, path)
    if magic[:2] != b"\0\0" or magic[2] != _UBYTE or magic[3] != ndim:
        raise InputError(f"{path} is not an IDX file of unsigned bytes in {ndim} dimensions "
                         f"(magic number {magic.hex()}, expected 000008{ndim:02x})")
    return tuple(int(d) for d in np.frombuffer(_read_exact(fh, 4 * ndim, path), dtype=">u4"))


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """A whole (small) IDX file, such as a label file, as a uint8 array."""
    with _open_idx(path) as fh:
        dims = _idx_header(fh, path, ndim)
        data = _read_exact(fh, int(np.prod(dims)), path)
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)
