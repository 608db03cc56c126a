"""Training VAEs on image datasets: the recipe (config), its batches and evaluation, ``train_vae``, and the
image-generator view of a finished run (``load_generator``).

The whole dataset is decoded once into a uint8 tensor (:mod:`genchain.train.image_data`); batches walk a
shuffled permutation epoch by epoch, and the sampler's state (generator, permutation, position) is checkpointed
so ``--resume`` draws exactly the batches an uninterrupted run would. Under torchrun every rank holds the same
permutation and takes its slice of each global batch (``batch_size`` x world size), as a DistributedSampler
would: no image is seen twice in an epoch. Evaluation scores the test split (or a
validation split, or, when the dataset has neither, a held-out slice of train that is then left out of
training) with fixed noise, so successive figures differ only by the model; it reports the true negative ELBO
first (nats per image, what "best" is judged by), then its reconstruction and KL parts, and writes sample and
reconstruction grids to ``RUN_DIR/samples/``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from PIL import Image

from genchain import rundir
from genchain.config import dump_yaml, load_recipe, load_variant_recipe, to_dict
from genchain.data.manifest import manifest_hash
from genchain.errors import ConfigError, InputError
from genchain.fileio import atomic_path, atomic_write_text
from genchain.models.registry import create_model, get_family_entry
from genchain.models.vae import VAE, VAEConfig, importance_weighted_nll, variant_defaults
from genchain.runtime import environment, seed_everything
from genchain.train import distributed
from genchain.train.checkpoint import load_weights
from genchain.train.engine import FitResult, TrainConfig, fit
from genchain.train.image_data import ImageTensors, load_images, open_image_dataset, to_uint8, to_unit_range
from genchain.train.sampling import EpochSampler

__all__ = ["VAERecipe", "VAESettings", "VAEGenerator", "importance_weighted_nll", "load_generator", "load_vae",
           "make_grid", "train_vae"]

SAMPLES_DIR = "samples"


@dataclass(frozen=True)
class VAESettings:
    """What is specific to training a VAE, beside the model's shape and the optimiser."""

    model: str = "vae"  # registry name: vae, vae-tiny, vae-mlp-examples
    kl_warmup_iters: int = 0  # KL weight rises linearly 0 -> 1 over these iterations (Bowman et al. 2016)
    eval_images: int = 10000  # evaluate on at most this many held-out images
    eval_batch_size: int = 500
    holdout: float = 0.1  # fraction of train held out for evaluation when the dataset has no test split
    grid_images: int = 64  # images per sample / reconstruction grid written at each evaluation; 0: none

    def __post_init__(self) -> None:
        if self.kl_warmup_iters < 0 or self.eval_images <= 0 or self.eval_batch_size <= 0 or self.grid_images < 0:
            raise ValueError("kl_warmup_iters and grid_images must be >= 0, eval_images and eval_batch_size > 0")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")


@dataclass(frozen=True)
class VAERecipe:
    """``genchain train vae``'s config: ``model``, ``train`` and ``vae`` sections (flat keys work too)."""

    model: VAEConfig = field(default_factory=VAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    vae: VAESettings = field(default_factory=VAESettings)


# ------------------------------------------------------------------------------------------------- data


@dataclass
class VAEData:
    """Training images and the held-out images evaluation scores, with where the latter came from."""

    train: ImageTensors
    eval: ImageTensors
    eval_split: str


def _subset(data: ImageTensors, index: torch.Tensor) -> ImageTensors:
    return ImageTensors(data.images[index], None if data.labels is None else data.labels[index],
                        data.label_names, [data.ids[i] for i in index.tolist()])


def load_vae_data(data_dir: str | Path, size: int | None, settings: VAESettings) -> VAEData:
    """Decode the train split and the evaluation split (test, else validation, else a held-out train slice)."""
    dataset = open_image_dataset(data_dir)
    if "train" not in dataset.splits:
        raise InputError(f"{data_dir} has no train split (it has {', '.join(dataset.splits)}); "
                         "ingest it again so the images land in a train split")
    train = load_images(data_dir, "train", size=size)
    size = size or train.size
    for split in ("test", "validation", "val"):
        if split in dataset.splits and dataset.num_rows(split) > 0:
            held = load_images(data_dir, split, size=size, max_rows=settings.eval_images)
            return VAEData(train, held, split)
    if len(train) < 2:
        raise InputError(f"{data_dir} has {len(train)} training image(s) and no test split; a VAE needs more")
    n_held = min(settings.eval_images, max(1, round(len(train) * settings.holdout)))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))  # fixed: same on resume
    warnings.warn(f"{data_dir} has no test or validation split; evaluating on {n_held} held-out training images "
                  "(left out of training)", stacklevel=2)
    return VAEData(_subset(train, order[n_held:]), _subset(train, order[:n_held]), f"train (held-out {n_held})")


