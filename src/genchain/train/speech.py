"""``genchain train speech``: a class-conditional VAE over fixed-size log-mel clips of words.

The recipe is the image VAE's with a frontend in front: clips (:mod:`genchain.train.speech_data`) are analysed
once into 64 x 64 uint8 log-mel "images" (:mod:`genchain.data.audio_features`) and the image VAE's task
(:class:`genchain.train.vae.VAETask`: shuffled epochs, held-out ELBO with fixed noise, sample grids) trains on
them through the one engine loop, :func:`genchain.train.engine.fit`. The analysed clips are saved in the run
(``speech_features.safetensors``) with the frontend's settings in ``config.yaml``, so generation inverts exactly
the analysis the model learned from, and evaluation and ``--resume`` need neither espeak-ng nor the raw files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genchain import rundir
from genchain.config import dump_yaml, load_recipe, load_variant_recipe, to_dict
from genchain.data.audio_features import FeatureConfig, single_thread
from genchain.errors import ConfigError, InputError
from genchain.fileio import atomic_write_text
from genchain.models.registry import create_model, get_family_entry
from genchain.models.speech import variant_defaults
from genchain.models.vae import VAE, VAEConfig
from genchain.runtime import environment, seed_everything
from genchain.train.checkpoint import load_weights
from genchain.train.engine import FitResult, TrainConfig, fit
from genchain.train.image_data import ImageTensors
from genchain.train.speech_data import SpeechData, build_features, load_features, save_features
from genchain.train.vae import VAEData, VAERecipe, VAESettings, VAETask

FEATURES_FILE = "speech_features.safetensors"


@dataclass(frozen=True)
class SpeechSettings:
    """What is specific to the speech recipe, beside the model's shape, the optimiser and the frontend."""

    model: str = "speech-vae"  # registry name: speech-vae, speech-vae-tiny
    clips_per_digit: int = 24  # speech-digits: espeak-ng voice settings per digit
    real_copies: int = 8  # speech-real: speed-perturbed copies of each real recording
    holdout: float = 0.2  # share of each label's recordings held out for evaluation
    kl_warmup_iters: int = 200
    grid_images: int = 40  # spectrogram grid (one row per label) written at each evaluation; 0: none

    def __post_init__(self) -> None:
        if self.clips_per_digit <= 0 or self.real_copies <= 0 or self.kl_warmup_iters < 0 or self.grid_images < 0:
            raise ValueError("clips_per_digit and real_copies must be positive, kl_warmup_iters and grid_images >= 0")
        if not 0.0 < self.holdout <= 0.5:
            raise ValueError(f"holdout must be in (0, 0.5], got {self.holdout}")


# A few hundred clips: small batches, frequent evaluation, a learning rate the VAE takes from the start. Given as
# the recipe's base (under the config file and the overrides), as the variant's model defaults are.
TRAIN_DEFAULTS: dict[str, Any] = {"batch_size": 32, "max_iters": 3000, "learning_rate": 2e-3, "min_lr": 2e-4,
                                  "warmup_iters": 50, "weight_decay": 0.0, "eval_interval": 250, "eval_iters": 1,
                                  "log_interval": 25}


@dataclass(frozen=True)
class SpeechRecipe:
    """``genchain train speech``'s config: ``model``, ``train``, ``speech`` and ``features`` sections."""

    model: VAEConfig = field(default_factory=VAEConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**TRAIN_DEFAULTS))
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    features: FeatureConfig = field(default_factory=FeatureConfig)


def resolve_recipe(config_file: str | Path | None, overrides: list[str] | None,
                   base: dict[str, Any] | None = None) -> SpeechRecipe:
    """The recipe with the chosen variant's defaults (``model=speech-vae-tiny``) under the file and overrides."""
    return load_variant_recipe(SpeechRecipe, config_file, overrides, base, variant_defaults=variant_defaults,
                               model_name=lambda r: get_family_entry(r.speech.model, "speech", "train speech").name,
                               defaults={"train": TRAIN_DEFAULTS})


def _tensors(features: torch.Tensor, labels: torch.Tensor, names: list[str], ids: list[str]) -> ImageTensors:
    return ImageTensors(features, labels, names, ids)


