"""Sentences for the sentence VAE: splits, the tokenizer with its four specials, and padded token tensors.

A genchain text dataset (column ``text``) is read whole: sentence corpora are small (the fortunes are 15k rows).
Splits: ``validation`` (or ``val``) and ``test`` are used when the dataset has them; a missing one is carved out of
train by a hash of the text, so the assignment is deterministic, the same on every machine and every resume, and
duplicate sentences always land in the same split (no test sentence is also a training sentence).

Whitespace is collapsed to single spaces by default: fortunes are laid out with newlines and tabs that a sentence
model should not spend its capacity on. Sentences longer than ``max_len`` tokens (EOS included) are dropped, not
cut: a cut sentence would teach the decoder to stop mid-phrase. How many were dropped goes into the run's card.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genchain.data.dataset import Dataset
from genchain.data.tokenize import BPETokenizer, CharTokenizer, Tokenizer
from genchain.errors import InputError
from genchain.models.text_vae import SPECIAL_TOKENS, Specials


class SentenceCodec:
    """The run's tokenizer plus PAD, BOS, EOS and UNK appended after its vocabulary (ids V..V+3).

    The base tokenizer is what ``tokenizer.json`` holds, so ``genchain watermark detect`` and anything else that
    loads it get the same ids for text as the model; the specials never appear in text.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.vocab_size + len(SPECIAL_TOKENS)
        self.specials = Specials.for_vocab(self.vocab_size)
        # characters unseen in training become UNK (byte-level BPE has no unknowns)
        self._chars = {c: i for i, c in enumerate(tokenizer.chars)} if isinstance(tokenizer, CharTokenizer) else None

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without EOS."""
        if self._chars is not None:
            unk = self.specials.unk
            return [[self._chars.get(c, unk) for c in text] for text in texts]
        assert isinstance(self.tokenizer, BPETokenizer)
        return [enc.ids for enc in self.tokenizer.hf.encode_batch(texts)]

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` up to the first EOS; PAD, BOS and UNK are left out."""
        kept = []
        for i in ids:
            if i == self.specials.eos:
                break
            if i < self.tokenizer.vocab_size:
                kept.append(i)
        return self.tokenizer.decode(kept)


def train_tokenizer(texts: list[str], kind: str, bpe_vocab: int) -> Tokenizer:
    """A tokenizer fitted to the training sentences: byte-level BPE of ``bpe_vocab`` tokens, or characters."""
    if kind == "char":
        return CharTokenizer.train(texts)
    return BPETokenizer.train(texts, bpe_vocab)


