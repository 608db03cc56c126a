"""Safety and privacy filters for prompts and generated text: blocklists, PII redaction, counted refusals.

What this is: the coarse first line of defence that content platforms put in front of a generator (the same
layer as the "blocklists" of LDNOOBW-style word lists or of a moderation API's keyword stage). A prompt that
matches a blocklist term is refused before anything is generated; a generated text that matches is withheld;
personal data in generated text (e-mail addresses, phone numbers, payment cards, IP addresses, Chinese ID
numbers) is redacted with the data layer's validated detectors (:func:`genchain.data.pii.redact`). Every refusal
is appended to ``$GENCHAIN_HOME/safety/refusals.jsonl`` with its time, stage, category and the SHA-256 of the
text, never the text itself, and :func:`refusal_counts` sums them.

What this is not: a classifier. A list of phrases misses paraphrases, other languages, misspellings beyond the
trivial ones handled here, and harmful requests that use no listed phrase; it also refuses some benign text that
quotes a phrase (a news report, a support forum). Treat the counts as a measure of what the list caught, not of
what got through.

Matching (on text normalised with Unicode NFKC, case folding, and zero-width characters removed): Latin terms match
at word boundaries, allowing a plural ``-s``/``-es``; CJK terms match as substrings (Chinese has no spaces
between words). Inside a term, up to three spaces or punctuation marks may be inserted between any two characters
and common look-alikes (``0`` for ``o``, ``@`` for ``a``, ...) stand in for letters, which defeats the trivial
obfuscations ("p.i.p.e b0mb", "制 造-炸 弹") without matching across words.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from genchain.errors import GenchainError, InputError

CATEGORIES = {
    "violence": "instructions for weapons, explosives, poisoning or mass violence",
    "sexual_minors": "sexual content involving minors",
    "self_harm": "instructions for suicide or self-harm",
    "hate": "incitement to violence against a group of people",
}
SHIPPED_LISTS = ("en", "zh")
USER_LIST = "blocklist.txt"  # $GENCHAIN_HOME/safety/blocklist.txt is read when it exists
REFUSALS = "refusals.jsonl"
REPLACE_DIRECTIVE = "!replace"

_SEPARATOR = r"[\W_]{0,3}"  # spaces or punctuation inserted inside a term
_LATIN = "0-9a-z\u00df-\u024f"  # case-folded Latin letters and digits: what a word boundary separates
_LOOKALIKES = {"a": "a4@", "b": "b8", "e": "e3", "g": "g9", "i": "i1!|", "l": "l1|", "o": "o0", "s": "s5$",
               "t": "t7+", "z": "z2"}
_CATEGORY_NAME = re.compile(r"^[a-z0-9_-]{1,40}$")


def normalise(text: str) -> str:
    """NFKC (full-width and compatibility forms to their usual ones), case-folded, format characters removed.

    Format characters (Unicode category Cf: zero-width spaces and joiners, soft hyphens, direction marks) are
    invisible and are the usual way to break up a word without changing how it looks.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def _is_latin(ch: str) -> bool:
    return re.fullmatch(f"[{_LATIN}]", ch) is not None


def term_pattern(term: str) -> str:
    """The regular expression (over normalised text) for one blocklist term."""
    chars = [ch for ch in normalise(term).strip()]
    pieces = []
    for ch in chars:
        if ch.isspace():
            continue
        pieces.append(f"[{re.escape(_LOOKALIKES[ch])}]" if ch in _LOOKALIKES else re.escape(ch))
    if not pieces:
        raise ValueError(f"blocklist term {term!r} is empty after normalisation")
    body = _SEPARATOR.join(pieces)
    words = [w for w in normalise(term).split() if w]
    start = f"(?<![{_LATIN}])" if _is_latin(words[0][0]) else ""
    end = f"(?:e?s)?(?![{_LATIN}])" if _is_latin(words[-1][-1]) else ""
    return start + body + end


