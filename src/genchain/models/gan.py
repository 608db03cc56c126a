"""DCGAN (Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional Generative
Adversarial Networks"), class-conditional with a projection discriminator (Miyato & Koyama 2018, "cGANs with
Projection Discriminator") and optionally spectrally normalised (Miyato et al. 2018, "Spectral Normalization for
Generative Adversarial Networks").

The generator maps a latent vector to an ``s x s`` map with one transposed convolution (``s`` = 4..7, so 28 px
starts at 7x7 and 32/64/128/256 px at 4x4), then doubles the resolution with stride-2 4x4 transposed convolutions,
halving the width each time, and ends in tanh: images in [-1, 1]. The discriminator mirrors it with stride-2 4x4
convolutions and LeakyReLU(0.2), and a final ``s x s`` convolution gives one logit per image. At 64 px with
``g_width = d_width = 64`` and batch norm this is exactly the DCGAN of pytorch/examples ``dcgan/main.py``
(registered as ``gan-dcgan-examples``) except that the discriminator returns the logit and the sigmoid lives in
the loss (``softplus`` = BCE of a sigmoid, computed stably).

A conditional generator concatenates a learned class embedding to ``z``; a conditional discriminator adds the
projection term ``<embed(y), phi(x)>`` to its logit, ``phi(x)`` being the flattened last feature map.
The module also holds ``generator_ema``, an exponential moving average of the generator's weights (Karras et al.
2018; Yazici et al. 2019), which sampling and evaluation use; the optimizer never touches it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from genchain.models.registry import register_model

Norm = Literal["batch", "none"]
Loss = Literal["nonsaturating", "hinge", "wgan-gp"]
MAX_IMAGE_SIZE = 256


def start_size(image_size: int) -> tuple[int, int]:
    """``(s, n)`` with ``image_size = s * 2**n``, ``4 <= s <= 7`` and ``n >= 1``: the first map and the up-steps."""
    s, n = image_size, 0
    while s % 2 == 0 and s // 2 >= 4:
        s, n = s // 2, n + 1
    if n == 0 or not 4 <= s <= 7 or image_size > MAX_IMAGE_SIZE:
        raise ValueError(f"image_size {image_size} is not 4..7 times a power of two up to {MAX_IMAGE_SIZE} "
                         "(use e.g. 16, 28, 32, 64, 128 or 256)")
    return s, n


@dataclass(frozen=True)
class GANConfig:
    """Shape of a GAN. ``channels`` and ``num_classes`` are set from the dataset by ``genchain train gan``."""

    image_size: int = 32
    channels: int = 1
    latent_dim: int = 128
    g_width: int = 64  # the generator's last hidden width (DCGAN's ngf); doubled per block towards the input
    d_width: int = 64  # the discriminator's first width (DCGAN's ndf); doubled per block
    max_width: int = 512  # cap on any block's width, so 128-256 px stay affordable
    num_classes: int = 0  # 0: unconditional
    class_dim: int = 32  # size of the class embedding the conditional generator concatenates to z
    g_norm: Norm = "batch"
    d_norm: Norm = "batch"
    spectral_norm: bool = False  # on every discriminator layer (SNGAN); usually with d_norm="none"
    bias: bool = False  # biases on layers not followed by batch norm (DCGAN has none)

    def __post_init__(self) -> None:
        start_size(self.image_size)
        for name in ("channels", "latent_dim", "g_width", "d_width", "max_width", "class_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")
        for name in ("g_norm", "d_norm"):
            if getattr(self, name) not in ("batch", "none"):
                raise ValueError(f"{name} must be batch or none, got {getattr(self, name)!r}")

    def widths(self, base: int) -> list[int]:
        """Widths of the ``n`` hidden maps from the smallest (s x s) to the largest, for a block base width."""
        _, n = start_size(self.image_size)
        return [min(base * 2 ** (n - 1 - i), self.max_width) for i in range(n)]


def _dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: convolutions N(0, 0.02), batch-norm gains N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """z (B, latent_dim) [+ class] -> images (B, C, H, W) in [-1, 1]."""

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        s, _ = start_size(config.image_size)
        widths = config.widths(config.g_width)  # e.g. 64 px: [512, 256, 128, 64]
        batch = config.g_norm == "batch"
        cond = config.num_classes > 0
        self.class_embed = nn.Embedding(config.num_classes, config.class_dim) if cond else None
        in_dim = config.latent_dim + (config.class_dim if cond else 0)
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_dim, widths[0], s, 1, 0, bias=config.bias and not batch)]
        for w_in, w_out in zip(widths, widths[1:] + [config.channels], strict=True):
            if batch:
                layers.append(nn.BatchNorm2d(w_in))
            layers += [nn.ReLU(inplace=True), nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=config.bias and
                                                                 (not batch or w_out == config.channels))]
        layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.class_embed is not None:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels")
            z = torch.cat([z, self.class_embed(labels).to(z.dtype)], dim=1)  # (B, latent_dim + class_dim)
        return self.net(z[:, :, None, None])  # (B, in, 1, 1) -> (B, w0, s, s) -> ... -> (B, C, H, W)


class Discriminator(nn.Module):
    """images (B, C, H, W) [+ class] -> logits (B,): high for real, low for generated."""

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        s, _ = start_size(config.image_size)
        widths = config.widths(config.d_width)[::-1]  # e.g. 64 px: [64, 128, 256, 512]
        batch = config.d_norm == "batch"
        layers: list[nn.Module] = [nn.Conv2d(config.channels, widths[0], 4, 2, 1, bias=config.bias),
                                   nn.LeakyReLU(0.2, inplace=True)]
        for w_in, w_out in zip(widths, widths[1:], strict=False):
            layers.append(nn.Conv2d(w_in, w_out, 4, 2, 1, bias=config.bias and not batch))
            if batch:
                layers.append(nn.BatchNorm2d(w_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.features = nn.Sequential(*layers)  # (B, C, H, W) -> (B, widths[-1], s, s)
        self.head = nn.Conv2d(widths[-1], 1, s, 1, 0, bias=config.bias)  # a linear map of the s x s features
        feature_dim = widths[-1] * s * s
        self.class_embed = nn.Embedding(config.num_classes, feature_dim) if config.num_classes else None
        self.apply(_dcgan_init)
        if config.spectral_norm:
            for module in list(self.modules()):
                if isinstance(module, (nn.Conv2d, nn.Embedding)):
                    _spectral_norm(module)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(images)  # (B, W, s, s)
        logits = self.head(h).flatten()  # (B,)
        if self.class_embed is not None:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels")
            # projection: <embed(y), phi(x)> with phi(x) the flattened features (B, W*s*s)
            logits = logits + (self.class_embed(labels).to(h.dtype) * h.flatten(1)).sum(1)
        return logits


# ------------------------------------------------------------------------------------------------ objectives
def discriminator_loss(kind: Loss, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's loss, in fp32 whatever the logits' dtype (the sums of small terms are where bf16 would lose bits)."""
    real, fake = real_logits.float(), fake_logits.float()
    if kind == "nonsaturating":  # BCE with targets 1 (real) and 0 (fake) on sigmoid(logit)
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":  # Lim & Ye 2017; Miyato et al. 2018
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if kind == "wgan-gp":  # critic: Gulrajani et al. 2017 (the penalty is added by the training step)
        return fake.mean() - real.mean()
    raise ValueError(f"unknown GAN loss {kind!r}; use nonsaturating, hinge or wgan-gp")


