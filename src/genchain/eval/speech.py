"""Judging a speech run by ear, mechanically: does a word classifier hear the word that was asked for?

The judge is a small CNN on the same log-mel frontend, trained on the run's *training* clips (real recordings
or espeak-ng voices, never generated audio) and cached in ``RUN_DIR/eval/``. Its accuracy is reported on:

* ``held_out``: real clips the generator never saw: how good the judge is (the ceiling for everything below);
* ``held_out_griffin_lim``: the same clips' log-mels inverted by Griffin-Lim and analysed again: what the
  vocoder alone costs, the ceiling for generated audio;
* ``generated``: clips sampled from the model for each label, inverted and analysed again, so the waveform a
  user hears is what is judged, not the model's spectrogram;
* ``baseline_class_mean``: the mean training spectrogram of each label, inverted the same way: a generator
  that memorised one average per word and has no variety;
* ``baseline_noise``: white noise; balanced labels make its expected accuracy 1 / number of labels (chance).

Each entry has the overall accuracy and the accuracy per label.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from genchain.data.audio_features import FeatureConfig, clip_features, features_to_wave, single_thread, to_uint8
from genchain.fileio import atomic_path, atomic_write_json

EVAL_DIR = "eval"
CLASSIFIER = "classifier.safetensors"
FREQ_BANDS = 4


class WordClassifier(nn.Module):
    """Three conv blocks (3x3 conv, batch norm, ReLU, 2x2 max-pool), an average over time in four frequency
    bands, a linear layer. A global average would also pool over frequency and lose which band is loud, the
    very thing that tells vowels (and tones) apart."""

    def __init__(self, num_classes: int, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in (width, width * 2, width * 4):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((FREQ_BANDS, 1))  # average over time, keep where in frequency
        self.head = nn.Linear(c_in * FREQ_BANDS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features in [-1, 1] (B, 1, M, T) -> logits (B, num_classes)."""
        return self.head(self.pool(self.features(x)).flatten(1))


def _unit(features: torch.Tensor) -> torch.Tensor:
    """uint8 levels or floats in [-1, 1] -> floats in [-1, 1], (B, 1, M, T)."""
    x = features.float().div(127.5).sub(1.0) if features.dtype == torch.uint8 else features.float()
    return x if x.dim() == 4 else x.unsqueeze(1)


def _shift(x: torch.Tensor, max_frames: int, generator: torch.Generator) -> torch.Tensor:
    """Delay each clip by 0..max_frames frames (silence, -1, fills the start): onsets vary a little in practice."""
    out = torch.full_like(x, -1.0)
    for i, s in enumerate(torch.randint(0, max_frames + 1, (x.shape[0],), generator=generator).tolist()):
        out[i, ..., s:] = x[i, ..., : x.shape[-1] - s]
    return out


@torch.enable_grad()  # evaluation runs under no_grad
def train_classifier(features: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int = 40,
                     batch_size: int = 32, seed: int = 0, progress: bool = True) -> WordClassifier:
    """A classifier fitted to ``features`` (N, [1,] M, T) with Adam; returned in eval mode."""
    with single_thread():
        return _train_classifier(features, labels, num_classes, epochs, batch_size, seed, progress)