@dataclass(frozen=True)
class BlocklistMatch:
    """Where a text matched: the category, the list it came from, and the span in the normalised text."""

    category: str
    source: str
    start: int
    end: int


@dataclass
class Blocklist:
    """Terms by (source list, category), compiled to one alternation per pair."""

    terms: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._patterns = {key: re.compile("|".join(f"(?:{term_pattern(t)})" for t in terms))
                          for key, terms in self.terms.items() if terms}

    @classmethod
    def load(cls, files: Iterable[str | Path] = (), *, shipped: bool = True,
             home: Path | None = None) -> Blocklist:
        """The shipped English and Chinese lists, then ``$GENCHAIN_HOME/safety/blocklist.txt``, then ``files``.

        A file whose first directive is ``!replace`` drops every term loaded before it, so a user can swap the
        shipped lists for their own; otherwise its terms are added.
        """
        terms: dict[tuple[str, str], list[str]] = {}
        if shipped:
            folder = resources.files("genchain.provenance") / "blocklists"
            for name in SHIPPED_LISTS:
                _, parsed = parse_blocklist((folder / f"{name}.txt").read_text(encoding="utf-8"), name)
                _merge(terms, parsed)
        user_file = safety_dir(home) / USER_LIST
        for path in ([user_file] if user_file.is_file() else []) + [Path(f) for f in files]:
            if not path.is_file():
                raise InputError(f"blocklist file {path} does not exist")
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"blocklist file {path} is not UTF-8 text ({err.reason} at byte {err.start})") \
                    from None
            replace, parsed = parse_blocklist(text, str(path))
            if replace:
                terms.clear()
            _merge(terms, parsed)
        return cls(terms)

    @property
    def size(self) -> int:
        return sum(len(t) for t in self.terms.values())

    def match(self, text: str) -> BlocklistMatch | None:
        """The earliest match in ``text``, or None."""
        normalised = re.sub(r"\s+", " ", normalise(text))  # runs of spaces count as one separator
        best: BlocklistMatch | None = None
        for (source, category), pattern in self._patterns.items():
            found = pattern.search(normalised)
            if found and (best is None or found.start() < best.start):
                best = BlocklistMatch(category, source, found.start(), found.end())
        return best


