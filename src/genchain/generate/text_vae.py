"""Sentences from a trained sentence VAE: samples from the prior, homotopies, reconstructions.

Inference owns no training code (diffusers' rule): :class:`TextVAEGenerator` composes a run's model, its codec and
one batched decoding loop. Every method decodes all its sentences as one batch, token by token, until each has
written EOS or ``max_len`` tokens. PAD, BOS and UNK are never emitted (they are not text).

Homotopy (Bowman et al. 2016, section 5.3): the posterior means of two sentences are joined by a straight line
and ``steps`` evenly spaced points on it, both ends included, are decoded greedily; a smooth latent space reads
as a chain of grammatical sentences morphing from one to the other.

When a :class:`~genchain.provenance.watermark_text.TextWatermark` is set (:attr:`TextVAEGenerator.watermark`),
its green-list bias is added to the logits at every step given the previous token, as the GPT sampler does; the
tokenizer ids of text tokens are the ones ``tokenizer.json`` gives, so ``genchain watermark detect`` tests VAE
text like GPT text. Short sentences carry few scored tokens, so single samples rarely reach the detection
threshold; a file of many samples does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from genchain.errors import ConfigError, InputError
from genchain.models.text_vae import TextVAE
from genchain.runtime import select_device
from genchain.train.text_vae_data import SentenceCodec

if TYPE_CHECKING:
    from genchain.provenance.watermark_text import TextWatermark


class TextVAEGenerator:
    """A trained sentence VAE (or its LM baseline) and its codec, in fp32 on ``device``."""

    def __init__(self, model: TextVAE, codec: SentenceCodec, max_len: int, device: str = "auto"):
        self.device = select_device(device)
        self.model = model.float().to(self.device).eval()
        self.codec = codec
        self.max_len = max_len  # the training max_len: sentences incl. EOS
        self.watermark: TextWatermark | None = None
        banned = [codec.specials.pad, codec.specials.bos, codec.specials.unk]
        self._banned = torch.tensor(banned, device=self.device)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "auto") -> TextVAEGenerator:
        from genchain.train.text_vae import load_text_vae

        model, codec, recipe, _ = load_text_vae(run_dir)
        return cls(model, codec, recipe.vae.max_len, device)

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    # -- public API ----------------------------------------------------------------------------------------

    @torch.inference_mode()
    def sample(self, num: int, seed: int | None = None, temperature: float = 1.0,
               max_len: int | None = None) -> list[str]:
        """``num`` sentences decoded from z ~ N(0, I): greedy when ``temperature`` is 0, else sampled."""
        if num < 1:
            raise ConfigError(f"--num must be at least 1, got {num}")
        if temperature < 0:
            raise ConfigError(f"--temperature must be >= 0 (0 means greedy), got {temperature}")
        generator = torch.Generator(self.device)
        generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**63))
        z = None
        if self.latent_dim:
            z = torch.randn(num, self.latent_dim, generator=generator, device=self.device)
        return self._decode(z, num, temperature, max_len, generator)

    @torch.inference_mode()
    def interpolate(self, a: str, b: str, steps: int = 8) -> list[str]:
        """Greedy decodings of ``steps`` points on the line between the posterior means of ``a`` and ``b``."""
        if steps < 2:
            raise ConfigError(f"--steps counts both ends and must be at least 2, got {steps}")
        mu = self._encode([a, b])  # (2, D)
        t = torch.linspace(0.0, 1.0, steps, device=self.device)[:, None]  # (steps, 1)
        z = (1.0 - t) * mu[0] + t * mu[1]  # (steps, D)
        return self._decode(z, steps, 0.0, None, None)

    @torch.inference_mode()
    def reconstruct(self, texts: list[str]) -> list[str]:
        """Greedy decodings of the posterior means of ``texts``: what the latent code keeps of each sentence."""
        if not texts:
            return []
        return self._decode(self._encode(texts), len(texts), 0.0, None, None)

    # -- pieces --------------------------------------------------------------------------------------------

    def _encode(self, texts: list[str]) -> torch.Tensor:
        """Posterior means (N, D) of ``texts``, normalised as the training data was."""
        if not self.latent_dim:
            raise InputError("this run is a language model (latent_dim 0): it has no latent space to encode into; "
                             "interpolate and reconstruct need a text-vae model")
        texts = [" ".join(t.split()) for t in texts]
        ids = self.codec.encode_batch(texts)
        for text, seq in zip(texts, ids, strict=True):
            if not seq:
                raise InputError("cannot encode an empty sentence")
            if len(seq) + 1 > self.max_len:
                raise InputError(f"{text[:40]!r} is {len(seq)} tokens long; the model was trained on sentences of "
                                 f"at most {self.max_len - 1} tokens")
        pad = self.codec.specials.pad
        longest = max(len(s) for s in ids) + 1
        tokens = torch.full((len(ids), longest), pad, dtype=torch.long)
        for row, seq in enumerate(ids):
            tokens[row, : len(seq) + 1] = torch.tensor([*seq, self.codec.specials.eos])
        lengths = torch.tensor([len(s) + 1 for s in ids])
        mu, _ = self.model.encode(tokens.to(self.device), lengths)
        return mu

    def _decode(self, z: torch.Tensor | None, num: int, temperature: float, max_len: int | None,
                generator: torch.Generator | None) -> list[str]:
        """Decode ``num`` sentences under latents ``z`` (None for the LM) as one batch."""
        limit = max_len or self.max_len
        if limit < 1:
            raise ConfigError(f"max_len must be at least 1, got {limit}")
        eos = self.codec.specials.eos
        # 1. start every sequence from BOS (and z)
        state = self.model.start_decoding(z, num)
        done = torch.zeros(num, dtype=torch.bool, device=self.device)
        out = []
        for _ in range(limit):
            # 2. next-token logits; specials that are not text cannot be chosen
            logits = self.model.next_logits(state)
            logits[:, self._banned] = float("-inf")
            if self.watermark is not None:  # before any sampling rule, greedy included, as in the GPT sampler
                logits = self.watermark.apply(logits, state["inputs"][:, -1])
            # 3. choose, and feed back; finished rows keep writing EOS
            if temperature == 0:
                token = logits.argmax(dim=-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            token = token.masked_fill(done, eos)
            out.append(token)
            done |= token == eos
            state["inputs"] = torch.cat([state["inputs"], token[:, None]], dim=1)
            if bool(done.all()):
                break
        ids = torch.stack(out, dim=1).tolist()  # (num, steps)
        return [self.codec.decode(row) for row in ids]
