"""GPT-2 language model (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners").

The architecture is GPT-2's exactly -- pre-LayerNorm blocks, learned absolute positions, tanh-GELU MLP,
tied input/output embeddings, optional biases -- so a checkpoint maps one-to-one onto a Hugging Face
``GPT2LMHeadModel`` (see ``genchain.interop.hf``). Two choices differ from nanoGPT's ``model.py`` and both are
about CPU speed:

* attention dropout is its own knob (``attn_dropout``, default 0). Any non-zero ``dropout_p`` pushes
  ``scaled_dot_product_attention`` off its fused kernel onto the materialised (B, nh, T, T) path, which
  on CPU costs more than the rest of the block. ``dropout`` still regularises embeddings and both residual
  branches, where nanoGPT also applies it, with the fast CPU kernel of :class:`genchain.models.layers.Dropout`.
* ``attention="auto"`` trains short sequences on CPU with two bf16 matmuls
  (:func:`~genchain.models.layers.causal_attention_math`) and uses ``scaled_dot_product_attention``
  everywhere else; ``activation="gelu"`` (exact, as nanoGPT) is the default because its bf16 kernel is
  about twice as fast on CPU as GPT-2's tanh form, which ``activation="gelu_tanh"`` keeps for imported
  GPT-2 checkpoints.
* generation uses a pre-allocated KV cache (:class:`KVCache`), so each new token costs one position's work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
from torch.nn import functional as F

from genchain.models.layers import Dropout, causal_attention_math
from genchain.models.registry import register_model

Activation = Literal["gelu", "gelu_tanh"]
AttentionImpl = Literal["auto", "sdpa", "math"]
# Above this length the (T, T) score matrices of the math path cost more memory than its speed is worth.
MATH_ATTENTION_MAX_LEN = 512


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT. Field names follow nanoGPT so its users can reuse their configs."""

    vocab_size: int = 50304
    block_size: int = 256
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    attn_dropout: float = 0.0
    bias: bool = True
    layer_norm_epsilon: float = 1e-5
    activation: Activation = "gelu"
    attention: AttentionImpl = "auto"

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("dropout", "attn_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.activation not in ("gelu", "gelu_tanh"):
            raise ValueError(f"activation must be gelu or gelu_tanh, got {self.activation!r}")
        if self.attention not in ("auto", "sdpa", "math"):
            raise ValueError(f"attention must be auto, sdpa or math, got {self.attention!r}")


@dataclass
class GPTOutput:
    """What :meth:`GPT.forward` returns; ``loss`` is set when targets were given (the engine reads it)."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None


class KVCache:
    """Keys and values of every layer for positions ``[0, length)``, pre-allocated to ``max_len``.

    Pre-allocation keeps decoding free of ``torch.cat`` copies, whose cost grows with the sequence. Keys are
    stored transposed, (hs, max_len) per head, so the decode step's ``q @ k^T`` reads a prefix of each
    row in place; with (max_len, hs) rows, bmm copies the whole prefix first, which costs more than the
    product itself.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device: torch.device, dtype: torch.dtype):
        head_dim = config.n_embd // config.n_head
        self.k_t = torch.empty((config.n_layer, batch_size, config.n_head, head_dim, max_len), device=device,
                               dtype=dtype)
        self.v = torch.empty((config.n_layer, batch_size, config.n_head, max_len, head_dim), device=device,
                             dtype=dtype)
        self.max_len = max_len
        self.length = 0

    def reset(self) -> None:
        self.length = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.attn_dropout = config.attn_dropout
        self.attention = config.attention
        mask_len = min(config.block_size, MATH_ATTENTION_MAX_LEN)
        causal = torch.full((mask_len, mask_len), float("-inf")).triu(1)
        self.register_buffer("causal_mask", causal, persistent=False)  # (T, T): 0 on and below the diagonal

    def _use_math_path(self, x: torch.Tensor) -> bool:
        if self.attention != "auto":
            return self.attention == "math"
        return (x.device.type == "cpu" and x.size(1) <= MATH_ATTENTION_MAX_LEN
                and not (self.training and self.attn_dropout > 0))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            y = self._attend_with_cache(q, k, v, cache, layer)
        elif self._use_math_path(x):
            y = causal_attention_math(q, k, v, self.causal_mask)  # (B, nh, T, hs)
        else:
            dropout_p = self.attn_dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def _attend_with_cache(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache,
                           layer: int) -> torch.Tensor:
        """Append k, v at ``cache.length`` and attend over everything cached; (B, nh, T, hs) in and out."""
        B, nh, T, hs = q.shape
        start = cache.length
        if start > 0 and T > 1:  # would need a causal mask offset by ``start``; generation never asks for it
            raise ValueError("KVCache only supports a prefill into an empty cache, then one token at a time")
        cache.k_t[layer, :, :, :, start : start + T] = k.transpose(-2, -1)
        cache.v[layer, :, :, start : start + T] = v
        end = start + T
        if T == 1 and q.device.type == "cpu":
            # One query per sequence: two small batched matmuls beat the CPU flash kernel, whose tiling is
            # built for long queries (5.5 ms against 0.4 ms at batch 32 with 100 cached positions). The
            # cache's (B, nh) dims merge into one batch dim without a copy, so bmm reads it in place.
            keys_t = cache.k_t[layer].view(B * nh, hs, cache.max_len)[:, :, :end]  # (B*nh, hs, L)
            values = cache.v[layer].view(B * nh, cache.max_len, hs)[:, :end]  # (B*nh, L, hs)
            scores = torch.bmm(q.reshape(B * nh, 1, hs) * hs**-0.5, keys_t)  # (B*nh, 1, L)
            return torch.bmm(scores.softmax(dim=-1), values).view(B, nh, 1, hs)
        keys = cache.k_t[layer, :, :, :, :end].transpose(-2, -1)  # (B, nh, L, hs)
        values = cache.v[layer, :, :, :end]
        return F.scaled_dot_product_attention(q, keys, values, is_causal=T > 1)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = Dropout(config.dropout)
        self.approximate = "tanh" if config.activation == "gelu_tanh" else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only Transformer language model; ``forward`` returns :class:`GPTOutput`."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as in GPT-2
        self.apply(self._init_weights)
        # GPT-2 scales the init of residual projections by 1/sqrt(2 * n_layer) so the residual stream's
        # variance does not grow with depth.
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; position embeddings are excluded by default, as in nanoGPT's MFU estimate."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs (forward + backward) per token, from the PaLM appendix B estimate."""
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.n_embd * seq_len

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> GPTOutput:
        """Logits for ``idx`` (B, T); with ``targets`` the mean cross-entropy too (ignore index -1).

        With a ``cache`` the positions start at ``cache.length`` and the cache advances by T, and only the
        last position's logits are computed: that is all sampling needs.
        """
        B, T = idx.size()
        start = cache.length if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of length {start + T} exceeds block_size {self.config.block_size}")
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, cache, layer)
        x = self.transformer.ln_f(x)
        if cache is not None:
            cache.length += T
        if targets is None:
            return GPTOutput(logits=self.lm_head(x[:, [-1], :]) if cache is not None else self.lm_head(x))
        logits = self.lm_head(x)  # (B, T, vocab)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        return GPTOutput(logits=logits, loss=loss)

    def new_cache(self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """An empty KV cache on this model's device, in the dtype the activations will have."""
        ref = self.transformer.wte.weight
        return KVCache(self.config, batch_size, max_len or self.config.block_size, ref.device, dtype or ref.dtype)


@register_model("gpt", family="text")
def gpt(**kwargs) -> GPT:
    """A GPT of any shape, given GPTConfig fields."""
    return GPT(GPTConfig(**kwargs))


@register_model("gpt-tiny", family="text")
def gpt_tiny(**kwargs) -> GPT:
    """Two layers, 32 wide: for tests, trains a step in milliseconds."""
    return GPT(GPTConfig(**{"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, **kwargs}))


@register_model("gpt-shakespeare-char", family="text")
def gpt_shakespeare_char(**kwargs) -> GPT:
    """nanoGPT's train_shakespeare_char model: 6 layers, 6 heads, 384 wide, block 256."""
    return GPT(GPTConfig(**{"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, **kwargs}))
