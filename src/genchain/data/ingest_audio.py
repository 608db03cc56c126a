"""Audio for ``genchain data ingest``: WAV/FLAC/OGG files mixed to mono, resampled, stored as 16-bit WAV."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genchain.data.ingest import Item
from genchain.data.media import decode_audio, encode_wav, resample
from genchain.errors import InputError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


class AudioReader:
    """One row per file at ``sampling_rate``; an unreadable file is a warning and a ``skipped_corrupt`` count."""

    description = ", ".join(AUDIO_SUFFIXES)
    packages = ("soundfile", "scipy", "numpy")

    def __init__(self, sampling_rate: int):
        if sampling_rate <= 0:
            raise InputError(f"--sampling-rate must be a positive number of Hz, got {sampling_rate}")
        self.sampling_rate = sampling_rate
        self.seconds = 0.0
        self.counts: Counter = Counter()

    def accepts(self, path: Path) -> bool:
        return path.suffix.lower() in AUDIO_SUFFIXES

    def items(self, path: Path) -> Iterator[Item]:
        try:
            samples, rate = decode_audio(path.read_bytes(), str(path))
        except InputError as err:
            warnings.warn(f"skipped: {err}", stacklevel=2)
            self.counts["skipped_corrupt"] += 1
            return
        samples = resample(samples, rate, self.sampling_rate)
        self.seconds += len(samples) / self.sampling_rate
        yield Item(str(path), {"bytes": encode_wav(samples, self.sampling_rate), "path": None})

    def label_names(self, paths: list[Path]) -> None:
        """Audio files carry no labels of their own."""
        return None

    def params(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3)}
