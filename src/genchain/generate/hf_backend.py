"""Text backends for the apps: a local ``transformers`` causal LM, or one of our GPT run dirs.

Both answer the same question -- N sampled continuations of a prompt, each with its mean per-token
log-likelihood -- so the apps can rank candidates without knowing which model wrote them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from genchain.errors import InputError
from genchain.generate.text import SamplingConfig, TextGenerator


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
    def from_dir(cls, path: str | Path, gguf_file: str | None = None) -> HFBackend:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not path.is_dir():
            raise InputError(f"backend {path} is not a directory; give a run dir, a transformers model dir or smollm2")
        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
        except (OSError, ValueError) as err:
            raise InputError(f"cannot load a causal LM from {path} ({err}); give a transformers model dir") from err
        return cls(model, tokenizer, str(path))

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


def load_backend(spec: str) -> HFBackend | GPTBackend:
    """``smollm2``, a GPT run dir (has our ``card.json``) or a transformers model dir."""
    if spec == "smollm2":
        from genchain.generate.smollm2 import load_smollm2

        return load_smollm2()
    path = Path(spec)
    if not path.is_dir():
        raise InputError(f"unknown backend {spec!r}: give smollm2, a GPT run dir or a transformers model directory")
    from genchain import rundir

    if (path / rundir.CARD).is_file():  # a genchain run; HF dirs also have a tokenizer.json
        return GPTBackend(path)
    return HFBackend.from_dir(path)
