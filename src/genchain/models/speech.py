"""Speech models: the class-conditional conv VAE (Sohn et al. 2015, "Learning Structured Output Representation
using Deep Conditional Generative Models", on Kingma & Welling 2014) over 64 x 64 log-mel "images".

No new network: a word clip's log-mel features (:mod:`genchain.data.audio_features`) are a one-channel image in
[-1, 1], so :class:`genchain.models.vae.VAE` applies as it is. What differs from the image defaults, and why:

* ``conditional`` is on: generation asks for a word, so the label is an input, not something to hope for.
* ``decoder`` is the discretised Gaussian with a *fixed* sigma (0.1, about 8 dB): log-mel levels are not
  probabilities, and a Bernoulli decoder's mean is pulled towards 0.5 (mid-grey, -40 dB), which Griffin-Lim
  turns into hiss. With a learned sigma, 200 training clips let sigma shrink until the held-out NLL tripled
  while the decoded means kept improving; fixed, the held-out figure moves by a few per cent. (It still
  bottoms out early, which is why generation reads the run's last weights: see :mod:`genchain.train.speech`.)
* a smaller latent (16): within one word class the variation is voice, pace and pitch, a few factors.
* narrower (widths 16-32-64-64, no extra convolutions; 0.07 GFLOP per clip trained, 280k parameters): a few
  hundred clips need no more, and on a shared 2-core CPU a 10x wider net trains 10x fewer steps in a budget.
"""

from __future__ import annotations

from genchain.models.registry import register_model
from genchain.models.vae import VAE, VAEConfig

VARIANTS: dict[str, dict[str, object]] = {
    "speech-vae": {"image_size": 64, "latent_dim": 16, "width": 16, "max_width": 64, "depth": 0,
                   "decoder": "gaussian", "learn_sigma": False, "conditional": True, "label_dim": 16},
    "speech-vae-tiny": {"image_size": 64, "latent_dim": 4, "width": 8, "max_width": 16, "depth": 0,
                        "decoder": "gaussian", "learn_sigma": False, "conditional": True, "label_dim": 4},
}


def variant_defaults(name: str) -> dict[str, object]:
    """The config values a registered speech model name stands for (the rest are :class:`VAEConfig`'s)."""
    return dict(VARIANTS.get(name, {}))


def _build(name: str, kwargs: dict) -> VAE:
    return VAE(VAEConfig(**{**VARIANTS[name], **kwargs}))


@register_model("speech-vae", family="speech")
def speech_vae(**kwargs) -> VAE:
    """Class-conditional conv VAE over 64x64 log-mel clips (latent 16, widths 16-32-64-64, Gaussian decoder)."""
    return _build("speech-vae", kwargs)


@register_model("speech-vae-tiny", family="speech")
def speech_vae_tiny(**kwargs) -> VAE:
    """A few-thousand-parameter speech VAE for tests and smoke runs."""
    return _build("speech-vae-tiny", kwargs)
