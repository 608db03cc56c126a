"""Variational autoencoders (Kingma & Welling 2014, "Auto-Encoding Variational Bayes").

One model family with three knobs from later papers:

* ``beta`` weights the KL term of the training loss (Higgins et al. 2017, "beta-VAE"); every reported figure
  is still the true (beta = 1) negative ELBO, so runs with different betas compare on one scale.
* ``conditional`` embeds the class label into both the encoder, q(z | x, y), and the decoder, p(x | z, y)
  (Sohn et al. 2015, "Learning Structured Output Representation using Deep Conditional Generative Models").
* :func:`importance_weighted_nll` is the k-sample bound of Burda et al. 2016 ("Importance Weighted
  Autoencoders"), the standard evaluation of a VAE's test log-likelihood: tighter than the ELBO, exact as k grows.

Two likelihoods p(x | z), both reported in nats per image:

* ``bernoulli`` (the standard for (Fashion-)MNIST and what pytorch/examples' VAE does): pixel intensities
  scaled to [0, 1] are treated as Bernoulli probabilities and scored with binary cross-entropy against the
  decoder's logits. For binarised data this is the exact likelihood; for grey levels it is a cross-entropy, not
  a normalised distribution over 8-bit images, so its "NLL" compares with other non-binarised Bernoulli VAEs
  (the pytorch/examples figure included) but not with bits/dim of discrete likelihood models.
* ``gaussian``: a *discretised* Gaussian over the 256 grey levels (the mass of a Normal(mean, sigma) on each
  level's bin of width 1/255, the end bins stretched to infinity, as PixelCNN++ discretises its logistic), with
  one sigma per channel, learned or fixed. This is a true probability of the 8-bit image, so its NLL in nats
  and bits/dim are directly comparable with other likelihood models.

Images enter every function in [-1, 1] (the range of ``genchain.train.image_data.to_unit_range``) and the
reconstructions leave in [-1, 1]. The network may run in bf16; the likelihood and KL sums always run in fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
from torch.nn import functional as F

from genchain.errors import InputError
from genchain.models.registry import register_model

Decoder = Literal["bernoulli", "gaussian"]
Arch = Literal["conv", "mlp"]
LOGVAR_RANGE = (-30.0, 20.0)  # keeps exp(logvar) finite in bf16 and fp32 early in training
LOG_SIGMA_RANGE = (math.log(1e-3), math.log(10.0))


@dataclass(frozen=True)
class VAEConfig:
    """Shape of a VAE. ``channels`` and ``num_classes`` come from the dataset at training time."""

    image_size: int = 0  # 0: the dataset's size, filled in when training starts
    channels: int = 1
    latent_dim: int = 32
    arch: Arch = "conv"
    width: int = 32  # conv: channels after the first downsampling, doubled at each further one
    max_width: int = 256
    depth: int = 1  # conv: extra 3x3 convolutions per resolution, in the encoder and the decoder
    hidden: int = 400  # mlp: width of the single hidden layer (pytorch/examples uses 400)
    decoder: Decoder = "bernoulli"
    sigma: float = 0.1  # gaussian: the std in [0, 1] pixel units; its initial value when learn_sigma
    learn_sigma: bool = True
    beta: float = 1.0
    conditional: bool = False
    num_classes: int = 0  # filled from the dataset's labels when conditional
    label_dim: int = 16  # size of the label embedding fed to encoder and decoder
    channels_last: bool = True  # conv: NHWC activations, which oneDNN's CPU convolutions prefer

    def __post_init__(self) -> None:
        if self.image_size < 0:
            raise ValueError(f"image_size must be positive (or 0 for the dataset's size), got {self.image_size}")
        for name in ("channels", "latent_dim", "width", "max_width", "hidden", "label_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.depth < 0:
            raise ValueError(f"depth must be >= 0, got {self.depth}")
        if self.image_size and self.arch == "conv" and (self.image_size < 8 or self.image_size % 2):
            raise ValueError(f"the conv VAE needs an even image_size >= 8, got {self.image_size}")
        if self.sigma <= 0 or self.beta < 0:
            raise ValueError("sigma must be positive and beta >= 0")

    @property
    def dims(self) -> int:
        return self.channels * self.image_size * self.image_size


@dataclass
class VAEOutput:
    """What :meth:`VAE.forward` returns. Scalars are means over the batch, in nats per image."""

    loss: torch.Tensor  # recon + beta * kl_weight * kl: what training minimises
    recon: torch.Tensor  # -E_q log p(x | z), one sample of z
    kl: torch.Tensor  # KL(q(z | x) || p(z)), closed form
    elbo: torch.Tensor  # -(recon + kl): the true ELBO whatever beta is
    mu: torch.Tensor  # (B, latent_dim) posterior means
    logvar: torch.Tensor  # (B, latent_dim) posterior log-variances
    x_mean: torch.Tensor  # (B, C, H, W) reconstruction (decoder mean) in [-1, 1]


# ---------------------------------------------------------------------------------------------- likelihoods


def bernoulli_log_prob(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """log p(x | z) per image (B,), intensities (x + 1) / 2 in [0, 1] as Bernoulli targets; fp32 sums."""
    target = (images.float() + 1.0) * 0.5
    return -F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none").flatten(1).sum(1)


def log_ndtr_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) for b > a without cancellation: evaluated in the left tail, mirrored when needed."""
    flip = (a + b) > 0  # Phi(b) - Phi(a) = Phi(-a) - Phi(-b): keep both CDFs small, where log_ndtr is exact
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_lo, log_hi = torch.special.log_ndtr(lo), torch.special.log_ndtr(hi)
    return log_hi + torch.log(-torch.expm1((log_lo - log_hi).clamp(max=-1e-12)))