@dataclass
class SentenceSplit:
    """One split as a padded tensor: row i is sentence i's tokens, then EOS, then PAD up to ``max_len``."""

    tokens: torch.Tensor  # (N, max_len) int64
    lengths: torch.Tensor  # (N,) tokens incl. EOS
    texts: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def batch(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``index`` trimmed to their longest, rounded up to a multiple of 8: (B, T) tokens, (B,) lengths.

        The rounding keeps the number of distinct shapes small (6 for max_len 48): oneDNN builds its fused RNN
        kernels per shape, and a new length every batch would rebuild them every step.
        """
        lengths = self.lengths[index]
        width = min(self.tokens.shape[1], -(-int(lengths.max()) // 8) * 8)
        return self.tokens[index][:, :width], lengths


@dataclass
class SentenceData:
    codec: SentenceCodec
    splits: dict[str, SentenceSplit]
    counts: dict[str, Any] = field(default_factory=dict)  # for the card: rows, dropped, where each split came from


def read_texts(data_dir: str | Path, normalize_whitespace: bool) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Texts of train, val and test, and where each came from (a dataset split, or "hash of train")."""
    dataset = Dataset(data_dir)
    if "text" not in dataset.features:
        raise InputError(f"{data_dir} has no \"text\" column (it is a {dataset.modality} dataset with "
                         f"{', '.join(dataset.features)}); ingest text with `genchain data ingest SRC --kind text`")
    if "train" not in dataset.splits:
        raise InputError(f"{data_dir} has no train split (it has {', '.join(dataset.splits)}); ingest it again")

    def load(split: str) -> list[str]:
        texts = [t for t in dataset.column("text", split) if isinstance(t, str)]
        texts = [" ".join(t.split()) if normalize_whitespace else t.strip() for t in texts]
        return [t for t in texts if t]

    found = {"val": next((s for s in ("validation", "val") if s in dataset.splits), None),
             "test": "test" if "test" in dataset.splits else None}
    texts = {"train": load("train")}
    origin = {"train": "train"}
    for name, split in found.items():
        if split is not None:
            texts[name], origin[name] = load(split), split
    return texts, origin


def hash_fraction(text: str) -> float:
    """A number in [0, 1) fixed by the text alone: the split a sentence gets never depends on order or seed."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2**64


def derive_splits(texts: dict[str, list[str]], origin: dict[str, str], val_fraction: float,
                  test_fraction: float) -> None:
    """Carve missing val/test splits out of train by hash (in place)."""
    wanted = [(name, frac) for name, frac in (("val", val_fraction), ("test", test_fraction)) if name not in texts]
    if not wanted:
        return
    keep: list[str] = []
    carved: dict[str, list[str]] = {name: [] for name, _ in wanted}
    for text in texts["train"]:
        u, low = hash_fraction(text), 0.0
        for name, frac in wanted:
            if low <= u < low + frac:
                carved[name].append(text)
                break
            low += frac
        else:
            keep.append(text)
    texts["train"] = keep
    for name, frac in wanted:
        texts[name] = carved[name]
        origin[name] = f"{frac:.0%} of train by text hash"


def to_split(codec: SentenceCodec, texts: list[str], max_len: int) -> tuple[SentenceSplit, int]:
    """The padded split of the texts that fit in ``max_len`` tokens with EOS, and how many did not."""
    ids = codec.encode_batch(texts)
    kept = [(text, seq) for text, seq in zip(texts, ids, strict=True) if 0 < len(seq) + 1 <= max_len]
    tokens = torch.full((len(kept), max_len), codec.specials.pad, dtype=torch.long)
    lengths = torch.zeros(len(kept), dtype=torch.long)
    for row, (_, seq) in enumerate(kept):
        tokens[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        tokens[row, len(seq)] = codec.specials.eos
        lengths[row] = len(seq) + 1
    return SentenceSplit(tokens, lengths, [text for text, _ in kept]), len(texts) - len(kept)


def load_sentence_data(data_dir: str | Path, *, max_len: int, normalize_whitespace: bool, val_fraction: float,
                       test_fraction: float, tokenizer: Tokenizer | None = None, tokenizer_kind: str = "bpe",
                       bpe_vocab: int = 2048) -> SentenceData:
    """Read, split and tokenize a text dataset; ``tokenizer`` None fits a new one to the train split."""
    texts, origin = read_texts(data_dir, normalize_whitespace)
    derive_splits(texts, origin, val_fraction, test_fraction)
    if not texts["train"]:
        raise InputError(f"{data_dir} has no non-empty training text; a sentence VAE needs sentences to learn from")
    codec = SentenceCodec(tokenizer or train_tokenizer(texts["train"], tokenizer_kind, bpe_vocab))
    splits, counts = {}, {"max_len": max_len}
    for name in ("train", "val", "test"):
        splits[name], dropped = to_split(codec, texts[name], max_len)
        counts[name] = {"from": origin[name], "sentences": len(splits[name]), "dropped_longer_than_max_len": dropped}
    for name in ("train", "val"):
        if len(splits[name]) == 0:
            raise InputError(f"the {name} split of {data_dir} has no sentence of at most {max_len} tokens "
                             f"({counts[name]['dropped_longer_than_max_len']} longer ones were dropped); raise "
                             "max_len or add shorter texts")
    return SentenceData(codec, splits, counts)