def _train_classifier(features: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int,
                      batch_size: int, seed: int, progress: bool) -> WordClassifier:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = WordClassifier(num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    x_all, n = _unit(features), features.shape[0]
    model.train()
    for _ in tqdm(range(epochs), desc="classifier", unit="epoch", leave=False, disable=None if progress else True):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            if len(index) < 2:  # batch norm needs two
                continue
            loss = F.cross_entropy(model(_shift(x_all[index], 3, generator)), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    _recompute_batch_norm(model, x_all)
    return model.eval()


@torch.no_grad()
def _recompute_batch_norm(model: nn.Module, x: torch.Tensor) -> None:
    """Replace batch norm's running statistics by the exact ones of the training clips: after a few hundred
    steps the exponential averages still lag the weights, and eval mode would then see shifted activations."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the passes below
    model.train()
    for start in range(0, len(x), 256):
        model(x[start : start + 256])
    for m in norms:
        m.momentum = 0.1


@torch.no_grad()
def predict(model: WordClassifier, features: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([model(_unit(features[i : i + batch_size])).argmax(1) for i in range(0, len(features),
                                                                                         batch_size)])


def accuracy(predicted: torch.Tensor, labels: torch.Tensor, label_names: list[str]) -> dict[str, Any]:
    """Share of correct predictions overall and per label (labels with no clips are left out)."""
    correct = (predicted == labels).float()
    per_label = {name: round(float(correct[labels == i].mean()), 4) for i, name in enumerate(label_names)
                 if bool((labels == i).any())}
    return {"accuracy": round(float(correct.mean()), 4) if len(labels) else float("nan"), "clips": len(labels),
            "per_label": per_label}


@dataclass
class Judge:
    model: WordClassifier
    info: dict[str, Any]


def load_or_train_judge(run_dir: Path, train: torch.Tensor, labels: torch.Tensor, num_classes: int,
                        seed: int = 0) -> Judge:
    """The run's cached classifier when it was trained on these very clips, else a new one (then cached)."""
    from safetensors.torch import load_file, save_file

    digest = hashlib.sha256(train.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()
    weights, info_path = run_dir / EVAL_DIR / CLASSIFIER, run_dir / EVAL_DIR / "classifier.json"
    if weights.is_file() and info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if info.get("train_sha256") == digest and info.get("seed") == seed:
            model = WordClassifier(num_classes)
            model.load_state_dict(load_file(str(weights)))
            return Judge(model.eval(), {**info, "cached": True})
    model = train_classifier(train, labels, num_classes, seed=seed)
    weights.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights) as tmp:
        save_file(model.state_dict(), str(tmp))
    train_acc = accuracy(predict(model, train), labels, [str(i) for i in range(num_classes)])["accuracy"]
    info = {"train_sha256": digest, "seed": seed, "train_clips": len(labels), "train_accuracy": train_acc,
            "architecture": "3x(conv3x3-BN-ReLU-maxpool) 16-32-64, time average in 4 frequency bands, linear"}
    atomic_write_json(info_path, info)
    return Judge(model, {**info, "cached": False})


def reanalyse(features: torch.Tensor, cfg: FeatureConfig, iters: int, seed: int = 0,
              progress: bool = True) -> torch.Tensor:
    """Features (N, [1,] M, T) -> Griffin-Lim waveforms -> features again, uint8 (N, 1, M, T): what a listener
    of the generated WAV would hear, in the judge's terms."""
    x = _unit(features)[:, 0]
    out = []
    for i in tqdm(range(len(x)), desc="griffin-lim", unit="clip", leave=False, disable=None if progress else True):
        wave = features_to_wave(x[i], cfg, iters=iters, seed=seed + i).numpy()
        out.append(to_uint8(clip_features(wave, cfg.sample_rate, cfg))[None])
    return torch.stack(out)


def noise_clips(n: int, cfg: FeatureConfig, seed: int = 0) -> torch.Tensor:
    """``n`` clips of white noise through the frontend, uint8 (n, 1, M, T)."""
    rng = np.random.default_rng(seed)
    return torch.stack([to_uint8(clip_features(rng.standard_normal(cfg.samples).astype(np.float32) * 0.3,
                                               cfg.sample_rate, cfg))[None] for _ in range(n)])


def evaluate_run(run_dir: str | Path, per_label: int = 20, griffin_lim_iters: int = 64,
                 seed: int = 0) -> dict[str, Any]:
    """The accuracy report of a speech run (see the module docstring); also written to RUN_DIR/eval/report.json."""
    with single_thread(), torch.no_grad():
        return _evaluate(Path(run_dir), per_label, griffin_lim_iters, seed)


def _evaluate(run_dir: Path, per_label: int, griffin_lim_iters: int, seed: int) -> dict[str, Any]:
    from genchain.errors import InputError
    from genchain.generate.speech import sample_features
    from genchain.train.speech import FEATURES_FILE, load_speech
    from genchain.train.speech_data import load_features

    if per_label < 1 or griffin_lim_iters < 1:
        raise InputError("--per-label and --griffin-lim-iters must be at least 1")
    speech = load_speech(run_dir)
    data = load_features(run_dir / FEATURES_FILE)
    names, cfg, k = data.label_names, speech.features, len(data.label_names)
    judge = load_or_train_judge(run_dir, data.train, data.train_labels, k, seed=seed)

    def score(features: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        return accuracy(predict(judge.model, features), labels, names)

    wanted = torch.arange(k).repeat_interleave(per_label)  # (k * per_label,) label-major
    generated = torch.cat([sample_features(speech.model, wanted[i : i + 256].tolist(), seed * 7919 + i)
                           for i in range(0, len(wanted), 256)])
    means = torch.stack([_unit(data.train[data.train_labels == i]).mean(0)[0] for i in range(k)])
    mean_copies = max(1, min(per_label, 5))
    mean_labels = torch.arange(k).repeat_interleave(mean_copies)
    report = {
        "run": str(run_dir), "model": speech.card.get("model"), "labels": names,
        "classifier": judge.info, "griffin_lim_iters": griffin_lim_iters, "seed": seed,
        "held_out": score(data.eval, data.eval_labels),
        "held_out_griffin_lim": score(reanalyse(data.eval, cfg, griffin_lim_iters, seed), data.eval_labels),
        "generated": score(reanalyse(generated, cfg, griffin_lim_iters, seed), wanted),
        "baseline_class_mean": score(reanalyse(means[mean_labels], cfg, griffin_lim_iters, seed), mean_labels),
        "baseline_noise": score(noise_clips(len(wanted), cfg, seed), wanted),
        "chance": round(1 / k, 4),
    }
    atomic_write_json(run_dir / EVAL_DIR / "report.json", report)
    return report
