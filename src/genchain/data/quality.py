"""Text normalisation, document quality rules and the language filter that ``genchain data clean`` applies.

Quality rules follow the heuristics of Gopher (Rae et al. 2021, "Scaling Language Models", appendix A.1.1:
MassiveWeb quality filter and repetition removal) and C4 (Raffel et al. 2020): cheap statistics of a text that
separate prose from boilerplate, keyword lists, tables of numbers and spam. Every rule is off unless its
threshold is set, so a rule can never remove rows the user did not ask about; :func:`gopher` returns the paper's
thresholds. One deliberate omission: Gopher's stop-word rule (at least two of "the, be, to, of, and, that,
have, with") is English-only and would remove every Chinese text.

CJK awareness: Chinese and Japanese are written without spaces, so a "word" is one Han or kana character there
(and a run of other non-space characters, such as a Latin word, stays one word). Lengths, ratios and n-grams
are computed over those units, and the mean-word-length rule (3 to 10 characters, meant for space-separated
languages) is not applied to texts whose letters are mostly CJK.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from genchain.errors import InputError

# Han (basic, extension A, compatibility, extensions B-F) and kana: scripts written without spaces.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_KANA = "\u3040-\u30ff\u31f0-\u31ff"
_HAN_RE = re.compile(f"[{_HAN}]")
_KANA_HANGUL_RE = re.compile(f"[{_KANA}\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_CJK_RE = re.compile(f"[{_HAN}{_KANA}]")
# One unit per CJK character, one per run of other non-space characters.
_UNIT_RE = re.compile(f"[{_HAN}{_KANA}]|[^\\s{_HAN}{_KANA}]+")
_ELLIPSIS_RE = re.compile(r"\.\.\.|…+")
_BULLET_RE = re.compile(r"^\s*[-*•‣●○◦▪▫■□►–—]")
_LINE_ELLIPSIS_RE = re.compile(r"(\.\.\.|…)\s*$")
_SPACES_RE = re.compile(r"[^\S\n\t]+")
_BLANK_LINES_RE = re.compile(r"\n{3,}")
_HAN_SHARE = 0.25  # see LanguageFilter
_CHINESE_VARIETIES = {"yue": "zh", "wuu": "zh"}
# Zero-width (non-)joiners are format characters that carry meaning: Persian and Indic spelling, emoji sequences.
_KEPT_FORMAT = {"\u200c", "\u200d"}


# --------------------------------------------------------------------------------------------- normalisation
def normalize_text(text: str) -> str:
    """Unicode NFC, no control or format characters (tabs and newlines stay), tidy whitespace.

    Line breaks of every kind (``\\r\\n``, ``\\r``, U+2028 ...) become ``\\n``; runs of other whitespace become
    one space; spaces at line ends go; at most one blank line separates paragraphs; the text is stripped. NFC
    makes a decomposed ``e`` + combining acute and the precomposed ``é`` the same string, which later dedup and
    language identification rely on. Zero-width joiners are kept (see ``_KEPT_FORMAT``).
    """
    text = unicodedata.normalize("NFC", text)
    invisible = _invisible_re()
    lines = [_SPACES_RE.sub(" ", invisible.sub("", line)).rstrip() for line in text.splitlines()]
    return _BLANK_LINES_RE.sub("\n\n", "\n".join(lines)).strip()


@lru_cache(maxsize=1)
def _invisible_re() -> re.Pattern[str]:
    """A character class of every control (Cc) and format (Cf) character but tab and the kept joiners, built
    from this Python's Unicode tables once (a tenth of a second) so normalising is one regex pass per line."""
    ranges: list[list[int]] = []
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        if unicodedata.category(ch) in ("Cc", "Cf") and ch != "\t" and ch not in _KEPT_FORMAT:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return re.compile("[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges) + "]")


# --------------------------------------------------------------------------------------------- statistics
def units(text: str) -> list[str]:
    """Words of space-separated scripts and single characters of CJK: what the rules count as words."""
    return _UNIT_RE.findall(text)


