"""Text backends for the apps: a local ``transformers`` causal LM, one of our GPT run dirs, or a LoRA run.

All answer the same question -- N sampled continuations of a prompt, each with its mean per-token
log-likelihood -- so the apps can rank candidates without knowing which model wrote them. A LoRA run
(``genchain train gpt --init BASE --lora ...``) loads as its base with the adapter merged in, so it samples as
fast as the base itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genchain.errors import InputError
from genchain.fileio import sha256_file
from genchain.generate.text import SamplingConfig, TextGenerator, sample_next


@dataclass(frozen=True)
class Candidate:
    """One sampled text and its mean log-probability per generated token (higher: the model finds it likelier)."""

    text: str
    loglik: float


class HFBackend:
    """A causal LM in a local ``transformers`` directory (or a GGUF file inside one)."""

    def __init__(self, model, tokenizer, name: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.context = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)

    @classmethod
    def from_dir(cls, path: str | Path) -> HFBackend:
        model, tokenizer = load_hf_dir(path)
        return cls(model, tokenizer, str(path))

    @classmethod
    def from_lora_run(cls, run_dir: str | Path) -> HFBackend:
        model, tokenizer = load_lora_run(run_dir)
        return cls(model, tokenizer, str(run_dir))

    def render(self, system: str, user: str) -> str:
        """The chat template when the tokenizer has one (instruct models need it), else plain text."""
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{system}\n\n{user}\n"

    @torch.inference_mode()
    def sample(self, prompt: str, num: int, cfg: SamplingConfig) -> list[Candidate]:
        """``num`` continuations of ``prompt`` in one batch, seeded, each with its mean token log-likelihood."""
        ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        if ids.shape[1] + cfg.max_new_tokens > self.context:
            raise InputError(f"the prompt is {ids.shape[1]} tokens; with {cfg.max_new_tokens} new tokens it exceeds "
                             f"the model's context of {self.context}; shorten the brief or lower max_new_tokens")
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        out = self.model.generate(
            ids.repeat(num, 1), attention_mask=torch.ones(num, ids.shape[1], dtype=torch.long),
            do_sample=cfg.temperature > 0, temperature=cfg.temperature or None, top_k=cfg.top_k or None,
            top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, pad_token_id=pad,
            output_logits=True, return_dict_in_generate=True)
        new = out.sequences[:, ids.shape[1]:]
        # the raw logits (before temperature and top-k): the model's own likelihood, no second forward pass
        logits = torch.stack(out.logits, dim=1).float()  # (num, new, vocab)
        logp = torch.log_softmax(logits, -1).gather(-1, new[..., None])[..., 0]
        eos = self.tokenizer.eos_token_id
        result = []
        for row, lp in zip(new.tolist(), logp, strict=True):
            n = row.index(eos) if eos in row else len(row)
            text = self.tokenizer.decode(row[:n], skip_special_tokens=True).strip()
            result.append(Candidate(text, float(lp[:max(n, 1)].mean())))
        return result


class GPTBackend:
    """One of our GPT run dirs: plain-text prompt (no chat template), likelihood rescored with the same model."""

    def __init__(self, run_dir: str | Path):
        self.gen = TextGenerator.from_run(run_dir, device="cpu", dtype="fp32")
        self.name = str(run_dir)
        self.context = self.gen.model.config.block_size

    def render(self, system: str, user: str) -> str:
        return f"{system}\n{user}\n"

    @torch.inference_mode()
    def sample(self, prompt: str, num: int, cfg: SamplingConfig) -> list[Candidate]:
        ids = self.gen.tokenizer.encode(prompt).tolist()
        if len(ids) >= self.context:
            raise InputError(f"the prompt is {len(ids)} tokens but the run's context is {self.context}; "
                             "shorten the brief")
        texts = self.gen.generate(prompt, num, cfg)
        result = []
        for text in texts:
            new = self.gen.tokenizer.encode(text).tolist()[: self.context - len(ids)]
            if not new:
                result.append(Candidate(text.strip(), float("-inf")))
                continue
            seq = torch.tensor([ids + new])
            logits = self.gen.model(seq[:, :-1]).logits[0, len(ids) - 1:].float()
            logp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(new)[:, None])[:, 0]
            result.append(Candidate(text.strip(), float(logp.mean())))
        return result


def load_hf_dir(path: str | Path):
    """(model in fp32, tokenizer) from a transformers directory, with an error a person can act on."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise InputError(f"backend {path} is not a directory; give a run dir, a transformers model dir or smollm2")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load a causal LM from {path} ({err}); give a transformers model dir") from err
    return model, tokenizer