def train_speech(data: str, out_dir: str | Path, config_file: str | Path | None = None,
                 overrides: list[str] | None = None, resume: bool = False) -> FitResult:
    """Train (or resume) a speech VAE on the clips ``data`` names; everything lands in ``out_dir``."""
    out_dir = Path(out_dir)
    # 1. the config: the resumed run's, then the file, then the overrides
    base: dict[str, Any] = {}
    saved: SpeechRecipe | None = None
    if resume:
        saved = rundir.saved_recipe(out_dir, "speech", SpeechRecipe)
        base = to_dict(saved)
    try:
        recipe = resolve_recipe(config_file, overrides, base)
    except ValueError as err:
        raise ConfigError(f"invalid speech config: {err}") from err

    # 2. the clips: analysed now, or the resumed run's own
    if saved is not None:
        if saved.model.image_size != recipe.model.image_size or saved.features != recipe.features \
                or saved.speech.model != recipe.speech.model:
            raise ConfigError("the model or frontend differs from the run being resumed; only train settings "
                              "(e.g. max_iters) may change on --resume")
        if rundir.read_card(out_dir).get("data", {}).get("spec") != data:
            raise InputError(f"--data {data} is not what the run being resumed was trained on")
        clips = load_features(out_dir / FEATURES_FILE)
    else:
        rundir.prepare_new_run(out_dir, resume=False)  # refuse to overwrite before spending time on the data
        s = recipe.speech
        clips = build_features(data, recipe.features, holdout=s.holdout, clips_per_digit=s.clips_per_digit,
                               real_copies=s.real_copies)
    f = recipe.features
    if f.n_mels != f.frames or f.n_mels % 2:
        raise ConfigError(f"the conv VAE takes square inputs: set n_mels = frames (got {f.n_mels} x {f.frames})")
    model_cfg = dataclasses.replace(recipe.model, image_size=f.n_mels, channels=1, conditional=True,
                                    num_classes=len(clips.label_names))
    try:
        recipe = dataclasses.replace(recipe, model=model_cfg)
        seed_everything(recipe.train.seed)
        model = create_model(recipe.speech.model, **to_dict(recipe.model))
    except ValueError as err:
        raise ConfigError(f"invalid model config: {err}") from err
    if saved is not None and saved.model != recipe.model:
        raise ConfigError("the model differs from the run being resumed; only train settings may change on --resume")
    run = rundir.prepare_new_run(out_dir, resume)

    # 3. record the run, then train with the image VAE's task
    atomic_write_text(run / rundir.CONFIG, dump_yaml(recipe))
    if not resume:
        save_features(clips, run / FEATURES_FILE)
        rundir.write_card(run, _card(recipe, model, clips, data))
    vae_data = VAEData(_tensors(clips.train, clips.train_labels, clips.label_names, clips.train_ids),
                       _tensors(clips.eval, clips.eval_labels, clips.label_names, clips.eval_ids),
                       "held-out recordings")
    vae_recipe = VAERecipe(model=recipe.model, train=recipe.train,
                           vae=VAESettings(model="vae", kl_warmup_iters=recipe.speech.kl_warmup_iters,
                                           grid_images=min(recipe.speech.grid_images, len(clips.eval))))

    def task_factory(device: torch.device) -> VAETask:
        return VAETask(vae_data, vae_recipe, device, run)

    # One CPU thread: at 0.07 GFLOP per clip the convolutions are too small to split, and on a shared 2-core
    # machine a second thread's spin-waits cost more than it adds (measured: 10x more clips/s with one thread
    # while other jobs ran). A GPU run is unaffected (this sets CPU intra-op threads only).
    with single_thread():
        return fit(model, task_factory, recipe.train, run, resume=resume)


def _card(recipe: SpeechRecipe, model: VAE, clips: SpeechData, spec: str) -> dict[str, Any]:
    return {
        "family": "speech", "model": recipe.speech.model, "task": "speech-generation",
        "params": sum(p.numel() for p in model.parameters()),
        "representation": f"log-mel {recipe.features.n_mels}x{recipe.features.frames}, "
                          f"{recipe.features.sample_rate} Hz; waveform by Griffin-Lim",
        "label_names": clips.label_names, "num_classes": len(clips.label_names),
        "latent_dim": recipe.model.latent_dim,
        "data": {"spec": spec, "train_clips": len(clips.train_ids), "eval_clips": len(clips.eval_ids),
                 "eval_split": "held-out recordings", "sources": [s.get("path") for s in clips.sources],
                 "origins": [s.get("origin") for s in clips.sources if s.get("origin")],
                 "licences": sorted({s["licence"] for s in clips.sources if s.get("licence")})},
        "environment": environment(),
    }


@dataclass
class SpeechModel:
    """A trained speech run ready to sample: the VAE (fp32, CPU, eval mode), its frontend and vocabulary."""

    model: VAE
    features: FeatureConfig
    label_names: list[str]
    card: dict[str, Any]
    run_dir: Path


def load_speech(run_dir: str | Path, weights: str = rundir.LAST_WEIGHTS) -> SpeechModel:
    """The speech model of a run dir; raises RunDirError when the run is of another family.

    The *last* weights by default, not the best-by-held-out-ELBO ones: on a few hundred clips the held-out ELBO
    bottoms out early (iteration 500 of 2,700 in a 300 CPU-second run) while the words keep getting clearer: the
    judge of :mod:`genchain.eval.speech` heard 39% of the digits right from the best-ELBO weights and 86% from the
    last ones.
    """
    card = rundir.require_family(run_dir, "speech")
    recipe = load_recipe(SpeechRecipe, Path(run_dir) / rundir.CONFIG)
    model = create_model(card.get("model", recipe.speech.model), **to_dict(recipe.model))
    assert isinstance(model, VAE)
    load_weights(model, Path(run_dir) / weights)
    return SpeechModel(model.eval(), recipe.features, list(card["label_names"]), card, Path(run_dir))
