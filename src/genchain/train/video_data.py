"""The clips ``genchain train video`` and ``genchain eval video`` read: a moving-fashion-mnist folder, or the name
``moving-fashion-mnist``, which synthesises the default dataset in memory (about two seconds) instead of reading it.

Clips are held as one uint8 tensor per split, (N, T, 1, S, S), resized once (area averaging) when the model is
smaller than the data, so every batch is a slice and a cast.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from genchain.data.moving_fashion import SEQUENCES_JSON, is_video_dir, read_video_split
from genchain.errors import InputError

BUILTIN_NAME = "moving-fashion-mnist"


@dataclass
class VideoData:
    """Train and test clips with the classes of the garments in each clip (for the frame-feature network)."""

    train: torch.Tensor  # uint8 (N, T, 1, S, S)
    test: torch.Tensor  # uint8 (M, T, 1, S, S)
    train_classes: torch.Tensor  # long (N, K)
    test_classes: torch.Tensor  # long (M, K)
    class_names: list[str]
    origin: str
    sha256: str  # names the data: a resumed run and a cached feature network must see the same

    @property
    def size(self) -> int:
        return int(self.train.shape[-1])

    @property
    def frames(self) -> int:
        return int(self.train.shape[1])


def _resize(videos: np.ndarray, size: int | None) -> torch.Tensor:
    """uint8 (N, T, S, S) -> uint8 (N, T, 1, size, size) by area averaging (``size`` None: unchanged)."""
    clips = torch.from_numpy(np.array(videos)).unsqueeze(2)  # a copy: the memory map is read-only
    if size is None or size == clips.shape[-1]:
        return clips
    if size > clips.shape[-1]:
        raise InputError(f"image_size={size} is larger than the data's {clips.shape[-1]} px; use at most that")
    n, t = clips.shape[:2]
    small = F.interpolate(clips.flatten(0, 1).float(), size=(size, size), mode="area")
    return small.round_().clamp_(0, 255).to(torch.uint8).view(n, t, 1, size, size)


def load_video_data(data: str | Path, size: int | None = None) -> VideoData:
    """The clips of ``data`` (a folder from ``genchain data get moving-fashion-mnist``, or that name)."""
    if str(data) == BUILTIN_NAME and not Path(data).exists():
        return _synthesised(size)
    folder = Path(data)
    if not folder.is_dir():
        raise InputError(f"{data} is neither a folder nor {BUILTIN_NAME!r}; write one with "
                         f"`genchain data get {BUILTIN_NAME} -o DIR` or pass --data {BUILTIN_NAME}")
    if not is_video_dir(folder):
        raise InputError(f"{folder} holds no train.npy clips; it is not a {BUILTIN_NAME} folder (write one with "
                         f"`genchain data get {BUILTIN_NAME} -o DIR`)")
    meta_path = folder / SEQUENCES_JSON
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{meta_path} is missing or corrupt ({err}); write the folder again") from err
    splits = {name: read_video_split(folder, name) for name in ("train", "test")}
    classes = {name: torch.tensor(meta["splits"][name]["classes"], dtype=torch.long) for name in splits}
    for name, videos in splits.items():
        if len(classes[name]) != len(videos):
            raise InputError(f"{meta_path} describes {len(classes[name])} {name} clips but the array holds "
                             f"{len(videos)}; write the folder again")
    digest = hashlib.sha256(meta_path.read_bytes()).hexdigest()
    return VideoData(_resize(splits["train"], size), _resize(splits["test"], size), classes["train"],
                     classes["test"], list(meta["class_names"]), str(folder.resolve()), digest)


def _synthesised(size: int | None) -> VideoData:
    from genchain.data.moving_fashion import synthesise
    from genchain.data.sources import MOVING_DEFAULTS, moving_glyphs

    train_glyphs, test_glyphs, names, origin = moving_glyphs()
    d = MOVING_DEFAULTS
    clips = {name: synthesise(*glyphs, num, frames=d["frames"], size=d["size"], seed=seed)
             for name, glyphs, num, seed in (("train", train_glyphs, d["num_train"], d["seed"]),
                                             ("test", test_glyphs, d["num_test"], d["seed"] + 1))}
    digest = hashlib.sha256(json.dumps({"builtin": BUILTIN_NAME, **d, "origin": origin}).encode()).hexdigest()
    return VideoData(_resize(clips["train"].videos, size), _resize(clips["test"].videos, size),
                     torch.from_numpy(clips["train"].classes).long(), torch.from_numpy(clips["test"].classes).long(),
                     names, f"{BUILTIN_NAME} (synthesised in memory from {origin}, seed {d['seed']})", digest)
