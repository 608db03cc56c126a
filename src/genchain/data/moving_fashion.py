"""Moving Fashion-MNIST: two garments bouncing inside a square canvas, the video data of ``genchain train video``.

The recipe is Srivastava et al. 2015 ("Unsupervised Learning of Video Representations using LSTMs"), section 3.1,
with Fashion-MNIST garments in place of digits: each glyph starts at a uniform position, moves in a straight line
at a uniform speed and direction, and bounces off the canvas edges (the velocity component is reflected and the
position mirrored back inside); overlapping glyphs are combined with a pixel-wise maximum, as the reference
implementation does. Every random draw comes from one seeded ``numpy`` generator, so a seed names a dataset and
regenerating it is cheaper than downloading it.

On disk (``genchain data get moving-fashion-mnist -o RAW_DIR``)::

    RAW_DIR/train.npy        uint8 (N_train, T, S, S): memory-mappable with np.load(mmap_mode="r")
    RAW_DIR/test.npy         uint8 (N_test, T, S, S): garments from Fashion-MNIST's test images (held out)
    RAW_DIR/sequences.json   frames, size, seed, class names, and per clip: classes, glyph ids, positions
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genchain.errors import InputError

VIDEO_FILES = {"train": "train.npy", "test": "test.npy"}
SEQUENCES_JSON = "sequences.json"
SPEED_RANGE = (2.0, 4.0)  # pixels per frame: the garment stays recognisable and visibly moves


@dataclass
class MovingClips:
    """Synthesised clips and how each was made."""

    videos: np.ndarray  # uint8 (N, T, S, S)
    classes: np.ndarray  # int (N, K): the class of each garment
    glyphs: np.ndarray  # int (N, K): the index of each garment in its image set
    positions: np.ndarray  # int (N, T, K, 2): top-left (row, col) of each garment in each frame

    def meta(self) -> dict[str, Any]:
        return {"classes": self.classes.tolist(), "glyphs": self.glyphs.tolist(),
                "positions": self.positions.tolist()}


def bounce(start: np.ndarray, velocity: np.ndarray, frames: int, limit: float) -> np.ndarray:
    """Positions (frames, ..., 2) of points moving at ``velocity`` inside [0, limit], reflected at the edges."""
    out = np.empty((frames, *start.shape), dtype=np.float64)
    pos, vel = start.astype(np.float64).copy(), velocity.astype(np.float64).copy()
    for t in range(frames):
        out[t] = pos
        pos = pos + vel
        low, high = pos < 0, pos > limit
        pos = np.where(low, -pos, np.where(high, 2 * limit - pos, pos))  # mirror back inside
        vel = np.where(low | high, -vel, vel)
    return out


def synthesise(glyphs: np.ndarray, labels: np.ndarray, num: int, *, frames: int = 20, size: int = 64,
               per_clip: int = 2, seed: int = 0) -> MovingClips:
    """``num`` clips of ``frames`` frames, each ``per_clip`` glyphs bouncing on a black ``size`` x ``size`` canvas.

    Args:
        glyphs: uint8 (M, g, g) images to move (Fashion-MNIST's 28 x 28 garments).
        labels: (M,) their classes.
        seed: names the dataset: the same seed gives the same clips, byte for byte.
    """
    if num < 1 or frames < 1 or per_clip < 1:
        raise InputError(f"need at least one clip, frame and garment; got num={num}, frames={frames}, "
                         f"per_clip={per_clip}")
    g = glyphs.shape[-1]
    if size < g:
        raise InputError(f"the canvas ({size} px) must be at least as large as a garment ({g} px)")
    rng = np.random.default_rng(seed)
    limit = float(size - g)
    chosen = rng.integers(0, len(glyphs), size=(num, per_clip))
    start = rng.uniform(0, limit, size=(num, per_clip, 2))
    angle = rng.uniform(0, 2 * np.pi, size=(num, per_clip))
    speed = rng.uniform(*SPEED_RANGE, size=(num, per_clip))
    velocity = np.stack([np.sin(angle), np.cos(angle)], axis=-1) * speed[..., None]  # (N, K, 2) (row, col)
    positions = np.rint(bounce(start, velocity, frames, limit)).astype(np.int64)  # (T, N, K, 2)
    positions = positions.transpose(1, 0, 2, 3)  # (N, T, K, 2)
    videos = np.zeros((num, frames, size, size), dtype=np.uint8)
    for n in range(num):
        for k in range(per_clip):
            glyph = glyphs[chosen[n, k]]
            for t in range(frames):
                r, c = positions[n, t, k]
                window = videos[n, t, r : r + g, c : c + g]
                np.maximum(window, glyph, out=window)
    return MovingClips(videos, np.asarray(labels)[chosen], chosen, positions)


def write_moving_dataset(out: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                         class_names: list[str], *, num_train: int, num_test: int, frames: int, size: int,
                         seed: int) -> None:
    """Write train.npy, test.npy and sequences.json; train clips move training garments, test clips test ones."""
    meta: dict[str, Any] = {"format": "moving-fashion-mnist", "version": 1, "frames": frames, "size": size,
                            "garments_per_clip": 2, "seed": seed, "speed_px_per_frame": list(SPEED_RANGE),
                            "class_names": class_names, "splits": {}}
    for split, (glyphs, labels), num, split_seed in (("train", train, num_train, seed),
                                                      ("test", test, num_test, seed + 1)):
        clips = synthesise(glyphs, labels, num, frames=frames, size=size, seed=split_seed)
        np.save(out / VIDEO_FILES[split], clips.videos)
        meta["splits"][split] = {"clips": num, **clips.meta()}
    (out / SEQUENCES_JSON).write_text(json.dumps(meta, separators=(",", ":")) + "\n", encoding="utf-8")


def is_video_dir(path: Path) -> bool:
    return (Path(path) / VIDEO_FILES["train"]).is_file()


def read_video_split(raw_dir: str | Path, split: str) -> np.ndarray:
    """A split of a moving-fashion-mnist folder as uint8 (N, T, S, S), memory-mapped."""
    path = Path(raw_dir) / VIDEO_FILES[split]
    if not path.is_file():
        raise InputError(f"{raw_dir} has no {VIDEO_FILES[split]}; write it with "
                         "`genchain data get moving-fashion-mnist -o DIR`")
    try:
        videos = np.load(path, mmap_mode="r")
    except ValueError as err:
        raise InputError(f"{path} is not a .npy array ({err}); write it again with `genchain data get`") from err
    if videos.dtype != np.uint8 or videos.ndim != 4 or videos.shape[-1] != videos.shape[-2]:
        raise InputError(f"{path} holds {videos.dtype} {videos.shape}; expected uint8 (N, T, S, S) clips")
    return videos
