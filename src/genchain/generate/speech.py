"""Saying words with a speech run: text -> labels -> log-mel samples -> Griffin-Lim -> one WAV.

Inference only (the model and frontend come from :func:`genchain.train.speech.load_speech`). Each word gets its
own latent draw from a generator seeded by ``seed`` and the word's position, so the same command gives the same
file, and changing one word leaves the others as they were.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genchain.data.audio_features import FeatureConfig, features_to_wave, single_thread, trim_silence
from genchain.data.media import encode_wav
from genchain.data.sources import DIGIT_WORDS
from genchain.errors import InputError
from genchain.fileio import atomic_write_bytes, atomic_write_json

EXTRA_DIGIT_WORDS = {"oh": 0, "nought": 0}


@dataclass(frozen=True)
class Speech:
    """What :func:`say` wrote."""

    path: Path
    sidecar: Path
    words: list[str]  # the label names said, in order
    seconds: float
    sample_rate: int


def vocabulary(label_names: list[str]) -> dict[str, int]:
    """Every accepted spelling -> label index: the names themselves, and for digit labels both numerals and
    English number words (``7``, ``seven``), whichever the run was trained with."""
    vocab = {name.lower(): i for i, name in enumerate(label_names)}
    words = {**{w: d for d, w in enumerate(DIGIT_WORDS)}, **EXTRA_DIGIT_WORDS}
    for word, digit in words.items():
        for spelling, other in ((str(digit), word), (word, str(digit))):
            if other in vocab and spelling not in vocab:
                vocab[spelling] = vocab[other]
    return vocab


def parse_words(text: str, label_names: list[str]) -> list[int]:
    """Label indices of the words in ``text``; a run of numerals ("371") is read digit by digit.

    Raises:
        InputError: for empty text, or a word outside the vocabulary (the message lists it).
    """
    vocab = vocabulary(label_names)
    tokens = [t for t in re.split(r"[\s,;.!?]+", text.strip().lower()) if t]
    if not tokens:
        raise InputError("--say is empty; give the words to say, e.g. --say \"3 7 1\"")
    labels = []
    for token in tokens:
        parts = list(token) if token.isdigit() and token not in vocab else [token]
        for part in parts:
            if part not in vocab:
                raise InputError(f"{part!r} is not in this run's vocabulary; it can say: {', '.join(label_names)}"
                                 + (" (digits also as words: zero ... nine)" if "zero" in vocab else ""))
            labels.append(vocab[part])
    return labels


@torch.no_grad()
def sample_features(model: torch.nn.Module, labels: list[int], seed: int, temperature: float = 1.0) -> torch.Tensor:
    """One log-mel clip per label, (N, n_mels, frames) in [-1, 1]; word i draws with seed ``seed * 1000 + i``."""
    latent = model.config.latent_dim
    z = torch.stack([torch.randn(latent, generator=torch.Generator().manual_seed(seed * 1000 + i))
                     for i in range(len(labels))]) * temperature
    return model.decode(z, torch.tensor(labels, dtype=torch.long))[:, 0]


def to_waveforms(features: torch.Tensor, cfg: FeatureConfig, iters: int, seed: int = 0) -> list[np.ndarray]:
    """Each clip's waveform by Griffin-Lim, trimmed of the silence around the word."""
    return [trim_silence(features_to_wave(f, cfg, iters=iters, seed=seed + i).numpy(), cfg)
            for i, f in enumerate(features)]


def join(waves: list[np.ndarray], rate: int, gap_ms: float) -> np.ndarray:
    """Words joined by ``gap_ms`` of silence (and the same before and after), peak-normalised to 0.9."""
    gap = np.zeros(round(rate * gap_ms / 1000), dtype=np.float32)
    pieces = [gap]
    for wave in waves:
        pieces += [wave.astype(np.float32), gap]
    out = np.concatenate(pieces)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    return out * (0.9 / peak) if peak > 0 else out


def say(run_dir: str | Path, text: str, out: Path, *, seed: int = 0, griffin_lim_iters: int = 64,
        gap_ms: float = 120.0, temperature: float = 1.0) -> Speech:
    """Write ``out`` (16-bit mono WAV) saying ``text`` with the run's model, and ``out``.json beside it."""
    from genchain.train.speech import load_speech

    if out.suffix.lower() != ".wav":
        raise InputError(f"-o {out}: speech is written as WAV; give a file name ending in .wav")
    if gap_ms < 0 or temperature < 0 or griffin_lim_iters < 1:
        raise InputError("--gap-ms and --temperature must be >= 0 and --griffin-lim-iters >= 1")
    speech = load_speech(run_dir)
    labels = parse_words(text, speech.label_names)
    cfg = speech.features
    with single_thread():
        # 1. sample one log-mel clip per word from the class-conditional decoder
        features = sample_features(speech.model, labels, seed, temperature)
        # 2. mel -> linear magnitude -> phase by fast Griffin-Lim, then trim each word
        waves = to_waveforms(features, cfg, griffin_lim_iters, seed)
    # 3. join with gaps and write the WAV and its sidecar
    audio = join(waves, cfg.sample_rate, gap_ms)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, encode_wav(audio, cfg.sample_rate))
    words = [speech.label_names[i] for i in labels]
    sidecar = out.with_name(out.name + ".json")
    atomic_write_json(sidecar, {
        "kind": "speech", "backend": "genchain speech run", "run": str(Path(run_dir).resolve()),
        "model": speech.card.get("model"), "config": {"griffin_lim_iters": griffin_lim_iters, "gap_ms": gap_ms,
                                                       "temperature": temperature, "features": vars(cfg)},
        "seed": seed, "prompt": text, "words": words, "labels": labels, "sample_rate": cfg.sample_rate,
        "seconds": round(len(audio) / cfg.sample_rate, 4),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return Speech(out, sidecar, words, len(audio) / cfg.sample_rate, cfg.sample_rate)
