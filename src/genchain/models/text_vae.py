"""Sentence VAEs (Bowman et al. 2016, "Generating Sentences from a Continuous Space").

A bidirectional GRU (one GRU per direction) reads a sentence into a Gaussian posterior
q(z | x) = N(mu, diag(exp(logvar))); an autoregressive decoder p(x | z) writes it back token by token. Two decoders:

* ``gru``: z sets the initial hidden state *and* is concatenated to every input embedding. Feeding z at every
  step is the common fix against posterior collapse: a decoder that only sees z at step 0 soon learns to
  ignore it (Bowman et al. section 3; the variant used by most later sentence-VAE work).
* ``transformer``: a small causal Transformer (pre-norm) whose first position holds z projected to the model
  width, a prefix "memory token" every later position attends to.

``latent_dim = 0`` removes the encoder and the latent: the same decoder as a plain language model
(``text-lm-gru``), the baseline the benchmark compares with; its NLL is exact and its KL is 0.

Three training devices from the literature live in :meth:`TextVAE.forward`:

* the KL weight (annealing, Bowman et al.) arrives as an argument: the training task computes it from the
  iteration (:func:`genchain.train.text_vae.kl_weight_at`) and hands it over with each batch, the way the image
  VAE's warm-up does, so the model holds no schedule state and evaluation always scores the true ELBO;
* word dropout (Bowman et al. section 3.1): each decoder input token after BOS becomes UNK with probability
  ``word_dropout`` while training, so the decoder must lean on z to fill the gaps;
* free bits (Kingma et al. 2016, "Improved Variational Inference with Inverse Autoregressive Flow", eq. 15),
  *per latent dimension*: the training KL is sum_j max(free_bits, mean_batch KL_j), so no gradient pushes a
  dimension below ``free_bits`` nats and the encoder can use each one that much for free.

Token ids: the run's tokenizer (BPE or characters) owns ids 0..V-5; four specials follow it, in this order:
PAD, BOS, EOS, UNK (see :class:`Specials`). A sentence is its tokens followed by EOS; the decoder reads
BOS + the sentence and predicts the sentence + EOS, so every NLL here counts the EOS token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
from torch.nn import functional as F

from genchain.models.registry import register_model

Decoder = Literal["gru", "transformer"]
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
LOGVAR_RANGE = (-20.0, 10.0)  # keeps exp(logvar) finite in bf16 early in training


@dataclass(frozen=True)
class Specials:
    """The ids of the four special tokens appended after the tokenizer's vocabulary."""

    pad: int
    bos: int
    eos: int
    unk: int

    @classmethod
    def for_vocab(cls, vocab_size: int) -> Specials:
        """``vocab_size`` counts the specials: they are its last four ids."""
        return cls(pad=vocab_size - 4, bos=vocab_size - 3, eos=vocab_size - 2, unk=vocab_size - 1)