# ------------------------------------------------------------------------------------------------- grids


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> Image.Image:
    """Images in [-1, 1] (N, C, H, W) -> one PIL image, ``nrow`` per row, with a black border (torchvision-like)."""
    pixels = to_uint8(images.cpu())  # (N, C, H, W)
    n, c, h, w = pixels.shape
    rows = math.ceil(n / nrow)
    cols = min(n, nrow)
    grid = torch.zeros(c, rows * (h + padding) + padding, cols * (w + padding) + padding, dtype=torch.uint8)
    for i in range(n):
        top, left = padding + (i // nrow) * (h + padding), padding + (i % nrow) * (w + padding)
        grid[:, top : top + h, left : left + w] = pixels[i]
    array = grid.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if c == 1 else array)


def _save_png(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


# ------------------------------------------------------------------------------------------------- task


class VAETask:
    """Shuffled epochs of training images; evaluation on the held-out images with fixed noise."""

    def __init__(self, data: VAEData, recipe: VAERecipe, device: torch.device, run_dir: Path):
        self.train = data.train
        self.eval_data = data.eval
        self.conditional = recipe.model.conditional
        self.batch_size = recipe.train.batch_size
        self.accumulation = recipe.train.gradient_accumulation_steps
        self.settings = recipe.vae
        self.device = device
        self.run_dir = run_dir
        self.seed = recipe.train.seed
        self.sampler = EpochSampler(len(self.train), self.batch_size, self.seed, "images")
        self.batches = 0  # micro-batches drawn: iteration = batches // accumulation (KL warm-up, file names)

    def _labels(self, data: ImageTensors, index: torch.Tensor | slice) -> torch.Tensor | None:
        if not self.conditional:
            return None
        assert data.labels is not None
        return data.labels[index].to(self.device, non_blocking=True)

    def kl_weight(self) -> float:
        warmup = self.settings.kl_warmup_iters
        return min(1.0, (self.batches // self.accumulation + 1) / warmup) if warmup else 1.0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        index = self.sampler.next_indices()
        weight = self.kl_weight()
        self.batches += 1
        images = to_unit_range(self.train.images[index].to(self.device, non_blocking=True))  # (B, C, H, W)
        return images, self._labels(self.train, index), weight

    def items_per_batch(self) -> int:
        return self.batch_size

    def flops_per_item(self, model: nn.Module) -> float:
        return model.flops_per_image() if isinstance(model, VAE) else 0.0

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        n = len(self.eval_data)
        step = self.settings.eval_batch_size
        recon_sum = kl_sum = 0.0
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed + 1)  # the same noise at every evaluation; training's RNG is untouched
            for start in range(0, n, step):
                images = to_unit_range(self.eval_data.images[start : start + step].to(self.device))
                out = model(images, self._labels(self.eval_data, slice(start, start + step)))
                recon_sum += float(out.recon) * images.shape[0]
                kl_sum += float(out.kl) * images.shape[0]
            self._write_grids(model)
        recon, kl = recon_sum / n, kl_sum / n
        dims = self.eval_data.images[0].numel()
        return {"loss": recon + kl, "recon": recon, "kl": kl, "bits_per_dim": (recon + kl) / (dims * math.log(2))}

    def _write_grids(self, model: nn.Module) -> None:
        count = min(self.settings.grid_images, len(self.eval_data))
        if count == 0 or not distributed.is_main():  # rank 0 draws the grids
            return
        assert isinstance(model, VAE)
        it = self.batches // self.accumulation
        labels = None
        if self.conditional:  # one class per row of the sample grid
            labels = torch.arange(count, device=self.device) // 8 % model.config.num_classes
        z = torch.randn(count, model.config.latent_dim, generator=torch.Generator().manual_seed(self.seed + 2))
        samples = model.decode(z.to(self.device), labels)
        _save_png(make_grid(samples), self.run_dir / SAMPLES_DIR / f"samples_{it:06d}.png")
        # reconstructions: each row of 8 originals followed by the row of their posterior-mean reconstructions
        half = max(1, count // 2 // 8 * 8) if count >= 16 else max(1, count // 2)
        images = to_unit_range(self.eval_data.images[:half].to(self.device))
        labels = self._labels(self.eval_data, slice(0, half))
        recon = model.decode(model.encode(images, labels)[0], labels)
        rows = [t for pair in zip(images.split(8), recon.split(8), strict=True) for t in pair]
        _save_png(make_grid(torch.cat(rows)), self.run_dir / SAMPLES_DIR / f"recon_{it:06d}.png")

    def state_dict(self) -> dict[str, Any]:
        return {**self.sampler.state_dict(), "batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
        self.batches = int(state["batches"])


# ----------------------------------------------------------------------------------------------- recipes


def resolve_recipe(config_file: str | Path | None, overrides: list[str] | None,
                   base: dict[str, Any] | None = None) -> VAERecipe:
    """The recipe with the chosen variant's defaults (``model=vae-tiny``) under the file and the overrides."""
    return load_variant_recipe(VAERecipe, config_file, overrides, base, variant_defaults=variant_defaults,
                               model_name=lambda r: get_family_entry(r.vae.model, "vae", "train vae").name)


def load_vae(run_dir: str | Path, weights: str = rundir.BEST_WEIGHTS) -> tuple[VAE, dict[str, Any]]:
    """The VAE of a run dir in fp32 on the CPU, in eval mode, and its card."""
    card = rundir.require_family(run_dir, "vae")
    recipe = load_recipe(VAERecipe, Path(run_dir) / rundir.CONFIG)
    model = create_model(card.get("model", recipe.vae.model), **to_dict(recipe.model))
    assert isinstance(model, VAE)
    load_weights(model, Path(run_dir) / weights)
    return model.eval(), card


def train_vae(
    data_dir: str | Path,
    out_dir: str | Path,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
    resume: bool = False,
) -> FitResult:
    """Train (or resume) a VAE on an image dataset; checkpoints, metrics, samples and card land in ``out_dir``."""
    out_dir = Path(out_dir)
    place = distributed.init()  # under torchrun: join the group first, as only rank 0 writes the run dir
    resume = distributed.should_resume(resume, (out_dir / rundir.STATE).is_file())
    # 1. resolve the config: the resumed run's, then the file, then the overrides
    saved: VAERecipe | None = None
    base: dict[str, Any] = {}
    if resume:
        saved = rundir.saved_recipe(out_dir, "vae", VAERecipe)
        base = to_dict(saved)
    recipe = resolve_recipe(config_file, overrides, base)

    # 2. read the data and complete the model's shape from it
    data = load_vae_data(data_dir, recipe.model.image_size or None, recipe.vae)
    if recipe.model.conditional and data.train.labels is None:
        raise InputError(f"conditional=true needs labels, and {data_dir} has none; ingest with --label-from "
                         "dirname (or csv:FILE), or set conditional=false")
    num_classes = len(data.train.label_names or []) if recipe.model.conditional else 0
    model_cfg = dataclasses.replace(recipe.model, image_size=data.train.size, channels=data.train.channels,
                                    num_classes=num_classes)
    try:
        recipe = dataclasses.replace(recipe, model=model_cfg)
        seed_everything(recipe.train.seed)  # the weight init draws from the global generator
        model = create_model(recipe.vae.model, **to_dict(recipe.model))
    except ValueError as err:
        raise ConfigError(f"invalid model config for this dataset: {err}") from err

    # 3. check everything that can be checked before anything is written
    if saved is not None:
        rundir.check_resume(out_dir, data_dir, saved.model == recipe.model and saved.vae.model == recipe.vae.model)
    run = rundir.prepare_new_run(out_dir, resume)

    # 4. record the run (rank 0), then train
    if place.is_main:
        atomic_write_text(run / rundir.CONFIG, dump_yaml(recipe))
        if not resume:
            manifest = open_image_dataset(data_dir).manifest
            rundir.write_card(run, {
                "family": "vae", "model": recipe.vae.model, "task": "image-generation",
                "params": sum(p.numel() for p in model.parameters()),
                "image_size": recipe.model.image_size, "channels": recipe.model.channels,
                "latent_dim": recipe.model.latent_dim, "num_classes": num_classes or None,
                "label_names": data.train.label_names, "decoder": recipe.model.decoder,
                "likelihood": _likelihood_note(recipe.model),
                "data": {"dir": str(Path(data_dir).resolve()), "manifest_sha256": manifest_hash(data_dir),
                         "eval_split": data.eval_split, "train_images": len(data.train),
                         "eval_images": len(data.eval),
                         **rundir.data_provenance(manifest)},
                "environment": environment(),
            })
    distributed.barrier()

    def task_factory(device: torch.device) -> VAETask:
        return VAETask(data, recipe, device, run)

    return fit(model, task_factory, recipe.train, run, resume=resume)


def _likelihood_note(cfg: VAEConfig) -> str:
    if cfg.decoder == "bernoulli":
        return ("bernoulli: binary cross-entropy of the decoder's logits against pixel intensities in [0, 1], "
                "nats per image; not a normalised likelihood of 8-bit images")
    return "discretised gaussian over the 256 grey levels: a true probability of the 8-bit image, nats per image"


# --------------------------------------------------------------------------------------- image generator


class VAEGenerator:
    """The image-generator protocol (see :mod:`genchain.generate.image`) over a trained VAE, fp32 on the CPU."""

    def __init__(self, model: VAE, card: dict[str, Any]):
        self.model = model
        cfg = model.config
        self.latent_dim = cfg.latent_dim
        self.num_classes = cfg.num_classes if cfg.conditional else None
        self.label_names = card.get("label_names")
        self.image_size = cfg.image_size
        self.channels = cfg.channels
        self.family = "vae"

    def sample_latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draws from the prior N(0, I): (n, latent_dim)."""
        return torch.randn(n, self.latent_dim, generator=generator)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (N, latent_dim) -> the decoder's mean images in [-1, 1] (N, C, H, W)."""
        return self.model.decode(z.float(), self._labels(labels, z.shape[0]))

    @torch.no_grad()
    def encode(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [-1, 1] (N, C, H, W) -> posterior means (N, latent_dim)."""
        if images.dim() != 4 or tuple(images.shape[1:]) != (self.channels, self.image_size, self.image_size):
            raise InputError(f"expected images of shape (N, {self.channels}, {self.image_size}, {self.image_size}), "
                             f"got {tuple(images.shape)}")
        return self.model.encode(images.float(), self._labels(labels, images.shape[0]))[0]

    def _labels(self, labels: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if self.num_classes is None:
            return None
        if labels is None:
            raise InputError("this VAE is conditional: pass --label with one of "
                             + ", ".join(map(str, self.label_names or range(self.num_classes))))
        labels = torch.as_tensor(labels, dtype=torch.long)
        return labels.reshape(1).expand(n) if labels.numel() == 1 else labels


def load_generator(run_dir: str | Path) -> VAEGenerator:
    """A VAE run as an image generator (best weights, fp32, CPU); raises RunDirError for another family."""
    model, card = load_vae(run_dir)
    return VAEGenerator(model, card)