def generator_loss(kind: Loss, fake_logits: torch.Tensor) -> torch.Tensor:
    """G's loss: the non-saturating -log D(G(z)) (Goodfellow et al. 2014), or -D(G(z)) for hinge and WGAN."""
    fake = fake_logits.float()
    if kind == "nonsaturating":
        return F.softplus(-fake).mean()
    if kind in ("hinge", "wgan-gp"):
        return -fake.mean()
    raise ValueError(f"unknown GAN loss {kind!r}; use nonsaturating, hinge or wgan-gp")


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """E ||d D(x) / dx||^2 on real images (Mescheder et al. 2018); the caller scales it by gamma / 2.

    ``real_inputs`` must require grad and be the tensor ``real_logits`` was computed from.
    """
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_inputs, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None,
                     eps: torch.Tensor) -> torch.Tensor:
    """WGAN-GP's E (||d D(x^) / dx^|| - 1)^2 at x^ = eps * real + (1 - eps) * fake, eps (B,) ~ U(0, 1)."""
    mixed = torch.lerp(fake.detach().float(), real.detach().float(), eps.view(-1, 1, 1, 1).float()).requires_grad_()
    (grad,) = torch.autograd.grad(discriminator(mixed, labels).float().sum(), mixed, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1.0).pow(2).mean()


