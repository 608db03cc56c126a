"""Perplexity of texts under a scorer language model: a genchain GPT run, or a local Hugging Face causal LM.

PPL = exp(total negative log-likelihood / total scored tokens), pooled over all texts (a corpus perplexity,
so a long text weighs more than a short one). Each text is scored after a start-of-document context (the
tokenizer's end-of-text token, or the blank line that separates documents in a character dataset), so its
first token is predicted as a document opening. Texts longer than the model's context are scored with a
sliding window of stride half the context, as in the Hugging Face perplexity guide: every token is predicted
once, with at least half a context of history after the first window.

Perplexities are only comparable under the same scorer and tokenizer: a character model's PPL is per
character, a BPE model's per subword. The result says which scorer and how many tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from genchain import rundir
from genchain.data.tokenize import END_OF_TEXT
from genchain.data.tokens import DOC_SEPARATOR
from genchain.errors import InputError, RunDirError
from genchain.runtime import select_device, select_precision


class Scorer:
    """A causal LM as a function from token ids to next-token logits, with its tokenizer.

    Args:
        logits: maps a (B, T) long tensor to (B, T, V) logits.
        encode: text -> list of token ids (raises InputError for text the tokenizer cannot encode).
        start: the ids every text is scored after.
        context: the longest sequence ``logits`` takes.
        name: what the results call this scorer.
    """

    def __init__(self, logits, encode, start: list[int], context: int, name: str, device: torch.device,
                 autocast: torch.dtype | None):
        self.logits = logits
        self.encode = encode
        self.start = start
        self.context = context
        self.name = name
        self.device = device
        self.autocast = autocast

    @torch.inference_mode()
    def token_nll(self, ids: list[int]) -> tuple[float, int]:
        """Summed NLL (nats) of ``ids`` after ``self.start``, and how many tokens were scored."""
        full = self.start + ids
        prefix = len(self.start)
        stride = max(1, self.context // 2)
        total, scored, done = 0.0, 0, prefix  # tokens before ``done`` are predicted already (or are context)
        begin = 0
        while done < len(full):
            end = min(begin + self.context, len(full))
            window = torch.tensor([full[begin:end]], device=self.device)
            with torch.autocast(self.device.type, dtype=self.autocast or torch.bfloat16, enabled=bool(self.autocast)):
                logits = self.logits(window)[0, :-1].float()  # (T - 1, V): position t predicts t + 1
            targets = window[0, 1:]
            first = done - begin - 1  # the first target not yet scored
            nll = F.cross_entropy(logits[first:], targets[first:], reduction="sum")
            total += float(nll)
            scored += end - done
            done = end
            begin = max(0, end - self.context + stride) if end < len(full) else end
        return total, scored

    def perplexity(self, texts: Sequence[str]) -> dict:
        """Corpus perplexity of ``texts``; texts the tokenizer cannot encode (characters a char model never
        saw) are skipped and counted, empty texts add nothing."""
        total, tokens, skipped = 0.0, 0, 0
        for text in tqdm(texts, desc=f"perplexity ({self.name})", unit="text", leave=False,
                         disable=True if len(texts) < 50 else None):
            try:
                ids = self.encode(text)
            except InputError:
                skipped += 1
                continue
            if ids:
                nll, count = self.token_nll(ids)
                total += nll
                tokens += count
        if tokens == 0:
            return {"scorer": self.name, "perplexity": None, "tokens": 0, "skipped": skipped}
        return {"scorer": self.name, "perplexity": math.exp(total / tokens), "nll_per_token": total / tokens,
                "tokens": tokens, "skipped": skipped}


def load_scorer(path: str | Path, device: str = "auto", dtype: str = "auto") -> Scorer:
    """A genchain GPT run dir (card family "text") or a Hugging Face causal-LM directory (``config.json``)."""
    path = Path(path)
    if (path / rundir.CARD).is_file():
        return gpt_scorer(path, device, dtype)
    if (path / "config.json").is_file():
        return hf_scorer(path, device, dtype)
    raise RunDirError(f"scorer {path} is neither a genchain GPT run dir (card.json) nor a Hugging Face model "
                      "directory (config.json); pass --scorer RUN_DIR or a local HF causal-LM directory")


def _precision(device: str, dtype: str) -> tuple[torch.device, torch.dtype | None]:
    """The device, and the autocast dtype the rest of genchain would train and sample with (None: fp32)."""
    chosen = select_device(device)
    precision = select_precision(chosen, dtype)
    return chosen, None if precision == "fp32" else torch.float16 if precision == "fp16-mixed" else torch.bfloat16


def gpt_scorer(run_dir: str | Path, device: str = "auto", dtype: str = "auto") -> Scorer:
    """Score with a GPT run's best weights and the run's own tokenizer."""
    from genchain.data.tokenize import load_tokenizer
    from genchain.train.lm import load_gpt

    model, _ = load_gpt(run_dir)
    tokenizer = load_tokenizer(Path(run_dir) / rundir.TOKENIZER)
    chosen, autocast = _precision(device, dtype)
    model = model.to(chosen).eval()
    if tokenizer.eos_id is not None:
        start = [tokenizer.eos_id]
    else:
        try:
            start = tokenizer.encode(DOC_SEPARATOR).tolist()
        except InputError:  # a one-document corpus has no blank line in its vocabulary
            start = tokenizer.encode("\n").tolist() if "\n" in getattr(tokenizer, "chars", []) else []
    if not start:
        raise InputError(f"the tokenizer of {run_dir} has neither {END_OF_TEXT} nor a newline to start a text with")
    return Scorer(lambda ids: model(ids).logits, lambda text: tokenizer.encode(text).tolist(), start,
                  model.config.block_size, str(run_dir), chosen, autocast)


def hf_scorer(model_dir: str | Path, device: str = "auto", dtype: str = "auto") -> Scorer:
    """Score with a local ``transformers`` causal LM (``local_files_only``: nothing is fetched)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load a causal language model from {model_dir}: {err}") from err
    chosen, autocast = _precision(device, dtype)
    model = model.to(chosen).eval()
    start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start_id is None:
        raise InputError(f"the tokenizer of {model_dir} has no BOS or EOS token to start a text with")
    config = model.config
    context = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None) or 1024
    return Scorer(lambda ids: model(input_ids=ids).logits,
                  lambda text: tokenizer(text, add_special_tokens=False)["input_ids"], [start_id], int(context),
                  str(model_dir), chosen, autocast)
