"""``genchain data augment``: a new dataset with every original row plus N augmented copies of each training row.

Only the ``train`` split gets copies; ``validation``, ``test`` and any other split are copied unchanged. A
copy of a training row in a held-out split would let a model be scored on a near-duplicate of what it trained
on, so evaluation numbers would be inflated.

Each copy has id ``<parent id>-aug<k>`` (k = 1..N), ``parent_id`` = the original's id, and the original's
label, source and any other columns; only the payload changes. Every random number of copy k of train row i
comes from ``np.random.default_rng((seed, i, k))``, so the same seed gives a byte-identical dataset (same
``content_sha256``) however the rows are batched. The recipe is recorded, resolved, in the manifest's step.

A row whose image or audio cannot be decoded is kept as it is, gets no copies, and is counted
(``undecodable``) with a warning.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from genchain.data.augment_audio import augment_audio
from genchain.data.augment_image import augment_images
from genchain.data.augment_recipe import load_recipe
from genchain.data.augment_text import augment_text
from genchain.data.dataset import Dataset, DatasetWriter, make_step, open_dataset
from genchain.data.media import decode_audio, decode_image, encode_png, encode_wav
from genchain.errors import InputError
from genchain.runtime import select_device

_PIXELS_PER_CHUNK = 2**24  # floats per image tensor sent to the device (64 MiB), whatever the image size


def augment(dataset: str | Path, out_dir: str | Path, *, copies: int = 1, recipe: str | Path | dict = "light",
            seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """Write ``out_dir``: ``dataset``'s rows plus ``copies`` augmented copies of each train row.

    Args:
        dataset: a dataset directory (text, image or audio).
        out_dir: the new dataset directory.
        copies: augmented copies per train row (at least 1).
        recipe: ``light``, ``strong``, a YAML file of the same form, or that form as a dict
            (see :mod:`genchain.data.augment_recipe`).
        seed: base seed; the same seed gives the same bytes.
        overwrite: replace ``out_dir`` if it is a dataset already.

    Returns:
        The manifest written.

    Raises:
        InputError: bad arguments, a dataset without a train split, an already augmented dataset, a bad recipe.
    """
    started = time.time()
    if copies < 1:
        raise InputError(f"--copies must be at least 1, got {copies}")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    source = open_dataset(dataset)
    if "train" not in source.splits:
        raise InputError(f"{source.path} has no train split (it has {', '.join(source.splits)}); "
                         "only training rows are augmented")
    if any(step.get("op") == "augment" for step in source.manifest.get("steps", [])):
        raise InputError(f"{source.path} is already augmented; augment the dataset it was made from "
                         "with more --copies instead")
    recipe_name, resolved = load_recipe(recipe)
    device = select_device("auto") if source.modality == "image" else torch.device("cpu")
    make_copies = _Copier(source, resolved[source.modality], copies, seed, device)

    with DatasetWriter(out_dir, source.modality, source.features, overwrite=overwrite) as writer, \
            tqdm(total=source.num_rows("train"), desc="augment", unit="row") as progress:
        for split, batch in source.batches():
            writer.add_batch(batch, split)
            if split == "train":
                for row in make_copies(batch.to_pylist()):
                    writer.add(row, split)
                progress.update(batch.num_rows)
        params = {"copies": copies, "recipe_name": recipe_name, "recipe": resolved, "seed": seed}
        if source.modality == "image":
            params["device"] = device.type  # CPU and CUDA may round interpolation differently
        step = make_step("augment", params, rows_in=source.num_rows(), rows_out=sum(writer.rows().values()),
                         started=started, counts=dict(make_copies.counts), packages=("kornia", "torch"))
        return writer.close(source.derived_manifest(step))


class _Copier:
    """Turns successive train batches into their augmented copies, numbering train rows as it goes."""

    def __init__(self, source: Dataset, params: dict[str, Any], copies: int, seed: int, device: torch.device):
        self.modality, self.payload, self.rate = source.modality, source.payload, source.sampling_rate
        self.params, self.copies, self.seed, self.device = params, copies, seed, device
        self.next_index = 0  # the train-split index of the batch's first row
        self.counts: Counter[str] = Counter(copies_made=0, undecodable=0)

    def __call__(self, rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        first, self.next_index = self.next_index, self.next_index + len(rows)
        payloads = {"text": self._texts, "image": self._images, "audio": self._audios}[self.modality](rows, first)
        for (i, k), payload in sorted(payloads.items()):
            row = rows[i - first]
            self.counts["copies_made"] += 1
            yield {**row, "id": f"{row['id']}-aug{k}", "parent_id": row["id"], self.payload: payload}

    def _rng(self, index: int, k: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, index, k))

    def _undecodable(self, err: InputError) -> None:
        self.counts["undecodable"] += 1
        warnings.warn(f"{err}; row kept as it is, without augmented copies", stacklevel=2)

    def _texts(self, rows: list[dict[str, Any]], first: int) -> dict[tuple[int, int], str]:
        return {(i, k): augment_text(row["text"], self.params, self._rng(i, k))
                for i, row in enumerate(rows, start=first) for k in range(1, self.copies + 1)}

    def _audios(self, rows: list[dict[str, Any]], first: int) -> dict[tuple[int, int], dict[str, Any]]:
        out = {}
        for i, row in enumerate(rows, start=first):
            try:
                samples, _ = decode_audio(row["audio"]["bytes"], f"audio of row {row['id']!r}")
            except InputError as err:
                self._undecodable(err)
                continue
            for k in range(1, self.copies + 1):
                wav = encode_wav(augment_audio(samples, self.params, self._rng(i, k)), self.rate)
                out[(i, k)] = {"bytes": wav, "path": None}
        return out

    def _images(self, rows: list[dict[str, Any]], first: int) -> dict[tuple[int, int], dict[str, Any]]:
        """Decode once, group same-shape images (mode and size) and augment each group in device-sized chunks."""
        by_shape: dict[tuple[int, ...], list[tuple[int, int, np.ndarray]]] = defaultdict(list)
        for i, row in enumerate(rows, start=first):
            try:
                pixels = np.asarray(decode_image(row["image"]["bytes"], f"image of row {row['id']!r}"))
            except InputError as err:
                self._undecodable(err)
                continue
            for k in range(1, self.copies + 1):
                by_shape[pixels.shape].append((i, k, pixels))
        out = {}
        for shape, jobs in by_shape.items():
            chunk = max(1, _PIXELS_PER_CHUNK // int(np.prod(shape)))
            for start in range(0, len(jobs), chunk):
                part = jobs[start:start + chunk]
                images = augment_images([p for _, _, p in part], [self._rng(i, k) for i, k, _ in part],
                                        self.params, self.device)
                for (i, k, _), image in zip(part, images, strict=True):
                    out[(i, k)] = {"bytes": encode_png(image), "path": None}
        return out