def cjk_fraction(text: str) -> float:
    """The fraction of a text's letters that are Han or kana (0 for a text without letters)."""
    letters = sum(1 for ch in text if ch.isalpha())
    return len(_CJK_RE.findall(text)) / letters if letters else 0.0


def _nonblank_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


def duplicate_line_fractions(text: str) -> tuple[float, float]:
    """(fraction of lines that repeat an earlier line, fraction of characters in such lines), blank lines aside."""
    lines = _nonblank_lines(text)
    seen: set[str] = set()
    duplicate_lines = duplicate_chars = 0
    for line in lines:
        if line in seen:
            duplicate_lines += 1
            duplicate_chars += len(line)
        seen.add(line)
    total_chars = sum(len(line) for line in lines)
    return (duplicate_lines / len(lines) if lines else 0.0), (duplicate_chars / total_chars if total_chars else 0.0)


def top_ngram_char_fraction(words: list[str], n: int) -> float:
    """Characters covered by the most frequent n-gram (counted when it occurs twice or more) over all word
    characters: Gopher's measure of a phrase said again and again."""
    if len(words) < n:
        return 0.0
    counts = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    gram, count = counts.most_common(1)[0]
    total = sum(len(w) for w in words)
    return sum(len(w) for w in gram) * count / total if count > 1 else 0.0


