"""Audio augmentation on float mono samples in [-1, 1]: speed, time shift, gain and additive noise.

The order is speed, shift, gain, noise: noise comes last so the signal-to-noise ratio is measured against the
signal that is actually stored, and the result is clipped to [-1, 1] once, as 16-bit WAV requires.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genchain.data.media import resample

_SPEED_STEPS = 100  # speeds are rounded to 1%, so resampling is a small polyphase ratio (e.g. 100/107)


def change_speed(samples: np.ndarray, speed: float) -> np.ndarray:
    """Play ``speed`` times faster by resampling: the clip gets ``1 / speed`` as long and the pitch shifts with it.

    Treating the clip as if recorded at ``speed`` times its rate and resampling back is a band-limited
    resample (scipy's polyphase filter), so speeding up does not alias.
    """
    steps = round(speed * _SPEED_STEPS)
    return resample(samples, steps, _SPEED_STEPS)


def time_shift(samples: np.ndarray, fraction: float) -> np.ndarray:
    """Rotate the clip by ``fraction`` of its length (positive: later); what falls off the end wraps around."""
    return np.roll(samples, round(fraction * len(samples)))


def apply_gain(samples: np.ndarray, gain_db: float) -> np.ndarray:
    return samples * np.float32(10 ** (gain_db / 20))


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise scaled so that signal RMS / noise RMS is ``snr_db`` decibels (silence stays silent)."""
    signal_rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    noise = rng.standard_normal(len(samples)).astype(np.float32)
    return samples + noise * np.float32(signal_rms / 10 ** (snr_db / 20))


def augment_audio(samples: np.ndarray, params: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """One augmented copy under the recipe's audio section, clipped to [-1, 1]."""
    out = change_speed(samples, rng.uniform(*params["speed"]))
    out = time_shift(out, rng.uniform(-params["shift"], params["shift"]))
    out = apply_gain(out, rng.uniform(*params["gain_db"]))
    if params["snr_db"] is not None:
        out = add_noise(out, rng.uniform(*params["snr_db"]), rng)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
