"""``genchain train music``: a GPT over note tokens (:mod:`genchain.data.music_tokens`), trained by the engine.

Scores are parsed once (music21 is slow, ~0.2 s a file) and cached by content hash; the run keeps the token
sequences of both splits in ``music_pieces.json``, so generation, evaluation and ``--resume`` need neither
music21's corpus nor the raw files. Pieces, not windows, are split (by a hash of the file name), so no bar
of a held-out chorale is ever trained on.

A training window is a piece's header (``BOS KEY TS``) followed by the piece from a random bar on, padded
at the end (padding is not scored): every window is conditioned on its key and metre, as a generation is.
Each window is transposed by a random shift in ``[-transpose, transpose]`` semitones with the key token moved
along -- twelve keys' worth of chorales from the one corpus.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from genchain import rundir
from genchain.config import dump_yaml, load_recipe, load_variant_recipe, to_dict
from genchain.data import music_tokens as mt
from genchain.errors import InputError, RunDirError
from genchain.fileio import atomic_write_text
from genchain.models.gpt import GPT, GPTConfig
from genchain.models.music import variant_defaults
from genchain.models.registry import create_model, get_family_entry
from genchain.runtime import environment, seed_everything
from genchain.train.checkpoint import load_weights
from genchain.train.engine import FitResult, TrainConfig, fit

PIECES_FILE = "music_pieces.json"
SOURCE_NAME = "bach-chorales"


@dataclass(frozen=True)
class MusicSettings:
    """What is specific to the music recipe."""

    model: str = "music-gpt"  # registry name: music-gpt, music-gpt-tiny
    val_fraction: float = 0.1  # share of pieces held out (by name hash)
    transpose: int = 5  # augmentation: random shift in [-transpose, transpose] semitones; 0: off
    max_pieces: int = 0  # use only the first N files (sorted by name); 0: all

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if not 0 <= self.transpose <= 6:
            raise ValueError(f"transpose must be in 0..6 semitones, got {self.transpose}")
        if self.max_pieces < 0:
            raise ValueError(f"max_pieces must be >= 0, got {self.max_pieces}")


@dataclass(frozen=True)
class MusicRecipe:
    """``genchain train music``'s config: ``model``, ``train`` and ``music`` sections (flat keys work too)."""

    model: GPTConfig = field(default_factory=GPTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    music: MusicSettings = field(default_factory=MusicSettings)


# A few hundred pieces of ~700 tokens: small batches, frequent evaluation on a fixed set of held-out windows.
TRAIN_DEFAULTS: dict[str, Any] = {"batch_size": 16, "max_iters": 4000, "learning_rate": 1e-3, "min_lr": 1e-4,
                                  "warmup_iters": 100, "eval_interval": 200, "eval_iters": 8, "log_interval": 20}


def resolve_recipe(config_file: str | Path | None, overrides: list[str] | None,
                   base: dict[str, Any] | None = None) -> MusicRecipe:
    """The recipe with the chosen variant's model sizes as the base under the file and the overrides."""
    return load_variant_recipe(MusicRecipe, config_file, overrides, base, variant_defaults=variant_defaults,
                               model_name=lambda r: get_family_entry(r.music.model, "music", "train music").name,
                               defaults={"train": TRAIN_DEFAULTS})


def score_paths(data: str) -> list[Path]:
    """The score files ``data`` names: ``bach-chorales`` (music21's corpus), a folder, or one file."""
    if data == SOURCE_NAME:
        return mt.bach_chorale_paths()
    path = Path(data)
    if not path.exists():
        raise InputError(f"--data {data}: no such file or folder; give {SOURCE_NAME}, a folder of MIDI/MusicXML "
                         "files, or one such file")
    paths = mt.find_scores(path)
    if not paths:
        raise InputError(f"{data} holds no score files ({', '.join(mt.MUSIC_SUFFIXES)})")
    return paths


def build_pieces(data: str, settings: MusicSettings) -> dict[str, dict[str, list[int]]]:
    """Token sequences by split and file name; InputError when a split would be empty."""
    from genchain.data.sources import cache_dir

    paths = score_paths(data)
    if settings.max_pieces:
        paths = paths[: settings.max_pieces]
    single = len(paths) == 1 and data != SOURCE_NAME
    pieces = mt.load_pieces(paths, cache_dir() / "music-pieces", skip_bad=not single)
    splits: dict[str, dict[str, list[int]]] = {"train": {}, "val": {}}
    for name, piece in pieces.items():
        splits[mt.split_of(name, settings.val_fraction)][name] = mt.encode(piece)
    if not splits["val"] and len(splits["train"]) >= 2:  # tiny corpora: hold out one piece all the same
        name = sorted(splits["train"])[-1]
        splits["val"][name] = splits["train"].pop(name)
    if not splits["train"] or not splits["val"]:
        raise InputError(f"{data}: {len(pieces)} readable piece(s); at least 2 are needed (one is held out)")
    return splits


def load_pieces_file(run_dir: str | Path) -> dict[str, dict[str, list[int]]]:
    path = Path(run_dir) / PIECES_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} has no {PIECES_FILE}; it was not written by `genchain train music`")
    return json.loads(path.read_text(encoding="utf-8"))


