"""Text generation from a GPT run: batched sampling with a KV cache, streaming, stop strings, seeds.

Inference owns no training code (diffusers' rule): :class:`TextGenerator` composes a trained model, its
tokenizer and :func:`sample_next`. One call decodes ``num`` continuations of a prompt as one batch; with a
seed, the same call returns the same text.

When a sequence outgrows the model's context (``block_size``), the cache is rebuilt from the last three
quarters of the context and decoding goes on: learned absolute positions rule out a rolling cache, and
rebuilding every quarter-block keeps the cost per token bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from genchain import rundir
from genchain.data.tokenize import END_OF_TEXT, Tokenizer, load_tokenizer
from genchain.errors import ConfigError
from genchain.models.gpt import GPT
from genchain.models.layers import can_pack_linears, pack_linears_for_cpu
from genchain.runtime import select_device, select_precision

if TYPE_CHECKING:
    from genchain.provenance.watermark_text import TextWatermark


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick each next token; defaults are nanoGPT's ``sample.py`` (temperature 0.8, top-k 200)."""

    max_new_tokens: int = 256
    temperature: float = 0.8
    top_k: int = 200  # 0 disables
    top_p: float = 1.0  # 1 disables
    repetition_penalty: float = 1.0  # 1 disables; > 1 discourages tokens already present (CTRL's rule)
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None
    watermark: TextWatermark | None = None  # the green-list bias (genchain.provenance.watermark_text), None: off

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"--temperature must be >= 0 (0 means greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"--top-k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"--repetition-penalty must be positive, got {self.repetition_penalty}")


def sample_next(logits: torch.Tensor, cfg: SamplingConfig, history: torch.Tensor | None,
                generator: torch.Generator | None) -> torch.Tensor:
    """Next token ids (B,) from last-position ``logits`` (B, V); ``history`` (B, L) feeds the penalty."""
    logits = logits.float()
    if cfg.repetition_penalty != 1.0 and history is not None and history.numel():
        seen = logits.gather(1, history)
        seen = torch.where(seen > 0, seen / cfg.repetition_penalty, seen * cfg.repetition_penalty)
        logits = logits.scatter(1, history, seen)
    if cfg.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / cfg.temperature
    if cfg.top_k and cfg.top_k < logits.size(-1):
        kth = torch.topk(logits, cfg.top_k, dim=-1).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative - sorted_logits.softmax(dim=-1) >= cfg.top_p  # keep the smallest prefix reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


class TextGenerator:
    """A trained GPT, its tokenizer, and the device and dtype to decode with."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, device: str = "auto", dtype: str = "auto"):
        if tokenizer.vocab_size > model.config.vocab_size:
            raise ConfigError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                              f"{model.config.vocab_size}; they do not belong together")
        self.device = select_device(device)
        precision = select_precision(self.device, dtype)
        self.dtype = {"fp32": torch.float32, "fp16-mixed": torch.float16}.get(precision, torch.bfloat16)
        self.model = model.to(self.device, self.dtype).eval()
        if can_pack_linears(self.device, self.dtype):
            pack_linears_for_cpu(self.model)
        self.tokenizer = tokenizer

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "auto", dtype: str = "auto") -> TextGenerator:
        from genchain.train.lm import load_gpt

        model, _ = load_gpt(run_dir)
        return cls(model, load_tokenizer(Path(run_dir) / rundir.TOKENIZER), device, dtype)

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of ``prompt``; an empty prompt starts from a newline (char) or end-of-text (BPE)."""
        if not prompt:
            prompt = END_OF_TEXT if self.tokenizer.eos_id is not None else "\n"
        ids = self.tokenizer.encode(prompt).tolist()
        if not ids:
            raise ConfigError("the prompt encodes to no tokens")
        return ids[-(self.model.config.block_size - 1):]

    @torch.inference_mode()  # lighter than no_grad: no version counters on the cache tensors
    def generate_ids(self, prompt_ids: list[int], num: int, cfg: SamplingConfig) -> Iterator[torch.Tensor]:
        """Yield the next token of each of ``num`` sequences (a (num,) tensor) until ``max_new_tokens``."""
        if num < 1:
            raise ConfigError(f"--num must be at least 1, got {num}")
        block = self.model.config.block_size
        generator = torch.Generator(self.device)
        generator.manual_seed(cfg.seed if cfg.seed is not None else int(torch.seed() % 2**63))
        context = torch.tensor([prompt_ids] * num, dtype=torch.long, device=self.device)  # (num, T)
        cache = self.model.new_cache(num, block, self.dtype)
        # 1. prefill the cache with the prompt
        logits = self.model(context, cache=cache).logits[:, -1, :]
        for _ in range(cfg.max_new_tokens):
            # 2. choose the next tokens and hand them out
            history = context if cfg.repetition_penalty != 1.0 else None
            if cfg.watermark is not None:  # before any sampling rule, greedy included, as in the paper
                logits = cfg.watermark.apply(logits, context[:, -1])
            token = sample_next(logits, cfg, history, generator)
            yield token
            context = torch.cat([context, token[:, None]], dim=1)
            # 3. feed them back, rebuilding the cache when the context window is full
            if cache.length >= block:
                cache.reset()
                keep = context[:, -(block * 3 // 4):]
                logits = self.model(keep, cache=cache).logits[:, -1, :]
            else:
                logits = self.model(token[:, None], cache=cache).logits[:, -1, :]

    def generate(self, prompt: str, num: int = 1, cfg: SamplingConfig = SamplingConfig()) -> list[str]:
        """``num`` continuations of ``prompt`` (the prompt itself is not repeated in the result)."""
        prompt_ids = self.encode_prompt(prompt)
        generated: list[list[int]] = [[] for _ in range(num)]
        finished = [False] * num
        for step in self.generate_ids(prompt_ids, num, cfg):
            for i, token in enumerate(step.tolist()):
                if finished[i]:
                    continue
                if token == self.tokenizer.eos_id:
                    finished[i] = True
                    continue
                generated[i].append(token)
                if cfg.stop and any(s in self.tokenizer.decode(generated[i][-64:]) for s in cfg.stop):
                    finished[i] = True
            if all(finished):
                break
        return [cut_at_stop(self.tokenizer.decode(ids), cfg.stop) for ids in generated]

    def stream(self, prompt: str, cfg: SamplingConfig = SamplingConfig()) -> Iterator[str]:
        """Text of one continuation, piece by piece as tokens are sampled.

        Text is held back while it could still be the start of a stop string, or while the last bytes
        are an incomplete UTF-8 character (byte-level BPE can split one across tokens).
        """
        ids: list[int] = []
        emitted = 0
        hold = max((len(s) for s in cfg.stop), default=1) - 1
        for step in self.generate_ids(self.encode_prompt(prompt), 1, cfg):
            token = int(step[0])
            if token == self.tokenizer.eos_id:
                break
            ids.append(token)
            text = self.tokenizer.decode(ids)
            cut = cut_at_stop(text, cfg.stop)
            if len(cut) < len(text):
                yield cut[emitted:]
                return
            ready = len(text) - hold
            if text.endswith("\ufffd"):
                continue
            if ready > emitted:
                yield text[emitted:ready]
                emitted = ready
        text = cut_at_stop(self.tokenizer.decode(ids), cfg.stop)
        if len(text) > emitted:
            yield text[emitted:]


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    """``text`` up to the earliest of the stop strings (all of it when none occurs)."""
    cut = len(text)
    for stop in stops:
        index = text.find(stop)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]