def parse_blocklist(text: str, source: str) -> tuple[bool, dict[tuple[str, str], list[str]]]:
    """(replace?, terms by (source, category)) from a blocklist file's text; errors name the line."""
    replace, category = False, None
    terms: dict[tuple[str, str], list[str]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line == REPLACE_DIRECTIVE:
            if terms:
                raise InputError(f"{source}:{number}: {REPLACE_DIRECTIVE} must come before the first term")
            replace = True
        elif line.startswith("[") and line.endswith("]"):
            category = line[1:-1].strip()
            if not _CATEGORY_NAME.match(category):
                raise InputError(f"{source}:{number}: category [{category}]: use lower-case letters, digits, "
                                 "'_' or '-' (for example [violence])")
        elif category is None:
            raise InputError(f"{source}:{number}: a term before any [category] line; start a section such as "
                             "[violence] first")
        else:
            terms.setdefault((source, category), []).append(line)
    return replace, terms


def _merge(into: dict[tuple[str, str], list[str]], new: dict[tuple[str, str], list[str]]) -> None:
    for key, values in new.items():
        into.setdefault(key, []).extend(values)


# ------------------------------------------------------------------------------------------------ refusals
class SafetyRefusal(GenchainError):
    """A prompt or output the safety filter refused; the message names the category, never the matched term."""

    def __init__(self, stage: str, match: BlocklistMatch):
        self.stage = stage
        self.category = match.category
        self.source = match.source
        what = CATEGORIES.get(match.category, "a category of a user blocklist")
        subject = "the prompt was" if stage == "prompt" else "the generated text was"
        message = (f"{subject} refused by the safety filter: it matches the {match.category!r} blocklist ({what}; "
                   f"list {Path(match.source).name}, characters {match.start}-{match.end}); rephrase it, or, if "
                   "this is a false positive, see --blocklist and --no-safety in `genchain generate text --help`")
        if match.category == "self_harm":
            message += ". If you are struggling, please talk to someone you trust or a local crisis line"
        super().__init__(message)


def safety_dir(home: Path | None = None) -> Path:
    from genchain.provenance.keys import genchain_home

    return (home or genchain_home()) / "safety"


def record_refusal(stage: str, match: BlocklistMatch, text: str, home: Path | None = None) -> None:
    """Append one refusal to the log: one ``write`` of one line with O_APPEND, then fsync.

    An O_APPEND write of a short line lands whole and after every earlier one, even with several processes
    logging at once; a crash can at worst leave a partial last line, which :func:`refusal_counts` skips.
    """
    path = safety_dir(home) / REFUSALS
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "stage": stage,
                       "category": match.category, "list": Path(match.source).name,
                       "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def refusal_counts(home: Path | None = None) -> dict:
    """Refusals so far: ``{"total": n, "by_category": {...}, "by_stage": {...}}`` from the log."""
    path = safety_dir(home) / REFUSALS
    by_category: Counter[str] = Counter()
    by_stage: Counter[str] = Counter()
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            by_category[record.get("category", "?")] += 1
            by_stage[record.get("stage", "?")] += 1
    return {"total": sum(by_stage.values()), "by_category": dict(by_category), "by_stage": dict(by_stage)}


# ------------------------------------------------------------------------------------------------ the filter
@dataclass(frozen=True)
class OutputVerdict:
    """A generated text after the filter: ``text`` is None when it was withheld (``match`` says why);
    ``redacted`` counts the personal data replaced, by type."""

    text: str | None
    match: BlocklistMatch | None = None
    redacted: dict[str, int] = field(default_factory=dict)

    @property
    def withheld(self) -> bool:
        return self.text is None

    @property
    def category(self) -> str | None:
        return self.match.category if self.match else None


class SafetyFilter:
    """Prompt refusal, output withholding and PII redaction, with every refusal logged.

    Args:
        blocklist: the terms; default :meth:`Blocklist.load` (shipped lists plus the user's file).
        redact_pii: replace personal data in outputs with ``[EMAIL]``, ``[PHONE]``, ... (the data layer's rule).
        home: where the refusal log lives (default ``$GENCHAIN_HOME``).
    """

    def __init__(self, blocklist: Blocklist | None = None, *, redact_pii: bool = True, home: Path | None = None):
        self.blocklist = blocklist if blocklist is not None else Blocklist.load(home=home)
        self.redact_pii = redact_pii
        self.home = home

    def check_prompt(self, prompt: str) -> None:
        """Raise :class:`SafetyRefusal` (and log it) when ``prompt`` matches the blocklist."""
        found = self.blocklist.match(prompt)
        if found:
            record_refusal("prompt", found, prompt, self.home)
            raise SafetyRefusal("prompt", found)

    def check_output(self, text: str) -> OutputVerdict:
        """Withhold (and log) ``text`` when it matches the blocklist, else return it with personal data redacted."""
        found = self.blocklist.match(text)
        if found:
            record_refusal("output", found, text, self.home)
            return OutputVerdict(None, found)
        if not self.redact_pii:
            return OutputVerdict(text)
        from genchain.data.pii import redact

        result = redact(text)
        return OutputVerdict(result.text, None, dict(result.counts))

    def filter_stream(self, pieces: Iterable[str]) -> Iterator[str]:
        """Filter streamed text line by line: each line is held until it is complete, then checked and redacted.

        A term or an address split across two lines is missed here; the whole-text check is not so limited.
        """
        pending = ""
        for piece in pieces:
            pending += piece
            while "\n" in pending:
                line, pending = pending.split("\n", 1)
                yield self._line(line) + "\n"
        if pending:
            yield self._line(pending)

    def _line(self, line: str) -> str:
        verdict = self.check_output(line)
        return verdict.text if verdict.text is not None else f"[withheld by the safety filter: {verdict.category}]"