class MusicTask:
    """Header-prefixed windows starting at a bar line, randomly transposed; targets shifted by one."""

    def __init__(self, pieces: dict[str, dict[str, list[int]]], block_size: int, batch_size: int,
                 eval_iters: int, transpose: int, seed: int, device: torch.device):
        self.train = [np.asarray(ids, dtype=np.int64) for ids in pieces["train"].values()]
        self.val = [np.asarray(ids, dtype=np.int64) for ids in pieces["val"].values()]
        self.train_bars = [np.flatnonzero(ids == mt.BAR) for ids in self.train]
        self.val_bars = [np.flatnonzero(ids == mt.BAR) for ids in self.val]
        self.seq_len, self.batch_size, self.eval_iters = block_size, batch_size, eval_iters
        self.transpose, self.device = transpose, device
        self.rng = np.random.default_rng(seed)
        self.eval_seed = seed + 1

    def _window(self, ids: np.ndarray, bars: np.ndarray, rng: np.random.Generator,
                shift: int) -> tuple[np.ndarray, np.ndarray]:
        start = int(bars[rng.integers(len(bars))]) if len(bars) else mt.HEADER_LEN
        seq = np.concatenate([ids[: mt.HEADER_LEN], ids[start : start + self.seq_len + 1 - mt.HEADER_LEN]])
        if shift:
            seq = np.asarray(mt.transpose_ids(seq.tolist(), shift), dtype=np.int64)
        x = np.full(self.seq_len, mt.PAD, dtype=np.int64)
        y = np.full(self.seq_len, -1, dtype=np.int64)
        x[: len(seq) - 1] = seq[:-1]
        y[: len(seq) - 1] = seq[1:]
        return x, y

    def _batch(self, pieces: list[np.ndarray], bars: list[np.ndarray], rng: np.random.Generator,
               augment: bool) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(self.batch_size):
            i = int(rng.integers(len(pieces)))
            shift = int(rng.integers(-self.transpose, self.transpose + 1)) if augment and self.transpose else 0
            x, y = self._window(pieces[i], bars[i], rng, shift)
            xs.append(x)
            ys.append(y)
        return (torch.from_numpy(np.stack(xs)).to(self.device), torch.from_numpy(np.stack(ys)).to(self.device))

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._batch(self.train, self.train_bars, self.rng, augment=True)

    def items_per_batch(self) -> int:
        return self.batch_size * self.seq_len

    def flops_per_item(self, model: nn.Module) -> float:
        return model.flops_per_token(self.seq_len)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        rng = np.random.default_rng(self.eval_seed)  # the same held-out windows at every evaluation
        losses = [model(*self._batch(self.val, self.val_bars, rng, augment=False)).loss.item()
                  for _ in range(self.eval_iters)]
        return {"val_loss": float(np.mean(losses))}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def load_music_gpt(run_dir: str | Path, weights: str = rundir.BEST_WEIGHTS) -> tuple[GPT, MusicRecipe]:
    """The GPT of a music run dir in fp32 on the CPU, and its recipe."""
    rundir.require_family(run_dir, "music")
    recipe = load_recipe(MusicRecipe, Path(run_dir) / rundir.CONFIG)
    model = create_model(recipe.music.model, **to_dict(recipe.model))
    assert isinstance(model, GPT)
    load_weights(model, Path(run_dir) / weights)
    return model, recipe


def train_music(data: str, out_dir: str | Path, config_file: str | Path | None = None,
                overrides: list[str] | None = None, resume: bool = False) -> FitResult:
    """Train (or resume) a note-token GPT on the scores ``data`` names; everything lands in ``out_dir``."""
    out_dir = Path(out_dir)
    base: dict[str, Any] = {}
    saved: MusicRecipe | None = None
    if resume:
        saved = rundir.saved_recipe(out_dir, "music", MusicRecipe)
        base = to_dict(saved)
    recipe = resolve_recipe(config_file, overrides, base)
    recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, vocab_size=len(mt.VOCAB)))
    if saved is not None and (saved.model != recipe.model or saved.music != recipe.music):
        from genchain.errors import ConfigError

        raise ConfigError("the model and music sections differ from the run being resumed; only train settings "
                          "(e.g. max_iters) may change on --resume")
    pieces = load_pieces_file(out_dir) if resume else build_pieces(data, recipe.music)
    run = rundir.prepare_new_run(out_dir, resume)

    seed_everything(recipe.train.seed)
    model = create_model(recipe.music.model, **to_dict(recipe.model))
    atomic_write_text(run / rundir.CONFIG, dump_yaml(recipe))
    if not resume:
        atomic_write_text(run / PIECES_FILE, json.dumps(pieces, separators=(",", ":")))
        atomic_write_text(run / rundir.TOKENIZER, mt.vocab_json())
        rundir.write_card(run, {
            "family": "music", "model": recipe.music.model, "task": "causal-lm",
            "params": sum(p.numel() for p in model.parameters()),
            "data": {"source": data if data == SOURCE_NAME else str(Path(data).resolve()),
                     "pieces": {split: len(names) for split, names in pieces.items()},
                     "tokens": {split: sum(map(len, names.values())) for split, names in pieces.items()},
                     "licences": ["music: public domain (J. S. Bach); encodings: music21 corpus"]
                     if data == SOURCE_NAME else []},
            "environment": environment(),
        })

    def task_factory(device: torch.device) -> MusicTask:
        return MusicTask(pieces, recipe.model.block_size, recipe.train.batch_size, recipe.train.eval_iters,
                         recipe.music.transpose, recipe.train.seed, device)

    return fit(model, task_factory, recipe.train, run, resume=resume)