def discretized_gaussian_log_prob(mean: torch.Tensor, log_sigma: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """log P(x | z) per image (B,) of 8-bit images under a Gaussian discretised onto the 256 levels.

    ``mean`` is in [0, 1] pixel units, ``log_sigma`` broadcasts against it (one per channel here), ``images``
    are in [-1, 1] and are mapped back to their levels k = 0..255; level k owns [k - 0.5, k + 0.5] / 255, with
    level 0 owning everything below and level 255 everything above, so the masses sum to one.
    """
    level = torch.round((images.float() + 1.0) * 127.5).clamp_(0, 255)
    inv_sigma = torch.exp(-log_sigma.float().clamp(*LOG_SIGMA_RANGE))
    centred = level / 255.0 - mean.float()
    half_bin = 0.5 / 255.0
    upper = (centred + half_bin) * inv_sigma
    lower = (centred - half_bin) * inv_sigma
    log_p = torch.where(level <= 0, torch.special.log_ndtr(upper),
                        torch.where(level >= 255, torch.special.log_ndtr(-lower), log_ndtr_diff(lower, upper)))
    return log_p.flatten(1).sum(1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row (B,), closed form (Kingma & Welling 2014, appendix B)."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def diag_gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dim."""
    return -0.5 * (((z - mu) ** 2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)


# ----------------------------------------------------------------------------------------------- networks


def _levels(image_size: int) -> int:
    """How many stride-2 halvings take ``image_size`` to a small map: 28 -> 7 (2), 32 -> 4 (3), 64 -> 4 (4)."""
    levels, size = 0, image_size
    while size % 2 == 0 and size > 4:
        size //= 2
        levels += 1
    return levels


class ConvEncoder(nn.Module):
    """(B, C, S, S) -> (B, F) features: per resolution a 4x4 stride-2 conv, then ``depth`` 3x3 convs."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.widths = [min(cfg.width * 2**i, cfg.max_width) for i in range(_levels(cfg.image_size))]
        layers: list[nn.Module] = []
        c_in = cfg.channels
        for c in self.widths:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.SiLU()]
            for _ in range(cfg.depth):
                layers += [nn.Conv2d(c, c, 3, padding=1), nn.SiLU()]
            c_in = c
        self.net = nn.Sequential(*layers)
        self.final_size = cfg.image_size >> len(self.widths)
        self.out_features = self.widths[-1] * self.final_size**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)  # (B, C_L * s * s)


class ConvDecoder(nn.Module):
    """(B, D) -> (B, C, S, S) parameters: a linear map to the smallest map, then the encoder mirrored."""

    def __init__(self, cfg: VAEConfig, in_features: int, encoder: ConvEncoder):
        super().__init__()
        widths, size = encoder.widths, encoder.final_size
        self.shape = (widths[-1], size, size)
        self.fc = nn.Linear(in_features, widths[-1] * size * size)
        layers: list[nn.Module] = [nn.SiLU()]
        for i in reversed(range(len(widths))):
            c = widths[i]
            for _ in range(cfg.depth):
                layers += [nn.Conv2d(c, c, 3, padding=1), nn.SiLU()]
            c_out = widths[i - 1] if i > 0 else cfg.channels
            layers.append(nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1))
            if i > 0:
                layers.append(nn.SiLU())
        self.net = nn.Sequential(*layers)
        self.channels_last = cfg.channels_last

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.fc(h).view(-1, *self.shape)  # (B, C_L, s, s)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)  # (B, C, S, S): logits (bernoulli) or means (gaussian)


class MLPEncoder(nn.Module):
    """pytorch/examples' encoder: flatten, one ReLU hidden layer."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.dims, cfg.hidden)
        self.out_features = cfg.hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(x.flatten(1)))


class MLPDecoder(nn.Module):
    """pytorch/examples' decoder: one ReLU hidden layer, then a linear map to every pixel."""

    def __init__(self, cfg: VAEConfig, in_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, cfg.hidden)
        self.fc2 = nn.Linear(cfg.hidden, cfg.dims)
        self.shape = (cfg.channels, cfg.image_size, cfg.image_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(h))).view(-1, *self.shape)


class VAE(nn.Module):
    """Encoder q(z | x[, y]) = N(mu, diag(exp(logvar))), prior N(0, I), decoder p(x | z[, y])."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        if config.image_size == 0:
            raise ValueError("image_size is 0 (the dataset's size); set it before building the model")
        if config.conditional and config.num_classes < 2:
            raise ValueError(f"a conditional VAE needs num_classes >= 2 (labelled data), got {config.num_classes}")
        self.config = config
        cfg = config
        label_dim = cfg.label_dim if cfg.conditional else 0
        self.label_embedding = nn.Embedding(cfg.num_classes, cfg.label_dim) if cfg.conditional else None
        if cfg.arch == "conv":
            self.encoder: nn.Module = ConvEncoder(cfg)
            self.decoder: nn.Module = ConvDecoder(cfg, cfg.latent_dim + label_dim, self.encoder)
        else:
            self.encoder = MLPEncoder(cfg)
            self.decoder = MLPDecoder(cfg, cfg.latent_dim + label_dim)
        self.to_posterior = nn.Linear(self.encoder.out_features + label_dim, 2 * cfg.latent_dim)
        if cfg.decoder == "gaussian":
            log_sigma = torch.full((1, cfg.channels, 1, 1), math.log(cfg.sigma))
            if cfg.learn_sigma:
                self.log_sigma = nn.Parameter(log_sigma)
            else:
                self.register_buffer("log_sigma", log_sigma)
        if cfg.arch == "conv" and cfg.channels_last:
            self.to(memory_format=torch.channels_last)

    # -- pieces ------------------------------------------------------------------------------------------

    def _embed(self, labels: torch.Tensor | None, rows: int) -> torch.Tensor | None:
        if self.label_embedding is None:
            return None
        if labels is None:
            raise InputError("this VAE is conditional: pass a class label for every image (--label NAME)")
        if labels.shape != (rows,):
            raise InputError(f"expected {rows} labels, got shape {tuple(labels.shape)}")
        if labels.min() < 0 or labels.max() >= self.config.num_classes:
            raise InputError(f"labels must be in [0, {self.config.num_classes}); got {labels.min()}..{labels.max()}")
        return self.label_embedding(labels)  # (B, label_dim)

    @property
    def dtype(self) -> torch.dtype:
        return self.to_posterior.weight.dtype

    def encode(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [-1, 1] (B, C, H, W) -> posterior (mu, logvar), each (B, latent_dim), fp32."""
        x = images.to(self.dtype)
        if self.config.arch == "conv" and self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.encoder(x)
        e = self._embed(labels, images.shape[0])
        if e is not None:
            h = torch.cat([h, e.to(h.dtype)], dim=1)
        mu, logvar = self.to_posterior(h).float().chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def decode_params(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (B, latent_dim) -> the decoder's per-pixel parameters (B, C, H, W): logits or means."""
        h = z.to(self.dtype)
        e = self._embed(labels, z.shape[0])
        if e is not None:
            h = torch.cat([h, e.to(h.dtype)], dim=1)
        return self.decoder(h)

    def log_likelihood(self, params: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """log p(x | z) per image (B,) in nats, fp32."""
        if self.config.decoder == "bernoulli":
            return bernoulli_log_prob(params, images)
        return discretized_gaussian_log_prob(params, self.log_sigma, images)

    def mean_image(self, params: torch.Tensor) -> torch.Tensor:
        """Decoder parameters -> the expected image in [-1, 1] (a Bernoulli mean p maps to 2p - 1)."""
        if self.config.decoder == "bernoulli":
            return torch.sigmoid(params.float()) * 2.0 - 1.0
        return params.float().clamp(0.0, 1.0) * 2.0 - 1.0

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Latents -> images in [-1, 1] (the decoder's mean, not a noisy sample from it)."""
        return self.mean_image(self.decode_params(z, labels))

    # -- training objective -----------------------------------------------------------------------------

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                kl_weight: float = 1.0) -> VAEOutput:
        """One-sample ELBO of images in [-1, 1] (B, C, H, W); ``kl_weight`` is the KL warm-up factor."""
        mu, logvar = self.encode(images, labels)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterisation, (B, latent_dim) fp32
        params = self.decode_params(z, labels)
        recon = -self.log_likelihood(params, images).mean()
        kl = gaussian_kl(mu, logvar).mean()
        loss = recon + (self.config.beta * kl_weight) * kl
        return VAEOutput(loss=loss, recon=recon, kl=kl, elbo=-(recon + kl), mu=mu, logvar=logvar,
                         x_mean=self.mean_image(params))

    def flops_per_image(self) -> float:
        """Training FLOPs per image: 6 x the multiply-adds of one forward pass (measured by a meta-device trace)."""
        from torch.utils.flop_counter import FlopCounterMode

        device = self.to_posterior.weight.device
        x = torch.zeros(1, self.config.channels, self.config.image_size, self.config.image_size, device=device)
        y = torch.zeros(1, dtype=torch.long, device=device) if self.config.conditional else None
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            self.decode_params(self.encode(x, y)[0], y)
        return 3.0 * counter.get_total_flops()  # forward counted as 2 FLOPs per MAC; backward twice that


# ----------------------------------------------------------------------------------------- IWAE evaluation


@torch.no_grad()
def iw_log_likelihood(model: VAE, images: torch.Tensor, labels: torch.Tensor | None = None, k: int = 100,
                      chunk: int | None = None) -> torch.Tensor:
    """The k-sample importance-weighted lower bound on log p(x) for each image (B,), in nats.

    log p(x) >= E[log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x)], z_i ~ q(z | x) (Burda et al. 2016, eq. 8).
    k = 1 is the ELBO; the bound tightens as k grows. Samples are decoded ``chunk`` at a time per image, so
    memory stays at B x chunk decodes whatever k is.
    """
    if k < 1:
        raise InputError(f"k (importance samples) must be >= 1, got {k}")
    b = images.shape[0]
    chunk = max(1, min(k, chunk or max(1, 4096 // max(b, 1))))
    mu, logvar = model.encode(images, labels)  # (B, D)
    std = torch.exp(0.5 * logvar)
    log_w = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        z = mu.unsqueeze(1) + std.unsqueeze(1) * torch.randn(b, n, mu.shape[1], device=mu.device)  # (B, n, D)
        flat_z = z.reshape(b * n, -1)
        rep_labels = None if labels is None else labels.repeat_interleave(n)
        rep_images = images.repeat_interleave(n, dim=0)  # (B * n, C, H, W), image-major like flat_z
        log_px = model.log_likelihood(model.decode_params(flat_z, rep_labels), rep_images).view(b, n)
        log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)  # (B, n) standard normal prior
        log_qz = diag_gaussian_log_prob(z, mu.unsqueeze(1), logvar.unsqueeze(1))  # (B, n)
        log_w.append(log_px + log_pz - log_qz)
    return torch.logsumexp(torch.cat(log_w, dim=1), dim=1) - math.log(k)


@torch.no_grad()
def importance_weighted_nll(model: VAE, images: torch.Tensor, labels: torch.Tensor | None = None, k: int = 100,
                            chunk: int | None = None, batch_size: int = 256,
                            progress: bool = True) -> dict[str, float | int | str]:
    """Test-set NLL bound -log p(x) <= -IWAE_k (nats per image, and bits per dimension), for evaluation only.

    Args:
        model: a VAE (put in eval mode here; fp32 weights give the most faithful figure).
        images: (N, C, H, W) uint8, or floats in [-1, 1].
        labels: (N,) class indices; required when the model is conditional.
        k: importance samples per image (100 is the usual report, 1000 for papers; k = 1 gives -ELBO).
        chunk: samples decoded per image in one pass (default: about 4096 decodes per pass).
        batch_size: images per pass.
    """
    from tqdm.auto import tqdm

    model.eval()
    device = next(model.parameters()).device
    nll_sum, n = 0.0, images.shape[0]
    bar = tqdm(total=n, desc=f"IWAE k={k}", unit="img", leave=False, disable=None if progress else True)
    for start in range(0, n, batch_size):
        x = images[start : start + batch_size].to(device)
        x = x.float().div(127.5).sub(1.0) if x.dtype == torch.uint8 else x.float()
        y = None if labels is None or model.config.conditional is False else labels[start : start + batch_size]
        nll_sum -= float(iw_log_likelihood(model, x, None if y is None else y.to(device), k, chunk).sum())
        bar.update(x.shape[0])
    bar.close()
    nll = nll_sum / max(n, 1)
    likelihood = ("bernoulli cross-entropy on [0,1] intensities" if model.config.decoder == "bernoulli"
                  else "discretised gaussian on 8-bit levels")
    return {"nll_nats": nll, "bits_per_dim": nll / (model.config.dims * math.log(2)), "k": k, "images": n,
            "likelihood": likelihood}


# ------------------------------------------------------------------------------------------------ registry

VARIANTS: dict[str, dict[str, object]] = {
    "vae": {},
    "vae-tiny": {"latent_dim": 4, "width": 8, "depth": 0, "label_dim": 4},
    # pytorch/examples vae/main.py: 784-400-20 MLP, ReLU, Bernoulli on [0, 1] intensities
    "vae-mlp-examples": {"arch": "mlp", "hidden": 400, "latent_dim": 20, "image_size": 28},
}


def variant_defaults(name: str) -> dict[str, object]:
    """The config values a registered VAE name stands for (the rest are :class:`VAEConfig`'s defaults)."""
    return dict(VARIANTS.get(name, {}))


def _build(name: str, kwargs: dict) -> VAE:
    return VAE(VAEConfig(**{**VARIANTS[name], **kwargs}))


@register_model("vae", family="vae")
def vae(**kwargs) -> VAE:
    """Convolutional VAE, 28-64 px (latent 32, widths 32-64-..., SiLU); beta-VAE and conditional via config."""
    return _build("vae", kwargs)


@register_model("vae-tiny", family="vae")
def vae_tiny(**kwargs) -> VAE:
    """A few-thousand-parameter conv VAE for tests and smoke runs."""
    return _build("vae-tiny", kwargs)


@register_model("vae-mlp-examples", family="vae")
def vae_mlp_examples(**kwargs) -> VAE:
    """pytorch/examples' MNIST VAE: 784-400-20 MLP, Bernoulli decoder (the benchmark's reference model)."""
    return _build("vae-mlp-examples", kwargs)
