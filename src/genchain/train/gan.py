"""GAN training: the recipe (model, train and gan sections), the two-player step, EMA, DiffAugment, ``train_gan``.

The GAN is the one family whose step owns two optimizers, so its task implements the engine's
:class:`~genchain.train.engine.StepTask`: each iteration updates D (``n_critic`` times) and then G, each with its own
Adam, and then the EMA of G. The engine still owns evaluation, checkpoints (this task's state carries both
optimizers; the EMA weights are part of the model's tensors), resume, metrics, Ctrl-C and the time budget.

Precision: with ``dtype=auto`` on a CPU with native bf16 (or a bf16 GPU), both networks run under bf16 autocast
(convolutions in bf16, weights and optimizer in fp32) and the losses and penalties are computed in fp32 from the
logits. Every random draw (batches, latents, augmentations) comes from the task's own generator, whose state is
checkpointed, so a resumed run repeats an uninterrupted one exactly.

Under torchrun the two networks are not wrapped in DDP: D runs twice per backward (real and fake passes) and the
R1 penalty differentiates twice, neither of which DDP's reducer allows. Each update instead averages its
network's gradients over the ranks by hand (one flat all-reduce) before its optimizer steps, and rank 0's
batch-norm statistics are broadcast after every iteration, so all ranks hold the same weights throughout. The
real images are sharded like a DistributedSampler (one shuffle, the same on all ranks, each rank taking its
slice of the global batch); latents and augmentations come from a generator seeded per rank.

"Best" is judged by a cheap distribution distance computed at every evaluation: the sliced Wasserstein distance
(Rabin et al. 2011; Karras et al. 2018 use it on image patches) between EMA samples and held-out images in pixel
space, over fixed random directions. D and G losses say nothing about sample quality, and FID (``genchain eval
image``) costs too much to run every few hundred steps on a CPU.
"""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn

from genchain import rundir
from genchain.config import dump_yaml, load_recipe, merge, to_dict
from genchain.data.manifest import manifest_hash
from genchain.errors import ConfigError, InputError
from genchain.fileio import atomic_write_text
from genchain.models.gan import GAN, GANConfig, discriminator_loss, generator_loss, gradient_penalty, r1_penalty
from genchain.models.registry import create_model, get_entry
from genchain.runtime import environment, seed_everything, select_device, select_precision
from genchain.train import distributed
from genchain.train.checkpoint import load_weights
from genchain.train.engine import FitResult, TrainConfig, fit
from genchain.train.image_data import ImageTensors, load_images, open_image_dataset, to_uint8, to_unit_range

AUGMENTATIONS = ("color", "translation", "cutout")
EVAL_SPLITS = ("test", "val", "validation")
SWD_DIRECTIONS = 128
# TrainConfig fields the GAN step does not use: its optimizers are set in the gan section.
UNUSED_TRAIN_FIELDS = ("learning_rate", "min_lr", "warmup_iters", "lr_decay_iters", "weight_decay", "beta1", "beta2",
                       "grad_clip", "gradient_accumulation_steps")


@dataclass(frozen=True)
class GANSettings:
    """The ``gan`` section: the objective and the two optimizers (DCGAN's Adam(2e-4, 0.5, 0.999) by default)."""

    model: str = "gan"  # a registered gan model: gan, gan-tiny, gan-dcgan-examples
    loss: Literal["nonsaturating", "hinge", "wgan-gp"] = "nonsaturating"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    adam_beta1: float = 0.5
    adam_beta2: float = 0.999
    n_critic: int = 1  # D updates per G update (5 is usual for wgan-gp)
    r1_gamma: float = 0.0  # weight of the R1 penalty on real images (0: off)
    gp_weight: float = 10.0  # WGAN-GP's lambda
    ema: float = 0.999  # decay of the generator EMA used for sampling (0: the EMA is the live generator)
    diffaugment: str = ""  # comma-separated subset of color,translation,cutout (for small datasets)
    conditional: bool = False  # class-conditional G and projection D, from the dataset's labels
    channels_last: bool = False  # NHWC activations (measure: on CPU it did not pay at these sizes)
    grid_samples: int = 64  # fixed-noise samples in each RUN_DIR/samples/iter_XXXXXX.png

    def __post_init__(self) -> None:
        for name in ("lr_g", "lr_d"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):
            raise ValueError("adam_beta1 and adam_beta2 must be in [0, 1)")
        if self.n_critic < 1 or self.grid_samples < 1:
            raise ValueError("n_critic and grid_samples must be at least 1")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if self.r1_gamma < 0 or self.gp_weight < 0:
            raise ValueError("r1_gamma and gp_weight must be >= 0")
        unknown = set(self.augmentations) - set(AUGMENTATIONS)
        if unknown:
            raise ValueError(f"unknown diffaugment {sorted(unknown)[0]!r}; use a comma list of "
                             + ",".join(AUGMENTATIONS))

    @property
    def augmentations(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.diffaugment.split(",") if part.strip())


