"""Tokenizers for text: character-level (nanoGPT's) and byte-level BPE (GPT-2's, trained with HF ``tokenizers``).

Both save to one ``tokenizer.json``: the BPE one in Hugging Face's format (so ``transformers`` can load it),
the character one as ``{"genchain_char_tokenizer": 1, "chars": [...]}``. :func:`load_tokenizer` tells them
apart. Character ids are the sorted unique characters of the corpus, exactly as nanoGPT's
``shakespeare_char/prepare.py`` assigns them, so token files are interchangeable with nanoGPT's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from genchain.errors import InputError
from genchain.fileio import atomic_write_text

END_OF_TEXT = "<|endoftext|>"


class Tokenizer(Protocol):
    kind: str
    vocab_size: int
    eos_id: int | None

    def encode(self, text: str) -> np.ndarray: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def to_json(self) -> str: ...


class CharTokenizer:
    """One token per Unicode character; the vocabulary is the corpus's character set."""

    kind = "char"
    eos_id = None

    def __init__(self, chars: list[str]):
        self.chars = chars
        self.vocab_size = len(chars)
        self._codepoints = np.array([ord(c) for c in chars], dtype=np.uint32)  # sorted, for searchsorted

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        charset: set[str] = set()
        for text in texts:
            charset.update(text)
        if not charset:
            raise InputError("the corpus is empty: no characters to build a vocabulary from")
        return cls(sorted(charset))

    def encode(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(self._codepoints, codes)
        ids_clipped = np.minimum(ids, self.vocab_size - 1)
        unknown = self._codepoints[ids_clipped] != codes
        if unknown.any():
            missing = sorted({chr(c) for c in codes[unknown]})
            raise InputError(f"characters not in the tokenizer's vocabulary: {''.join(missing)!r}; "
                             "the model was trained on a corpus without them")
        return ids.astype(np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"genchain_char_tokenizer": 1, "chars": self.chars}, ensure_ascii=False)


class BPETokenizer:
    """Byte-level BPE as in GPT-2: any UTF-8 text encodes, so there are no unknown tokens."""

    kind = "bpe"

    def __init__(self, tokenizer):  # a tokenizers.Tokenizer
        self.hf = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        self.eos_id = tokenizer.token_to_id(END_OF_TEXT)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size < 257:
            raise InputError(f"--vocab-size {vocab_size} is too small for byte-level BPE; use at least 257")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    def encode(self, text: str) -> np.ndarray:
        return np.array(self.hf.encode(text).ids, dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=False)

    def to_json(self) -> str:
        return self.hf.to_str()


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> None:
    atomic_write_text(path, tokenizer.to_json())


def load_tokenizer(path: str | Path) -> Tokenizer:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"tokenizer file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"tokenizer file {path} is corrupt ({err})") from err
    if "genchain_char_tokenizer" in data:
        return CharTokenizer(list(data["chars"]))
    from tokenizers import Tokenizer as HFTokenizer

    try:
        return BPETokenizer(HFTokenizer.from_str(text))
    except Exception as err:  # tokenizers raises a bare Exception on bad files
        raise InputError(f"tokenizer file {path} is neither a genchain nor a Hugging Face tokenizer ({err})") from err