@dataclass(frozen=True)
class TextVAEConfig:
    """Shape of a sentence VAE. ``vocab_size`` (tokenizer + 4 specials) and ``max_positions`` come from the data."""

    vocab_size: int = 0
    max_positions: int = 64  # transformer decoder: longest sentence incl. EOS (the data's max_len)
    embed_dim: int = 128
    hidden: int = 256  # GRU width (encoder: per direction)
    latent_dim: int = 32  # 0: no encoder, no latent -- a plain language model
    decoder: Decoder = "gru"
    n_layer: int = 2  # transformer decoder blocks
    n_head: int = 4
    dropout: float = 0.1  # on embeddings and decoder outputs
    word_dropout: float = 0.25  # Bowman et al.: decoder inputs -> UNK with this probability (training only)
    free_bits: float = 0.1  # nats per latent dimension (Kingma et al. 2016); 0 disables

    def __post_init__(self) -> None:
        for name in ("embed_dim", "hidden", "n_layer", "n_head", "max_positions"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.vocab_size and self.vocab_size < 5:
            raise ValueError(f"vocab_size counts 4 special tokens and must be >= 5, got {self.vocab_size}")
        if self.latent_dim < 0:
            raise ValueError(f"latent_dim must be >= 0 (0: a language model), got {self.latent_dim}")
        if self.decoder not in ("gru", "transformer"):
            raise ValueError(f"decoder must be gru or transformer, got {self.decoder!r}")
        if self.decoder == "transformer" and self.embed_dim % self.n_head:
            raise ValueError(f"embed_dim {self.embed_dim} must be a multiple of n_head {self.n_head}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.word_dropout < 1.0:
            raise ValueError("dropout and word_dropout must be in [0, 1)")
        if self.free_bits < 0:
            raise ValueError(f"free_bits must be >= 0, got {self.free_bits}")


@dataclass
class TextVAEOutput:
    """What :meth:`TextVAE.forward` returns. Scalars are means over the batch, in nats per sentence."""

    loss: torch.Tensor  # rec + kl_weight * (free-bits) KL: what training minimises
    rec: torch.Tensor  # -log p(x | z), one z per sentence, summed over tokens incl. EOS
    kl: torch.Tensor  # KL(q(z | x) || N(0, I)), closed form (0 for the language model)
    mu: torch.Tensor | None  # (B, latent_dim) posterior means, fp32
    logvar: torch.Tensor | None  # (B, latent_dim) posterior log-variances, fp32


def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per row and dimension (B, D), fp32 (Kingma & Welling 2014, app. B)."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The training KL: sum_j max(free_bits, E_batch KL_j) (Kingma et al. 2016, per dimension); 0 disables."""
    per_dim = kl_per_dim.mean(0)  # (D,)
    return per_dim.clamp(min=free_bits).sum() if free_bits > 0 else per_dim.sum()


def word_dropout(inputs: torch.Tensor, rate: float, specials: Specials) -> torch.Tensor:
    """Replace each decoder input except BOS and PAD by UNK with probability ``rate`` (Bowman et al. 3.1)."""
    if rate <= 0:
        return inputs
    drop = torch.rand(inputs.shape, device=inputs.device) < rate
    drop &= (inputs != specials.bos) & (inputs != specials.pad)
    return inputs.masked_fill(drop, specials.unk)


class GRUEncoder(nn.Module):
    """Token embeddings (B, T, E) + lengths -> posterior (mu, logvar) from a forward and a backward GRU's last states.

    The backward GRU reads each sentence reversed within its own length (padding stays at the end), so both read
    only real tokens before their last state. Two plain GRUs over padded batches rather than one bidirectional
    GRU over a ``PackedSequence``: packed input skips oneDNN's fused RNN kernels on CPU and is several times slower.
    """

    def __init__(self, cfg: TextVAEConfig):
        super().__init__()
        self.forward_rnn = nn.GRU(cfg.embed_dim, cfg.hidden, batch_first=True)
        self.backward_rnn = nn.GRU(cfg.embed_dim, cfg.hidden, batch_first=True)
        self.to_posterior = nn.Linear(2 * cfg.hidden, 2 * cfg.latent_dim)

    def forward(self, emb: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, e = emb.shape
        lengths = lengths.to(emb.device)
        pos = torch.arange(t, device=emb.device)[None]  # (1, T)
        reverse = torch.where(pos < lengths[:, None], lengths[:, None] - 1 - pos, pos)  # (B, T)
        emb_reversed = emb.gather(1, reverse[:, :, None].expand(b, t, e))
        rows, last = torch.arange(b, device=emb.device), lengths - 1
        h_forward = self.forward_rnn(emb)[0][rows, last]  # (B, H): after the last real token
        h_backward = self.backward_rnn(emb_reversed)[0][rows, last]  # (B, H): after reading back to the first
        mu, logvar = self.to_posterior(torch.cat([h_forward, h_backward], dim=-1)).float().chunk(2, dim=-1)
        return mu, logvar.clamp(*LOGVAR_RANGE)


class GRUDecoder(nn.Module):
    """p(x_t | x_<t, z): a GRU over [embedding; z] started from tanh(W z) (z absent for the language model)."""

    def __init__(self, cfg: TextVAEConfig):
        super().__init__()
        self.latent_dim = cfg.latent_dim
        self.rnn = nn.GRU(cfg.embed_dim + cfg.latent_dim, cfg.hidden, batch_first=True)
        self.init_hidden = nn.Linear(cfg.latent_dim, cfg.hidden) if cfg.latent_dim else None
        self.out_features = cfg.hidden

    def start(self, z: torch.Tensor | None, batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The initial hidden state (1, B, H)."""
        if self.init_hidden is None or z is None:
            return torch.zeros(1, batch, self.rnn.hidden_size, dtype=dtype, device=device)
        return torch.tanh(self.init_hidden(z.to(dtype)))[None]

    def forward(self, emb: torch.Tensor, z: torch.Tensor | None, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (B, T, E) -> outputs (B, T, H) and the last hidden state."""
        if z is not None and self.latent_dim:
            emb = torch.cat([emb, z.to(emb.dtype)[:, None, :].expand(-1, emb.shape[1], -1)], dim=-1)
        return self.rnn(emb, h)


class TransformerDecoder(nn.Module):
    """A causal pre-norm Transformer; position 0 holds the projected z, positions 1.. the decoder inputs."""

    def __init__(self, cfg: TextVAEConfig):
        super().__init__()
        d = cfg.embed_dim
        self.prefix = nn.Linear(cfg.latent_dim, d) if cfg.latent_dim else None
        self.positions = nn.Embedding(cfg.max_positions + 1, d)
        layer = nn.TransformerEncoderLayer(d, cfg.n_head, 4 * d, cfg.dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.ModuleList([_clone(layer) for _ in range(cfg.n_layer)])
        self.norm = nn.LayerNorm(d)
        self.out_features = d

    def forward(self, emb: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """Embeddings (B, T, E) -> outputs (B, T, E), output t predicting input t + 1."""
        b, t, _ = emb.shape
        if t > self.positions.num_embeddings - 1:
            raise ValueError(f"sequence of {t} tokens exceeds max_positions {self.positions.num_embeddings - 1}")
        if self.prefix is not None and z is not None:
            x = torch.cat([self.prefix(z.to(emb.dtype))[:, None, :], emb], dim=1)  # (B, 1 + T, E)
            offset = 1
        else:
            x, offset = emb, 0
        x = x + self.positions(torch.arange(x.shape[1], device=x.device))[None].to(x.dtype)
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], device=x.device, dtype=x.dtype)
        for block in self.blocks:
            x = block(x, src_mask=mask, is_causal=True)
        return self.norm(x)[:, offset:]


def _clone(layer: nn.Module) -> nn.Module:
    import copy

    clone = copy.deepcopy(layer)
    for p in clone.parameters():  # fresh weights in each block, not copies of the first
        if p.dim() >= 2:
            nn.init.xavier_uniform_(p)
    return clone


class TextVAE(nn.Module):
    """Encoder q(z | x), prior N(0, I), autoregressive decoder p(x | z); a language model when latent_dim = 0."""

    def __init__(self, config: TextVAEConfig):
        super().__init__()
        if config.vocab_size == 0:
            raise ValueError("vocab_size is 0 (the tokenizer's size); set it before building the model")
        self.config = config
        self.specials = Specials.for_vocab(config.vocab_size)
        cfg = config
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=self.specials.pad)
        self.encoder = GRUEncoder(cfg) if cfg.latent_dim else None
        self.decoder: nn.Module = GRUDecoder(cfg) if cfg.decoder == "gru" else TransformerDecoder(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.decoder.out_features, cfg.vocab_size)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def dtype(self) -> torch.dtype:
        return self.head.weight.dtype

    # -- pieces ------------------------------------------------------------------------------------------

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sentences (B, T) with EOS, and their lengths (B,) -> posterior (mu, logvar), each (B, latent_dim), fp32."""
        if self.encoder is None:
            raise ValueError("this model has no latent (latent_dim = 0): it is a language model")
        return self.encoder(self.drop(self.embedding(tokens)), lengths)

    def decoder_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """BOS followed by the sentence without its last position: (B, T)."""
        bos = torch.full_like(tokens[:, :1], self.specials.bos)
        return torch.cat([bos, tokens[:, :-1]], dim=1)

    def logits(self, z: torch.Tensor | None, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced next-token logits (B, T, V) for decoder inputs (B, T) under latents (B, D)."""
        emb = self.drop(self.embedding(inputs))
        if isinstance(self.decoder, GRUDecoder):
            h0 = self.decoder.start(z, inputs.shape[0], emb.dtype, inputs.device)
            out, _ = self.decoder(emb, z, h0)
        else:
            out = self.decoder(emb, z)
        return self.head(self.drop(out))

    def log_likelihood(self, z: torch.Tensor | None, tokens: torch.Tensor, inputs: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """log p(x | z) per sentence (B,) in nats, fp32, summed over the tokens up to and including EOS."""
        logits = self.logits(z, self.decoder_inputs(tokens) if inputs is None else inputs)
        nll = F.cross_entropy(logits.float().transpose(1, 2), tokens, ignore_index=self.specials.pad,
                              reduction="none")  # (B, T)
        return -nll.sum(1)

    # -- training objective -----------------------------------------------------------------------------

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, kl_weight: float = 1.0) -> TextVAEOutput:
        """One-sample ELBO of sentences (B, T) padded with PAD; ``kl_weight`` is the annealing factor."""
        inputs = self.decoder_inputs(tokens)
        if self.training:
            inputs = word_dropout(inputs, self.config.word_dropout, self.specials)
        if self.encoder is None:
            rec = -self.log_likelihood(None, tokens, inputs).mean()
            return TextVAEOutput(loss=rec, rec=rec, kl=torch.zeros((), device=rec.device), mu=None, logvar=None)
        mu, logvar = self.encode(tokens, lengths)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterisation, (B, D) fp32
        rec = -self.log_likelihood(z, tokens, inputs).mean()
        kl_dims = gaussian_kl_per_dim(mu, logvar)  # (B, D)
        kl = kl_dims.sum(1).mean()
        loss = rec + kl_weight * free_bits_kl(kl_dims, self.config.free_bits) if self.training else rec + kl
        return TextVAEOutput(loss=loss, rec=rec, kl=kl, mu=mu, logvar=logvar)

    # -- step-by-step decoding (generation) -------------------------------------------------------------

    def start_decoding(self, z: torch.Tensor | None, batch: int) -> dict:
        """The decoding state for ``batch`` sentences under latents ``z`` (B, D) (None for the LM)."""
        device = self.head.weight.device
        if z is not None:
            z = z.to(device=device, dtype=self.dtype)
        state: dict = {"z": z, "inputs": torch.full((batch, 1), self.specials.bos, dtype=torch.long, device=device)}
        if isinstance(self.decoder, GRUDecoder):
            state["h"] = self.decoder.start(z, batch, self.dtype, device)
        return state

    def next_logits(self, state: dict) -> torch.Tensor:
        """Logits (B, V) for the token after ``state["inputs"]``; the GRU advances by one step, the Transformer
        re-reads the (short) prefix, which at sentence length costs less than keeping a cache."""
        if isinstance(self.decoder, GRUDecoder):
            emb = self.embedding(state["inputs"][:, -1:])
            out, state["h"] = self.decoder(emb, state["z"], state["h"])
        else:
            out = self.decoder(self.embedding(state["inputs"]), state["z"])[:, -1:]
        return self.head(out[:, -1]).float()

    def flops_per_token(self) -> float:
        """Training FLOPs per token, about 6 x the weights a token passes through (2 per MAC, backward twice)."""
        return 6.0 * sum(p.numel() for name, p in self.named_parameters() if not name.startswith("embedding"))


# ------------------------------------------------------------------------------------------------ registry

VARIANTS: dict[str, dict[str, object]] = {
    "text-vae": {},
    "text-vae-tiny": {"embed_dim": 16, "hidden": 24, "latent_dim": 4, "n_head": 2, "n_layer": 1},
    "text-vae-transformer": {"decoder": "transformer", "embed_dim": 128, "n_layer": 2, "n_head": 4},
    "text-vae-transformer-tiny": {"decoder": "transformer", "embed_dim": 16, "hidden": 24, "latent_dim": 4,
                                  "n_head": 2, "n_layer": 1},
    "text-lm-gru": {"latent_dim": 0},
    "text-lm-gru-tiny": {"embed_dim": 16, "hidden": 24, "latent_dim": 0},
}


def variant_defaults(name: str) -> dict[str, object]:
    """The config values a registered name stands for (the rest are :class:`TextVAEConfig`'s defaults)."""
    return dict(VARIANTS.get(name, {}))


def _build(name: str, kwargs: dict) -> TextVAE:
    return TextVAE(TextVAEConfig(**{**VARIANTS[name], **kwargs}))


@register_model("text-vae", family="text-vae")
def text_vae(**kwargs) -> TextVAE:
    """Sentence VAE (Bowman et al. 2016): bi-GRU encoder, GRU decoder fed z at every step; 256-d GRUs, latent 32."""
    return _build("text-vae", kwargs)


@register_model("text-vae-tiny", family="text-vae")
def text_vae_tiny(**kwargs) -> TextVAE:
    """A few-thousand-parameter sentence VAE for tests and smoke runs."""
    return _build("text-vae-tiny", kwargs)


@register_model("text-vae-transformer", family="text-vae")
def text_vae_transformer(**kwargs) -> TextVAE:
    """Sentence VAE with a 2-block causal Transformer decoder reading z as a prefix token."""
    return _build("text-vae-transformer", kwargs)


@register_model("text-vae-transformer-tiny", family="text-vae")
def text_vae_transformer_tiny(**kwargs) -> TextVAE:
    """The Transformer-decoder sentence VAE at test size."""
    return _build("text-vae-transformer-tiny", kwargs)


@register_model("text-lm-gru", family="text-vae")
def text_lm_gru(**kwargs) -> TextVAE:
    """The text-vae GRU decoder alone, no latent: the language-model baseline (exact NLL, KL 0)."""
    return _build("text-lm-gru", kwargs)


@register_model("text-lm-gru-tiny", family="text-vae")
def text_lm_gru_tiny(**kwargs) -> TextVAE:
    """The GRU language-model baseline at test size."""
    return _build("text-lm-gru-tiny", kwargs)