@dataclass(frozen=True)
class GANRecipe:
    """``genchain train gan``'s config. Of the train section, the loop settings apply (batch_size, max_iters,
    eval_interval, eval_iters, seed, dtype, max_seconds ...); learning rates and betas live in ``gan``."""

    model: GANConfig = field(default_factory=GANConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    gan: GANSettings = field(default_factory=GANSettings)


# ------------------------------------------------------------------------------------------------ DiffAugment
def diff_augment(x: torch.Tensor, policy: tuple[str, ...], generator: torch.Generator) -> torch.Tensor:
    """Differentiable augmentation (Zhao et al. 2020), applied to everything D sees, real and generated alike.

    Args:
        x: images (B, C, H, W) in [-1, 1].
        policy: a subset of ``color``, ``translation``, ``cutout``, applied in that order.
        generator: the source of every random draw (CPU), so a seed reproduces the result.
    """
    for name in AUGMENTATIONS:
        if name in policy:
            x = _AUGMENT[name](x, generator)
    return x


def _uniform(generator: torch.Generator, x: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator).to(x.device, x.dtype)


def _color(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5), one draw of each per image."""
    b = x.shape[0]
    x = x + (_uniform(g, x, b, 1, 1, 1) - 0.5)
    mean = x.mean(dim=1, keepdim=True)  # per-pixel grey level: saturation is a no-op on grey images
    x = (x - mean) * (_uniform(g, x, b, 1, 1, 1) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(g, x, b, 1, 1, 1) + 0.5) + mean


def _translation(x: torch.Tensor, g: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in x and y; uncovered pixels become 0."""
    b, c, h, w = x.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (b, 1), generator=g).to(x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (b, 1), generator=g).to(x.device)
    rows = torch.arange(h, device=x.device)[None] - dy  # (B, H): the source row of each output row
    cols = torch.arange(w, device=x.device)[None] - dx  # (B, W)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (B, H, W)
    x = x.gather(2, rows.clamp(0, h - 1)[:, None, :, None].expand(b, c, h, w))
    x = x.gather(3, cols.clamp(0, w - 1)[:, None, None, :].expand(b, c, h, w))
    return x * inside[:, None].to(x.dtype)