def load_base(spec: str) -> tuple[Any, Any, dict[str, str]]:
    """(model, tokenizer, record) of a pretrained base: ``smollm2`` or a transformers dir. The record is what a
    LoRA run stores to find and check its base again (for a directory: its path and the weights' sha256)."""
    if spec == "smollm2":
        from genchain.generate.smollm2 import smollm2_model_dir, smollm2_record

        model, tokenizer = load_hf_dir(smollm2_model_dir())
        return model, tokenizer, smollm2_record()
    model, tokenizer = load_hf_dir(spec)
    weights = sorted(Path(spec).glob("*.safetensors")) or sorted(Path(spec).glob("*.bin"))
    return model, tokenizer, {"kind": "hf_dir", "path": str(Path(spec).resolve()),
                              "weights_sha256": sha256_file(weights[0]) if weights else ""}


def load_lora_run(run_dir: str | Path):
    """(model with the adapter merged in, tokenizer) of a LoRA run: its ``merged/`` dir when it has one, else the
    recorded base (checked to be the same weights) plus ``adapter/``."""
    from genchain import rundir
    from genchain.train.lora import FAMILY, MERGED, load_adapter

    card = rundir.require_family(run_dir, FAMILY)
    if card.get("merged") and (Path(run_dir) / MERGED / "config.json").is_file():
        return load_hf_dir(Path(run_dir) / MERGED)
    base = card.get("base", {})
    model, tokenizer, record = load_base(base.get("spec", ""))
    stored = {k: v for k, v in base.items() if k.endswith("sha256")}
    if any(record.get(k) != v for k, v in stored.items()):
        raise InputError(f"the base {base.get('spec')} has changed since {run_dir} was trained on it (sha256 "
                         "differs); restore that base or train the adapter again")
    return load_adapter(model, run_dir).merge_and_unload(), tokenizer


class HFTextGenerator(TextGenerator):
    """``genchain generate text`` over a transformers model (a LoRA run): :class:`TextGenerator`'s sampling,
    stop strings, streaming and watermark, with the model's own KV cache underneath."""

    def __init__(self, model, tokenizer):  # noqa: D107  (TextGenerator's init expects one of our GPTs)
        self.model = model.eval()
        self.tokenizer = _TokenizerView(tokenizer)
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.context = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)

    def encode_prompt(self, prompt: str) -> list[int]:
        ids = self.tokenizer.encode(prompt or (self.tokenizer.hf.bos_token or "\n")).tolist()
        if len(ids) >= self.context:
            raise InputError(f"the prompt is {len(ids)} tokens but the model's context is {self.context}; "
                             "shorten it")
        return ids

    @torch.inference_mode()
    def generate_ids(self, prompt_ids: list[int], num: int, cfg: SamplingConfig) -> Iterator[torch.Tensor]:
        """Yield the next token of each of ``num`` sequences until ``max_new_tokens`` or the context is full."""
        generator = torch.Generator().manual_seed(cfg.seed if cfg.seed is not None else int(torch.seed() % 2**63))
        context = torch.tensor([prompt_ids] * num, dtype=torch.long)
        out = self.model(input_ids=context, use_cache=True)
        for _ in range(min(cfg.max_new_tokens, self.context - len(prompt_ids))):
            logits = out.logits[:, -1, :].float()
            if cfg.watermark is not None:
                logits = cfg.watermark.apply(logits, context[:, -1])
            token = sample_next(logits, cfg, context if cfg.repetition_penalty != 1.0 else None, generator)
            yield token
            context = torch.cat([context, token[:, None]], dim=1)
            out = self.model(input_ids=token[:, None], past_key_values=out.past_key_values, use_cache=True)


class _TokenizerView:
    """The three things :class:`TextGenerator` asks of our tokenizers, answered by a transformers one."""

    def __init__(self, hf):
        self.hf = hf
        self.eos_id = hf.eos_token_id
        self.vocab_size = len(hf)

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor(self.hf(text, add_special_tokens=False).input_ids, dtype=torch.long)

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids, skip_special_tokens=True)


def load_text_generator(run_dir: str | Path, device: str = "auto", dtype: str = "auto") -> TextGenerator:
    """The generator ``genchain generate text --run`` needs: our GPT's, or a LoRA run's (on the CPU in fp32)."""
    from genchain import rundir
    from genchain.train.lora import FAMILY

    if rundir.read_card(run_dir).get("family") == FAMILY:
        return HFTextGenerator(*load_lora_run(run_dir))
    return TextGenerator.from_run(run_dir, device=device, dtype=dtype)


def load_backend(spec: str) -> HFBackend | GPTBackend:
    """``smollm2``, a GPT run dir or LoRA run dir (has our ``card.json``) or a transformers model dir."""
    if spec == "smollm2":
        from genchain.generate.smollm2 import load_smollm2

        return load_smollm2()
    path = Path(spec)
    if not path.is_dir():
        raise InputError(f"unknown backend {spec!r}: give smollm2, a GPT run dir or a transformers model directory")
    from genchain import rundir

    if (path / rundir.CARD).is_file():  # a genchain run; HF dirs also have a tokenizer.json
        from genchain.train.lora import FAMILY

        if rundir.read_card(path).get("family") == FAMILY:
            return HFBackend.from_lora_run(path)
        return GPTBackend(path)
    return HFBackend.from_dir(path)
