"""Easy Data Augmentation for text (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for Boosting
Performance on Text Classification Tasks"): random swap, random deletion and random insertion of words.

Differences from the paper, and why:

* Random insertion inserts a copy of a word already in the sentence. The paper inserts a WordNet synonym;
  there is no synonym resource offline (and none for Chinese), so synonym replacement is left out entirely.
* The operations are applied in turn (swap, then delete, then insert) to each copy, rather than one
  operation per copy, so a recipe's three rates read as independent knobs.
* CJK-aware: Chinese and Japanese have no spaces, so each Han/kana character is a token; other text splits on
  whitespace. A redaction placeholder such as ``[EMAIL]`` is one token and is never split. Punctuation-only
  tokens stay where they are (moving a full stop is noise, not a paraphrase).
* Lines are augmented one by one, so the line structure of poems and lists survives; every non-empty line
  keeps at least one word, so a non-empty text never becomes empty. Leading indentation is kept; other runs
  of whitespace become one space.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

# A placeholder, one CJK ideograph/kana/CJK punctuation mark, or a run of anything else up to whitespace/CJK.
_CJK = r"\u2e80-\u2fdf\u3001-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_TOKEN = re.compile(rf"\[[A-Z_]+\]|[{_CJK}]|[^\s{_CJK}]+")
_IS_CJK = re.compile(rf"[{_CJK}]")


@dataclass(frozen=True)
class Token:
    text: str
    cjk: bool    # joined to a CJK neighbour without a space
    fixed: bool  # punctuation: never swapped, deleted or inserted


def tokenize(line: str) -> list[Token]:
    """The line's tokens: placeholders whole, CJK characters one by one, other words split on whitespace."""
    tokens = []
    for match in _TOKEN.finditer(line):
        text = match.group()
        tokens.append(Token(text, cjk=bool(_IS_CJK.fullmatch(text)),
                            fixed=all(unicodedata.category(c).startswith("P") for c in text)))
    return tokens


def detokenize(tokens: list[Token]) -> str:
    """Join with a space, except between two CJK tokens (Chinese is written without spaces)."""
    parts = []
    for i, token in enumerate(tokens):
        if i and not (token.cjk and tokens[i - 1].cjk):
            parts.append(" ")
        parts.append(token.text)
    return "".join(parts)


def random_swap(tokens: list[Token], rate: float, rng: np.random.Generator) -> list[Token]:
    """Swap ``max(1, rate * n)`` random pairs of words; punctuation keeps its place."""
    movable = [i for i, t in enumerate(tokens) if not t.fixed]
    out = list(tokens)
    if rate <= 0 or len(movable) < 2:
        return out
    for _ in range(max(1, int(rate * len(movable)))):
        a, b = rng.choice(movable, size=2, replace=False)
        out[a], out[b] = out[b], out[a]
    return out


def random_delete(tokens: list[Token], rate: float, rng: np.random.Generator) -> list[Token]:
    """Drop each word with probability ``rate``; if every word would go, keep one at random."""
    movable = [i for i, t in enumerate(tokens) if not t.fixed]
    if rate <= 0 or not movable:
        return list(tokens)
    drop = {i for i in movable if rng.random() < rate}
    if len(drop) == len(movable):
        drop.discard(movable[rng.integers(len(movable))])
    return [t for i, t in enumerate(tokens) if i not in drop]


def random_insert(tokens: list[Token], rate: float, rng: np.random.Generator) -> list[Token]:
    """Insert ``max(1, rate * n)`` copies of words from the line at random positions."""
    words = [t for t in tokens if not t.fixed]
    out = list(tokens)
    if rate <= 0 or not words:
        return out
    for _ in range(max(1, int(rate * len(words)))):
        out.insert(int(rng.integers(len(out) + 1)), words[rng.integers(len(words))])
    return out


def augment_text(text: str, params: dict[str, float], rng: np.random.Generator) -> str:
    """One augmented copy of ``text`` under the recipe's text section (``swap``, ``delete``, ``insert``)."""
    lines = []
    for line in text.split("\n"):
        tokens = tokenize(line)
        if not tokens:
            lines.append(line)
            continue
        tokens = random_swap(tokens, params["swap"], rng)
        tokens = random_delete(tokens, params["delete"], rng)
        tokens = random_insert(tokens, params["insert"], rng)
        indent = line[: len(line) - len(line.lstrip())]
        lines.append(indent + detokenize(tokens))
    return "\n".join(lines)
