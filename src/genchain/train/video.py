"""Training the video VAE on Moving Fashion-MNIST: the recipe, its batches and evaluation, ``train_video``, and
``load_video_model`` for generation and evaluation.

A batch is ``batch_size`` clips from a shuffled epoch (:class:`EpochSampler`, checkpointed), each cut to a window
of ``frames`` consecutive frames at an offset drawn from a generator seeded by the batch count, so ``--resume``
draws exactly the batches an uninterrupted run would. Training on windows shorter than the stored clips is
cheaper per step and the recurrent prior still rolls out clips of any length. Evaluation scores the test clips'
first ``frames`` frames with fixed noise (negative ELBO in nats per clip first, then its parts) and writes a grid
of generated clips, one clip per row, to ``RUN_DIR/samples/``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from genchain import rundir
from genchain.config import dump_yaml, load_recipe, load_variant_recipe, to_dict
from genchain.errors import ConfigError, InputError
from genchain.fileio import atomic_write_text
from genchain.models.registry import create_model, get_family_entry
from genchain.models.video import VideoVAE, VideoVAEConfig, variant_defaults
from genchain.runtime import environment, seed_everything
from genchain.train import distributed
from genchain.train.checkpoint import load_weights
from genchain.train.engine import FitResult, TrainConfig, fit
from genchain.train.image_data import to_unit_range
from genchain.train.sampling import EpochSampler
from genchain.train.vae import _save_png, make_grid
from genchain.train.video_data import VideoData, load_video_data

SAMPLES_DIR = "samples"


@dataclass(frozen=True)
class VideoSettings:
    """What is specific to training a video model, beside its shape and the optimiser."""

    model: str = "video-vae"  # registry name: video-vae, video-vae-tiny
    frames: int = 10  # frames per training window (the stored clips have 20)
    kl_warmup_iters: int = 200  # KL weight rises 0 -> 1 (Bowman et al. 2016): the decoder learns to draw first
    eval_clips: int = 200
    eval_batch_size: int = 50
    grid_clips: int = 8  # generated clips in each evaluation's grid (one per row); 0: none

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise ValueError(f"frames must be at least 2 (a video), got {self.frames}")
        if self.kl_warmup_iters < 0 or self.eval_clips <= 0 or self.eval_batch_size <= 0 or self.grid_clips < 0:
            raise ValueError("kl_warmup_iters and grid_clips must be >= 0, eval_clips and eval_batch_size > 0")


# the train section's defaults for this family (TrainConfig's are the GPT's); the file and overrides change them
TRAIN_DEFAULTS: dict[str, Any] = {"batch_size": 16, "max_iters": 2000, "learning_rate": 2e-3, "min_lr": 2e-4,
                                  "warmup_iters": 50, "weight_decay": 0.0, "eval_interval": 250}


@dataclass(frozen=True)
class VideoRecipe:
    """``genchain train video``'s config: ``model``, ``train`` and ``video`` sections (flat keys work too)."""

    model: VideoVAEConfig = field(default_factory=VideoVAEConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**TRAIN_DEFAULTS))
    video: VideoSettings = field(default_factory=VideoSettings)