def _cutout(x: torch.Tensor, g: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` times the image size per image, centred anywhere (it may leave the image)."""
    b, _, h, w = x.shape
    size_h, size_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + 1 - size_h % 2, (b, 1), generator=g).to(x.device) - size_h // 2
    left = torch.randint(0, w + 1 - size_w % 2, (b, 1), generator=g).to(x.device) - size_w // 2
    rows = torch.arange(h, device=x.device)[None] - top  # (B, H): position inside the square
    cols = torch.arange(w, device=x.device)[None] - left
    hole = ((rows >= 0) & (rows < size_h))[:, :, None] & ((cols >= 0) & (cols < size_w))[:, None, :]
    return x * (~hole)[:, None].to(x.dtype)


_AUGMENT = {"color": _color, "translation": _translation, "cutout": _cutout}


# ------------------------------------------------------------------------------------------------ evaluation
def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, directions: torch.Tensor) -> float:
    """Mean over unit ``directions`` (D, P) of the 1-D Wasserstein-1 distance between the projections of the
    equally many rows of ``a`` and ``b`` (N, D): sort both and average the gaps."""
    pa = torch.sort(a.float() @ directions, dim=0).values
    pb = torch.sort(b.float() @ directions, dim=0).values
    return float((pa - pb).abs().mean())


def _precision_context(device: torch.device, dtype: str) -> tuple[str, AbstractContextManager]:
    """bf16 autocast where the engine would train in bf16, else fp32 (the GAN step keeps no bf16 master copies)."""
    if dtype == "fp16-mixed":
        raise ConfigError("GAN training runs in bf16 or fp32; set dtype=auto, bf16 or fp32")
    name = select_precision(device, dtype) if dtype != "bf16-mixed" else "bf16-mixed"
    if name == "fp16-mixed":  # auto on a GPU without bf16: fp32 rather than two loss scalers
        name = "fp32"
    if name in ("bf16", "bf16-mixed"):
        return name, torch.autocast(device.type, dtype=torch.bfloat16)
    return name, nullcontext()


class GANTask:
    """Batches of real images, the two-player update, EMA, evaluation and sample grids."""

    def __init__(self, model: GAN, recipe: GANRecipe, train: ImageTensors, held_out: ImageTensors,
                 device: torch.device, run_dir: Path):
        self.model, self.recipe, self.settings, self.device = model, recipe, recipe.gan, device
        self.batch_size = recipe.train.batch_size
        place = distributed.world()
        self.global_batch = self.batch_size * place.world_size
        self.rank_part = distributed.local_slice(self.batch_size)
        if len(train) < self.global_batch:
            raise InputError(f"the train split has {len(train)} images, fewer than batch_size x processes "
                             f"{self.global_batch}; lower batch_size")
        self.precision, self._autocast = _precision_context(device, recipe.train.dtype)
        self.memory_format = torch.channels_last if self.settings.channels_last else torch.contiguous_format
        model.to(device, memory_format=self.memory_format)
        self.images = train.images.to(device)  # uint8 (N, C, H, W); batches are converted on the device
        self.labels = train.labels.to(device) if model.config.num_classes else None
        betas = (self.settings.adam_beta1, self.settings.adam_beta2)
        fused = device.type in ("cpu", "cuda")
        self.opt_g = torch.optim.Adam(model.generator.parameters(), lr=self.settings.lr_g, betas=betas, fused=fused)
        self.opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=self.settings.lr_d, betas=betas,
                                      fused=fused)
        seed = recipe.train.seed
        self.generator = torch.Generator().manual_seed(seed)  # batches, latents, augmentations
        if place.enabled:  # the shuffle is shared by all ranks, the noise is each rank's own
            self.shuffler, self.generator = self.generator, torch.Generator().manual_seed(seed + 10007 * place.rank)
        else:
            self.shuffler = self.generator
        self.order = torch.randperm(len(train), generator=self.shuffler)
        self.position = 0
        self.iters_done = 0
        self.run_dir = run_dir
        self._prepare_eval(held_out, recipe.train.seed + 1)

    # -------------------------------------------------------------------------------- the engine's protocol
    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Real images (B, C, H, W) in [-1, 1] and their labels (None when unconditional): epochs of a shuffle."""
        if self.position + self.global_batch > len(self.order):  # drop the epoch's tail, reshuffle
            self.order = torch.randperm(len(self.order), generator=self.shuffler)
            self.position = 0
        index = self.order[self.position : self.position + self.global_batch][self.rank_part].to(self.device)
        self.position += self.global_batch
        images = to_unit_range(self.images[index]).contiguous(memory_format=self.memory_format)
        return images, None if self.labels is None else self.labels[index]

    def items_per_batch(self) -> int:
        return self.batch_size * self.settings.n_critic  # real images read per iteration

    def flops_per_item(self, model: nn.Module) -> float:
        return 0.0

    def train_step(self, it: int) -> dict[str, float]:
        """D ``n_critic`` times, then G (on the last D step's fakes, as DCGAN does), then the EMA."""
        g, d, s = self.model.generator, self.model.discriminator, self.settings
        d.requires_grad_(True)
        for k in range(s.n_critic):
            real, labels = self.next_batch()
            last = k == s.n_critic - 1
            with self._autocast, torch.set_grad_enabled(last):  # only the last fakes are reused for G's update
                fake = g(self._latents(len(real)), labels)
            loss_d, penalty, real_logits, fake_logits = self._discriminator_losses(real, fake.detach(), labels)
            self.opt_d.zero_grad(set_to_none=True)
            (loss_d + penalty).backward()
            distributed.average_gradients(d.parameters())
            self.opt_d.step()
        d.requires_grad_(False)  # G's update needs gradients through D, not for D's weights
        with self._autocast:
            logits = d(self._augment(fake), labels)
        loss_g = generator_loss(s.loss, logits)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        distributed.average_gradients(g.parameters())
        self.opt_g.step()
        d.requires_grad_(True)
        self.model.update_ema(self.ema_decay(it))
        distributed.broadcast_buffers(self.model)
        self.iters_done = it + 1
        point = {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "d_real": real_logits.float().mean().item(),
                 "d_fake": fake_logits.float().mean().item()}
        if s.r1_gamma > 0 or s.loss == "wgan-gp":
            point["penalty"] = penalty.item()
        return point

    def ema_decay(self, it: int) -> float:
        """The configured decay, ramped up from 0 over the first steps so the EMA does not average in the
        random initialisation ((1 + t) / (10 + t), TensorFlow's ExponentialMovingAverage with num_updates)."""
        return min(self.settings.ema, (1 + it) / (10 + it))

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Sliced Wasserstein distance of EMA samples to held-out images (lower is better); writes a sample grid."""
        assert isinstance(model, GAN)
        fake = torch.cat([self._generate(z, y) for z, y in self._eval_batches])
        swd = sliced_wasserstein(fake.flatten(1), self._eval_real, self._directions)
        self._write_grid()
        return {"swd": swd}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "shuffler": self.shuffler.get_state(), "order": self.order,
                "position": self.position, "iters_done": self.iters_done, "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        if self.shuffler is not self.generator:
            self.shuffler.set_state(state.get("shuffler", state["generator"]))
        self.order, self.position, self.iters_done = state["order"], state["position"], state["iters_done"]
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])

    # -------------------------------------------------------------------------------- the step's pieces
    def _latents(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.model.config.latent_dim, generator=self.generator).to(self.device)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.settings.augmentations, self.generator) if self.settings.augmentations else x

    def _discriminator_losses(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """D's loss, its penalty (R1 and/or GP; 0 when off) and the logits, from separate real and fake passes
        (a batch-norm D must not mix their statistics, as in DCGAN)."""
        d, s = self.model.discriminator, self.settings
        real_in = self._augment(real)
        if s.r1_gamma > 0:
            real_in = real_in.detach().requires_grad_(True)
        fake_in = self._augment(fake)
        with self._autocast:
            real_logits = d(real_in, labels)
            fake_logits = d(fake_in, labels)
        loss = discriminator_loss(s.loss, real_logits, fake_logits)
        penalty = torch.zeros((), device=real.device)
        if s.r1_gamma > 0:
            penalty = penalty + 0.5 * s.r1_gamma * r1_penalty(real_logits, real_in)
        if s.loss == "wgan-gp":
            eps = torch.rand(len(real), generator=self.generator).to(real.device)
            with self._autocast:
                penalty = penalty + s.gp_weight * gradient_penalty(d, real_in.detach(), fake_in.detach(), labels, eps)
        return loss, penalty, real_logits.detach(), fake_logits.detach()

    # -------------------------------------------------------------------------------- evaluation pieces
    def _prepare_eval(self, held_out: ImageTensors, seed: int) -> None:
        """Fixed real images, latents and projection directions, so successive figures differ only by the model."""
        gen = torch.Generator().manual_seed(seed)
        n = min(len(held_out), self.recipe.train.eval_iters * self.batch_size)
        pick = torch.randperm(len(held_out), generator=gen)[:n]
        real = to_unit_range(held_out.images[pick]).flatten(1)  # (n, C*H*W)
        directions = torch.randn(real.shape[1], SWD_DIRECTIONS, generator=gen)
        self._directions = (directions / directions.norm(dim=0, keepdim=True)).to(self.device)
        self._eval_real = real.to(self.device)
        conditional = self.model.config.num_classes > 0
        labels = held_out.labels[pick] if conditional and held_out.labels is not None else None
        z = torch.randn(n, self.model.config.latent_dim, generator=gen)
        self._eval_batches = [(z[i : i + self.batch_size], None if labels is None else labels[i : i + self.batch_size])
                              for i in range(0, n, self.batch_size)]
        grid = self.settings.grid_samples
        self._grid_z = torch.randn(grid, self.model.config.latent_dim, generator=gen)
        self._grid_labels = torch.arange(grid) % self.model.config.num_classes if conditional else None

    def _generate(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        with self._autocast:
            out = self.model.generator_ema(z.to(self.device), None if labels is None else labels.to(self.device))
        return out.float()

    def _write_grid(self) -> None:
        from genchain.generate.image import make_grid, save_png

        if not distributed.is_main():  # rank 0 draws the grid
            return
        images = to_uint8(self._generate(self._grid_z, self._grid_labels)).cpu()
        nrow = self.model.config.num_classes or None
        save_png(self.run_dir / "samples" / f"iter_{self.iters_done:06d}.png", make_grid(images, nrow=nrow))


# ------------------------------------------------------------------------------------------------ loading
class GANImageGenerator:
    """A trained GAN's EMA generator behind the image-generator protocol of :mod:`genchain.generate.image`."""

    def __init__(self, model: GAN, label_names: list[str] | None):
        config = model.config
        self.model = model.eval()
        self.latent_dim, self.image_size, self.channels = config.latent_dim, config.image_size, config.channels
        self.num_classes = config.num_classes or None
        self.label_names = label_names if self.num_classes else None

    def sample_latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator)  # (n, latent_dim), N(0, I)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes and labels is None:
            raise ConfigError("this GAN is class-conditional: give a label for each latent")
        return self.model.generator_ema(z, labels if self.num_classes else None).float()  # (N, C, H, W)


def load_gan(run_dir: str | Path, weights: str = rundir.BEST_WEIGHTS) -> tuple[GAN, dict[str, Any]]:
    """The GAN of a run dir (fp32, CPU, eval mode) and its card."""
    card = rundir.require_family(run_dir, "gan")
    recipe = load_recipe(GANRecipe, Path(run_dir) / rundir.CONFIG)
    model = create_model(card.get("model", recipe.gan.model), **to_dict(recipe.model))
    assert isinstance(model, GAN)
    load_weights(model, Path(run_dir) / weights)
    return model.eval(), card


def load_generator(run_dir: str | Path) -> GANImageGenerator:
    """The run's EMA generator, for :mod:`genchain.generate.image` and :mod:`genchain.eval.image`."""
    model, card = load_gan(run_dir)
    return GANImageGenerator(model, card.get("label_names"))


# ------------------------------------------------------------------------------------------------ train_gan
def resolve_recipe(config_file: str | Path | None, overrides: list[str] | None,
                   base: dict[str, Any] | None = None) -> GANRecipe:
    """The recipe, with the model section starting from the chosen variant's shape (``model=gan-tiny``), then
    ``base`` (a resumed run's config), the file and the overrides."""
    first = load_recipe(GANRecipe, config_file, overrides, base=base)
    entry = get_entry(first.gan.model)
    if entry.family != "gan":
        raise ConfigError(f"model {entry.name!r} is a {entry.family} model; use gan, gan-tiny or gan-dcgan-examples")
    variant = {"model": to_dict(create_model(entry.name).config)}
    recipe = load_recipe(GANRecipe, config_file, overrides, base=merge(variant, base or {}))
    defaults = TrainConfig()
    changed = [name for name in UNUSED_TRAIN_FIELDS if getattr(recipe.train, name) != getattr(defaults, name)]
    if changed:
        raise ConfigError(f"train.{changed[0]} does not apply to a GAN; set gan.lr_g, gan.lr_d, gan.adam_beta1 "
                          "and gan.adam_beta2 instead")
    if recipe.gan.loss == "wgan-gp" and recipe.model.d_norm == "batch":
        raise ConfigError("wgan-gp penalises per-image gradients, which batch norm in D mixes across the batch; "
                          "set d_norm=none")
    return recipe


def train_gan(data: str | Path, out: str | Path, config_path: str | Path | None = None,
              overrides: list[str] | None = None, resume: bool = False) -> FitResult:
    """Train (or resume) a GAN on an image dataset; everything lands in ``out``."""
    out = Path(out)
    place = distributed.init()  # under torchrun: join the group first, as only rank 0 writes the run dir
    resume = distributed.should_resume(resume, (out / rundir.STATE).is_file())
    dataset = open_image_dataset(data)
    # 1. resolve the config: the resumed run's, then the file, then the overrides; shape fields from the data
    saved: GANRecipe | None = None
    base: dict[str, Any] = {}
    if resume:
        saved = rundir.saved_recipe(out, "gan", GANRecipe)
        base = to_dict(saved)
    recipe = resolve_recipe(config_path, overrides, base)
    if recipe.gan.conditional and not dataset.label_names:
        raise ConfigError(f"conditional=true needs a labelled dataset and {data} has no labels; "
                          "ingest it with --label-from dirname (or csv:FILE), or set conditional=false")
    # 2. read the data before anything is written: channels and classes come from it
    size = recipe.model.image_size
    train = load_images(data, "train", size=size)
    split = next((s for s in EVAL_SPLITS if s in dataset.splits and dataset.num_rows(s) > 0), "train")
    held_out = load_images(data, split, size=size,
                           max_rows=None if split != "train" else recipe.train.eval_iters * recipe.train.batch_size)
    num_classes = len(dataset.label_names) if recipe.gan.conditional else 0
    recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, channels=train.channels,
                                                                   num_classes=num_classes))
    if saved is not None:
        rundir.check_resume(out, data, saved.model == recipe.model)
    run = rundir.prepare_new_run(out, resume)

    # 3. build the model (seeded: the weight init draws from the global generator), record the run, train
    seed_everything(recipe.train.seed)
    model = create_model(recipe.gan.model, **to_dict(recipe.model))
    assert isinstance(model, GAN)
    if place.is_main:  # rank 0 records the run
        atomic_write_text(run / rundir.CONFIG, dump_yaml(recipe))
        if not resume:
            device = select_device(recipe.train.device)
            rundir.write_card(run, {
                "family": "gan", "model": recipe.gan.model, "task": "image-generation",
                "params": model.num_params(), "loss": recipe.gan.loss,
                "precision_scheme": _precision_context(device, recipe.train.dtype)[0] + " autocast",
                "image_size": recipe.model.image_size, "channels": recipe.model.channels,
                "num_classes": num_classes, "label_names": dataset.label_names if num_classes else None,
                "data": {"dir": str(Path(data).resolve()), "manifest_sha256": manifest_hash(data),
                         "train_split": "train", "eval_split": split, "train_images": len(train),
                         "dataset_label_names": dataset.label_names,
                         **rundir.data_provenance(dataset.manifest)},
                "eval_metric": "swd: sliced Wasserstein distance of EMA samples to held-out images (pixels)",
                "environment": environment(),
            })
    distributed.barrier()

    def task_factory(device: torch.device) -> GANTask:
        return GANTask(model, recipe, train, held_out, device, run)

    return fit(model, task_factory, recipe.train, run, resume=resume)