def duplicate_ngram_char_fraction(words: list[str], n: int) -> float:
    """Characters in n-grams that repeat an earlier n-gram (a repeat's words are not counted twice) over all word
    characters: Gopher's measure of copied passages."""
    total = sum(len(w) for w in words)
    seen: set[tuple[str, ...]] = set()
    duplicate_chars = i = 0
    while i <= len(words) - n:
        gram = tuple(words[i:i + n])
        if gram in seen:
            duplicate_chars += sum(len(w) for w in gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return duplicate_chars / total if total else 0.0


def _strip_punctuation(word: str) -> str:
    return "".join(ch for ch in word if not unicodedata.category(ch).startswith("P"))


# --------------------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the quality rules; ``None`` (or an empty tuple) turns a rule off, and every rule is off by
    default. Only empty texts are always removed. :func:`gopher` gives the paper's values.

    Attributes:
        min_chars: fewer characters than this is too short (after normalisation).
        max_chars: more characters than this is too long.
        min_words: fewer words (CJK: characters) than this; Gopher: 50.
        max_words: more words than this; Gopher: 100,000.
        max_symbol_ratio: most "#" per word, and most ellipses ("...", "…") per word, each; Gopher: 0.1.
        max_digit_ratio: most digits per non-space character: tables of numbers, IDs, logs (not a Gopher rule;
            0.2-0.3 keeps prose with dates and prices).
        max_bullet_line_fraction: most lines starting with a bullet; Gopher: 0.9.
        max_ellipsis_line_fraction: most lines ending in an ellipsis (truncated snippets); Gopher: 0.3.
        min_alpha_word_fraction: fewest words holding a letter; Gopher: 0.8.
        max_duplicate_line_fraction: most lines repeating an earlier line; Gopher: 0.3.
        max_duplicate_line_char_fraction: most characters in repeated lines; Gopher: 0.2.
        max_top_ngram_char_fraction: ``(n, limit)`` pairs: most characters in the commonest n-gram; Gopher:
            0.20, 0.18, 0.16 for n = 2, 3, 4.
        max_duplicate_ngram_char_fraction: ``(n, limit)`` pairs: most characters in repeated n-grams; Gopher:
            0.15 to 0.10 for n = 5 to 10.
        word_length_range: (low, high) mean word length, punctuation aside; not applied to mostly-CJK texts;
            Gopher: (3, 10).
    """

    min_chars: int | None = None
    max_chars: int | None = None
    min_words: int | None = None
    max_words: int | None = None
    max_symbol_ratio: float | None = None
    max_digit_ratio: float | None = None
    max_bullet_line_fraction: float | None = None
    max_ellipsis_line_fraction: float | None = None
    min_alpha_word_fraction: float | None = None
    max_duplicate_line_fraction: float | None = None
    max_duplicate_line_char_fraction: float | None = None
    max_top_ngram_char_fraction: tuple[tuple[int, float], ...] = ()
    max_duplicate_ngram_char_fraction: tuple[tuple[int, float], ...] = ()
    word_length_range: tuple[float, float] | None = None

    def with_flags(self, *, min_chars: int | None = None, max_chars: int | None = None,
                   max_symbol_ratio: float | None = None, max_repeat_ratio: float | None = None) -> QualityConfig:
        """This config with ``genchain data clean``'s flags applied (a flag left at None changes nothing).
        ``max_repeat_ratio`` bounds the duplicate-line fraction, the characters in duplicate lines and the top
        2/3/4-gram share alike."""
        changes: dict[str, Any] = {name: value for name, value in (("min_chars", min_chars), ("max_chars", max_chars),
                                   ("max_symbol_ratio", max_symbol_ratio)) if value is not None}
        if max_repeat_ratio is not None:
            changes.update(max_duplicate_line_fraction=max_repeat_ratio,
                           max_duplicate_line_char_fraction=max_repeat_ratio,
                           max_top_ngram_char_fraction=tuple((n, max_repeat_ratio) for n in (2, 3, 4)))
        return replace(self, **changes)


def gopher() -> QualityConfig:
    """Gopher's MassiveWeb thresholds (Rae et al. 2021, A.1.1), meant for web documents, not one-line texts."""
    return QualityConfig(
        min_words=50, max_words=100_000, max_symbol_ratio=0.1, max_bullet_line_fraction=0.9,
        max_ellipsis_line_fraction=0.3, min_alpha_word_fraction=0.8, max_duplicate_line_fraction=0.3,
        max_duplicate_line_char_fraction=0.2, max_top_ngram_char_fraction=((2, 0.20), (3, 0.18), (4, 0.16)),
        max_duplicate_ngram_char_fraction=((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)),
        word_length_range=(3.0, 10.0))


def quality_reasons(text: str, config: QualityConfig) -> list[str]:
    """The names of the rules ``text`` fails, in a fixed order (empty: keep it). ``text`` should be normalised.

    Names: empty, min_chars, max_chars, min_words, max_words, symbol_ratio, digit_ratio, bullet_lines,
    ellipsis_lines, alpha_words, duplicate_lines, duplicate_line_chars, top_ngram_<n>, duplicate_ngram_<n>,
    word_length.
    """
    if not text.strip():
        return ["empty"]
    c = config
    reasons = []
    if c.min_chars is not None and len(text) < c.min_chars:
        reasons.append("min_chars")
    if c.max_chars is not None and len(text) > c.max_chars:
        reasons.append("max_chars")
    words = units(text)
    if c.min_words is not None and len(words) < c.min_words:
        reasons.append("min_words")
    if c.max_words is not None and len(words) > c.max_words:
        reasons.append("max_words")
    if c.max_symbol_ratio is not None and words:
        symbols = max(text.count("#"), len(_ELLIPSIS_RE.findall(text)))
        if symbols / len(words) > c.max_symbol_ratio:
            reasons.append("symbol_ratio")
    if c.max_digit_ratio is not None:
        visible = sum(1 for ch in text if not ch.isspace())
        if sum(1 for ch in text if ch.isdigit()) / visible > c.max_digit_ratio:
            reasons.append("digit_ratio")
    lines = _nonblank_lines(text)
    if c.max_bullet_line_fraction is not None:
        if sum(1 for line in lines if _BULLET_RE.match(line)) / len(lines) > c.max_bullet_line_fraction:
            reasons.append("bullet_lines")
    if c.max_ellipsis_line_fraction is not None:
        if sum(1 for line in lines if _LINE_ELLIPSIS_RE.search(line)) / len(lines) > c.max_ellipsis_line_fraction:
            reasons.append("ellipsis_lines")
    if c.min_alpha_word_fraction is not None and words:
        if sum(1 for w in words if any(ch.isalpha() for ch in w)) / len(words) < c.min_alpha_word_fraction:
            reasons.append("alpha_words")
    if c.max_duplicate_line_fraction is not None or c.max_duplicate_line_char_fraction is not None:
        line_fraction, char_fraction = duplicate_line_fractions(text)
        if c.max_duplicate_line_fraction is not None and line_fraction > c.max_duplicate_line_fraction:
            reasons.append("duplicate_lines")
        if c.max_duplicate_line_char_fraction is not None and char_fraction > c.max_duplicate_line_char_fraction:
            reasons.append("duplicate_line_chars")
    for n, limit in c.max_top_ngram_char_fraction:
        if top_ngram_char_fraction(words, n) > limit:
            reasons.append(f"top_ngram_{n}")
    for n, limit in c.max_duplicate_ngram_char_fraction:
        if duplicate_ngram_char_fraction(words, n) > limit:
            reasons.append(f"duplicate_ngram_{n}")
    if c.word_length_range is not None and cjk_fraction(text) < 0.5:
        stripped = [w for w in map(_strip_punctuation, words) if w]
        low, high = c.word_length_range
        if stripped and not low <= sum(map(len, stripped)) / len(stripped) <= high:
            reasons.append("word_length")
    return reasons


# --------------------------------------------------------------------------------------------- language
@lru_cache(maxsize=1)
def _language_identifier():
    """py3langid's model over all its languages (it ships inside the package, so this works offline)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


class LanguageFilter:
    """Keeps texts in the requested languages (ISO 639-1 codes such as ``en``, ``zh``).

    Why not py3langid alone: on short strings it is unreliable, and on Chinese it splits its votes between
    ``zh``, ``yue`` (Cantonese) and ``wuu`` (Wu) — a line of a Tang poem comes out as any of the three. So:

    1. Script first: a text with no kana or hangul (Japanese always has kana, Korean hangul) in which Han
       characters make up at least a quarter of the letters is Chinese, ``zh``, whatever py3langid says. A
       quarter, not a half, because one Han character carries about as much as a Latin word, and Chinese
       technical text is full of Latin names and commands; an English text quoting a Chinese name stays far
       below it.
    2. Otherwise py3langid over all its languages, with its Chinese varieties (``yue``, ``wuu``) read as
       ``zh``. Its answer counts only when its probability is at least ``min_confidence``: a confident answer
       outside the requested languages removes the text, counted under that language; an unsure answer
       (``und``: "Beware of Bigfoot!", "OK") keeps it, because a filter should not throw away what it cannot
       judge.
    """

    def __init__(self, languages: tuple[str, ...] | list[str], min_confidence: float = 0.5):
        known = set(_language_identifier().labels)
        unknown = sorted(set(languages) - known)
        if unknown:
            raise InputError(f"unknown language code(s) {', '.join(unknown)} for --lang; use ISO 639-1 codes "
                             "such as en, zh, fr, de, ja")
        self.languages = frozenset(languages)
        self.min_confidence = min_confidence

    def detect(self, text: str) -> str:
        """The text's language code, or ``und`` when the model is unsure."""
        letters = sum(1 for ch in text if ch.isalpha())
        if letters and len(_HAN_RE.findall(text)) >= letters * _HAN_SHARE and not _KANA_HANGUL_RE.search(text):
            return "zh"
        language, probability = _language_identifier().classify(text)
        if probability < self.min_confidence:
            return "und"
        return _CHINESE_VARIETIES.get(language, language)

    def keep(self, text: str) -> tuple[bool, str]:
        """(whether to keep ``text``, its detected language)."""
        language = self.detect(text)
        return language in self.languages or language == "und", language