class VideoTask:
    """Windows of shuffled training clips; evaluation on the test clips with fixed noise."""

    def __init__(self, data: VideoData, recipe: VideoRecipe, device: torch.device, run_dir: Path):
        self.data = data
        self.settings = recipe.video
        self.batch_size = recipe.train.batch_size
        self.accumulation = recipe.train.gradient_accumulation_steps
        self.device = device
        self.run_dir = run_dir
        self.seed = recipe.train.seed
        self.sampler = EpochSampler(len(data.train), self.batch_size, self.seed, "clips")
        self.batches = 0

    def kl_weight(self) -> float:
        warmup = self.settings.kl_warmup_iters
        return min(1.0, (self.batches // self.accumulation + 1) / warmup) if warmup else 1.0

    def next_batch(self) -> tuple[torch.Tensor, float]:
        index = self.sampler.next_indices()
        window = self.settings.frames
        offsets = torch.randint(0, self.data.frames - window + 1, (len(index),),
                                generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.batches))
        weight = self.kl_weight()
        self.batches += 1
        clips = torch.stack([self.data.train[i, o : o + window] for i, o in zip(index.tolist(), offsets.tolist(),
                                                                                   strict=True)])
        return to_unit_range(clips.to(self.device, non_blocking=True)), weight  # (B, T, 1, S, S)

    def items_per_batch(self) -> int:
        return self.batch_size

    def flops_per_item(self, model: nn.Module) -> float:
        return model.flops_per_clip(self.settings.frames) if isinstance(model, VideoVAE) else 0.0

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        test = self.data.test[: self.settings.eval_clips, : self.settings.frames]
        sums = {"recon": 0.0, "kl_content": 0.0, "kl_motion": 0.0}
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed + 1)  # the same noise every time; training's RNG is untouched
            for start in range(0, len(test), self.settings.eval_batch_size):
                clips = to_unit_range(test[start : start + self.settings.eval_batch_size].to(self.device))
                out = model(clips)
                for key in sums:
                    sums[key] += float(getattr(out, key)) * len(clips)
            self._write_grid(model)
        means = {key: value / len(test) for key, value in sums.items()}
        return {"loss": means["recon"] + means["kl_content"] + means["kl_motion"], **means}

    def _write_grid(self, model: nn.Module) -> None:
        if self.settings.grid_clips == 0 or not distributed.is_main():
            return
        assert isinstance(model, VideoVAE)
        clips = model.generate(self.settings.grid_clips, self.data.frames, torch.Generator().manual_seed(self.seed))
        it = self.batches // self.accumulation
        _save_png(make_grid(clips.flatten(0, 1), nrow=self.data.frames),
                  self.run_dir / SAMPLES_DIR / f"clips_{it:06d}.png")

    def state_dict(self) -> dict[str, Any]:
        return {**self.sampler.state_dict(), "batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
        self.batches = int(state["batches"])


def resolve_recipe(config_file: str | Path | None, overrides: list[str] | None,
                   base: dict[str, Any] | None = None) -> VideoRecipe:
    """The recipe with the chosen variant's defaults (``model=video-vae-tiny``) under the file and overrides."""
    try:
        return load_variant_recipe(VideoRecipe, config_file, overrides, base, variant_defaults=variant_defaults,
                                   model_name=lambda r: get_family_entry(r.video.model, "video", "train video").name,
                                   defaults={"train": dict(TRAIN_DEFAULTS)})
    except ValueError as err:
        raise ConfigError(f"invalid video recipe: {err}") from err


def load_video_model(run_dir: str | Path, weights: str = rundir.BEST_WEIGHTS) -> tuple[VideoVAE, dict[str, Any]]:
    """The video model of a run dir in fp32 on the CPU, in eval mode, and its card."""
    card = rundir.require_family(run_dir, "video")
    recipe = load_recipe(VideoRecipe, Path(run_dir) / rundir.CONFIG)
    model = create_model(card.get("model", recipe.video.model), **to_dict(recipe.model))
    assert isinstance(model, VideoVAE)
    load_weights(model, Path(run_dir) / weights)
    return model.eval(), card


def train_video(data: str | Path, out_dir: str | Path, config_file: str | Path | None = None,
                overrides: list[str] | None = None, resume: bool = False) -> FitResult:
    """Train (or resume) a video model on Moving Fashion-MNIST clips; everything lands in ``out_dir``."""
    out_dir = Path(out_dir)
    place = distributed.init()
    resume = distributed.should_resume(resume, (out_dir / rundir.STATE).is_file())
    # 1. the config: the resumed run's, then the file, then the overrides
    saved: VideoRecipe | None = None
    base: dict[str, Any] = {}
    if resume:
        saved = rundir.saved_recipe(out_dir, "video", VideoRecipe)
        base = to_dict(saved)
    recipe = resolve_recipe(config_file, overrides, base)

    # 2. the data, which fixes the frame size and how long a window can be
    clips = load_video_data(data, recipe.model.image_size or None)
    if recipe.video.frames > clips.frames:
        raise ConfigError(f"frames={recipe.video.frames} is longer than the data's clips ({clips.frames} frames)")
    if len(clips.test) == 0:
        raise InputError(f"{data} has no test clips to evaluate on; write it with num_test > 0")
    recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, image_size=clips.size, channels=1))
    seed_everything(recipe.train.seed)
    model = create_model(recipe.video.model, **to_dict(recipe.model))

    # 3. checks before anything is written
    if saved is not None:
        if saved.model != recipe.model or saved.video.model != recipe.video.model:
            raise ConfigError("the model differs from the run being resumed; only train settings may change")
        if rundir.read_card(out_dir).get("data", {}).get("sha256") != clips.sha256:
            raise InputError(f"{data} is not the data the run being resumed was trained on")
    run = rundir.prepare_new_run(out_dir, resume)

    # 4. record the run, then train
    if place.is_main:
        atomic_write_text(run / rundir.CONFIG, dump_yaml(recipe))
        if not resume:
            rundir.write_card(run, {
                "family": "video", "model": recipe.video.model, "task": "video-generation",
                "params": sum(p.numel() for p in model.parameters()),
                "image_size": clips.size, "channels": 1, "frames": recipe.video.frames,
                "clip_frames": clips.frames, "content_dim": recipe.model.content_dim,
                "motion_dim": recipe.model.motion_dim, "label_names": clips.class_names,
                "likelihood": "bernoulli cross-entropy of [0, 1] intensities, nats per clip",
                "data": {"source": str(Path(data).resolve()) if Path(data).exists() else str(data),
                         "origin": clips.origin, "sha256": clips.sha256,
                         "train_clips": len(clips.train), "test_clips": len(clips.test)},
                "environment": environment(),
            })
    distributed.barrier()
    return fit(model, lambda device: VideoTask(clips, recipe, device, run), recipe.train, run, resume=resume)