@dataclass
class GANOutput:
    """What :meth:`GAN.forward` returns: both players' non-saturating losses on one batch, and their sum."""

    loss: torch.Tensor
    loss_d: torch.Tensor
    loss_g: torch.Tensor
    fake: torch.Tensor  # (B, C, H, W) in [-1, 1]


class GAN(nn.Module):
    """Generator, discriminator and the generator's EMA copy, saved and loaded as one set of tensors."""

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> GANOutput:
        """Both players' non-saturating losses on a batch of real images (z drawn from the global generator).

        The sum is a scalar a generic caller can check and differentiate; training does not minimise it (G and D
        minimise different losses with their own optimizers: see ``genchain.train.gan``).
        """
        z = torch.randn(images.shape[0], self.config.latent_dim, device=images.device)
        fake = self.generator(z, labels)
        loss_d = discriminator_loss("nonsaturating", self.discriminator(images, labels),
                                    self.discriminator(fake.detach(), labels))
        loss_g = generator_loss("nonsaturating", self.discriminator(fake, labels))
        return GANOutput(loss=loss_d + loss_g, loss_d=loss_d, loss_g=loss_g, fake=fake)

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """ema <- decay * ema + (1 - decay) * weights; buffers (batch-norm statistics) are copied."""
        ema = list(self.generator_ema.parameters())
        live = [p.detach() for p in self.generator.parameters()]
        torch._foreach_lerp_(ema, live, 1.0 - decay)
        for ema_buffer, buffer in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            ema_buffer.copy_(buffer)

    def num_params(self) -> dict[str, int]:
        return {"generator": sum(p.numel() for p in self.generator.parameters()),
                "discriminator": sum(p.numel() for p in self.discriminator.parameters())}


@register_model("gan", family="gan")
def gan(**kwargs) -> GAN:
    """DCGAN-style GAN for 16-256 px, grey or colour, optionally conditional and spectrally normalised."""
    return GAN(GANConfig(**kwargs))


@register_model("gan-tiny", family="gan")
def gan_tiny(**kwargs) -> GAN:
    """16 px, 8 wide, 16-d latent: for tests, a step takes milliseconds."""
    return GAN(GANConfig(**{"image_size": 16, "latent_dim": 16, "g_width": 8, "d_width": 8, "class_dim": 8,
                            **kwargs}))


@register_model("gan-dcgan-examples", family="gan")
def gan_dcgan_examples(**kwargs) -> GAN:
    """pytorch/examples dcgan/main.py: 64 px, nz 100, ngf = ndf = 64, batch norm, no biases."""
    return GAN(GANConfig(**{"image_size": 64, "latent_dim": 100, "g_width": 64, "d_width": 64, "max_width": 512,
                            "g_norm": "batch", "d_norm": "batch", "spectral_norm": False, "bias": False,
                            **kwargs}))
