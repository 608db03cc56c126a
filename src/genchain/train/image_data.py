"""Image datasets as tensors for the image families (GAN, VAE) and image evaluation.

Image datasets here are small enough to decode once and hold as ``uint8`` (Fashion-MNIST's 70,000 28x28 images
are 55 MB), which makes every batch a cheap index into one tensor instead of a PNG decode per step; the
training loop then converts a batch to floats in [-1, 1] on the training device. A dataset whose images differ
in size is resized to one size (the most common, or the size asked for) with a warning, because a batch needs
one shape.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from genchain.data.dataset import Dataset, open_dataset
from genchain.errors import InputError


@dataclass
class ImageTensors:
    """Decoded images of one split."""

    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor | None  # (N,) int64, or None when the dataset has no labels
    label_names: list[str] | None
    ids: list[str]

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])


def open_image_dataset(path: str | Path) -> Dataset:
    dataset = open_dataset(path)
    if dataset.modality != "image":
        raise InputError(f"{path} holds {dataset.modality}, not images; ingest images with "
                         "`genchain data ingest DIR --kind image -o DATASET_DIR`")
    return dataset


def load_images(path: str | Path, split: str = "train", size: int | None = None,
                max_rows: int | None = None) -> ImageTensors:
    """Every image of ``split`` (or its first ``max_rows``) as one uint8 tensor, square, in the dataset's mode.

    Args:
        path: an image dataset directory.
        split: which split to read.
        size: resize every image to ``size`` x ``size``; default: keep the size when all images share it.
        max_rows: read at most this many rows (tests, quick evaluations).
    """
    dataset = open_image_dataset(path)
    if dataset.num_rows(split) == 0:
        raise InputError(f"split {split!r} of {path} holds no images")
    total = min(dataset.num_rows(split), max_rows or dataset.num_rows(split))
    arrays: list[np.ndarray] = []
    labels: list[int | None] = []
    ids: list[str] = []
    columns = ["id", "image"] + (["label"] if dataset.label_names else [])
    bar = tqdm(total=total, desc=f"decode {split}", unit="img", leave=False, disable=None if total > 5000 else True)
    for _, batch in dataset.batches(split, columns):
        data = batch.to_pydict()
        for i, image in enumerate(data["image"]):
            if len(arrays) == total:
                break
            arrays.append(_decode(image["bytes"], data["id"][i]))
            ids.append(data["id"][i])
            labels.append(data["label"][i] if "label" in data else None)
            bar.update(1)
        if len(arrays) == total:
            break
    bar.close()
    stacked = _stack(arrays, size, path)
    label_tensor = None
    if dataset.label_names:
        if any(label is None for label in labels):
            raise InputError(f"some images of {path} have no label; label them (`genchain data annotate`) "
                             "or drop the label column")
        label_tensor = torch.tensor(labels, dtype=torch.int64)
    return ImageTensors(torch.from_numpy(stacked), label_tensor, dataset.label_names, ids)


def _decode(data: bytes, row_id: str) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"image {row_id} cannot be decoded ({err}); run `genchain data clean` first") from err
    array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array


def _stack(arrays: list[np.ndarray], size: int | None, path: str | Path) -> np.ndarray:
    """(N, C, H, W) uint8, resizing (bilinear, centre-cropped to square) where the shapes differ from the target."""
    shapes = Counter(a.shape for a in arrays)
    channels = {s[2] for s in shapes}
    if len(channels) > 1:
        raise InputError(f"{path} mixes grey and colour images; ingest it with --image-mode L or RGB")
    if size is None:
        (h, w, _), _ = shapes.most_common(1)[0]
        if len(shapes) > 1 or h != w:
            size = min(h, w)
            warnings.warn(f"{path}: images have {len(shapes)} sizes; resizing all to {size}x{size}", stacklevel=3)
    if size is not None:
        arrays = [_resize(a, size) for a in arrays]
    return np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2))


def _resize(array: np.ndarray, size: int) -> np.ndarray:
    if array.shape[0] == size and array.shape[1] == size:
        return array
    image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    out = np.asarray(image.crop((left, top, left + size, top + size)))
    return out[:, :, None] if out.ndim == 2 else out


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range the generators' tanh outputs."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clamped)."""
    return images.detach().float().add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)
