"""Redaction of personal data in text: e-mail addresses, phone numbers, payment cards, IP addresses and
Chinese resident ID numbers become the typed placeholders ``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[IP]`` and
``[CN_ID]``, so a model trained on the text keeps the sentence shape but never sees the value.

Every candidate a pattern finds is validated before it is redacted, which is what keeps ordinary numbers out:

- cards: 13-19 digits, optionally grouped by spaces or dashes (one kind of separator), with the Luhn check
  digit right and an issuer prefix and length of a real network (Visa, Mastercard, Amex, Discover, JCB,
  Diners, UnionPay, Maestro), so an order number or a Luhn-invalid 16-digit number stays;
- Chinese IDs (GB 11643-1999): 17 digits and a check character (digit or X) that matches the ISO 7064
  MOD 11-2 checksum, a province code 11-82 and a real birth date from 1900 to today;
- phone numbers: the ``phonenumbers`` library's matcher over :data:`PHONE_REGIONS` for national formats (any
  region finds ``+NN`` international numbers), plus Chinese mobiles ``1[3-9]`` + 9 digits. The matcher runs
  at ``STRICT_GROUPING`` leniency: the number must be valid in its numbering plan *and* its spaces or dashes
  must fall where that plan's formats put them, which rejects a time stamp such as ``2003 08 30 36`` that
  happens to be a valid Chinese number. Matches of fewer than 8 digits are dropped: German short numbers
  (``1695``) are valid but read like counts; so are numbers longer than E.164's 15 digits, which the
  German plan would otherwise accept when a 16-digit reference happens to start with 49. An unformatted
  10-digit count that is a valid number (``5368709120 bytes``) is still redacted: nothing in the digits
  tells them apart;
- IP addresses: dotted quads and colon-hex strings that ``ipaddress`` accepts. A version string that is a
  valid IPv4 address (``1.2.3.4``) is redacted too: both read the same, and leaking an address is the worse
  mistake. ``1.2.3`` or ``10.0.19041.1`` are not addresses and stay.

Order matters where patterns overlap: the detectors run in the order of :data:`PII_TYPES` and a later one
cannot claim characters an earlier one took, so the digits of a card or an ID are never tagged as a phone
number, and the digits of ``13812345678@qq.com`` are part of an e-mail address.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import phonenumbers

PII_TYPES = ("EMAIL", "CN_ID", "CARD", "IP", "PHONE")
PHONE_REGIONS = ("US", "GB", "CN", "DE", "FR", "IN")

_EMAIL_RE = re.compile(r"(?<![A-Za-z0-9_.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])")
_CN_ID_RE = re.compile(r"(?<![0-9A-Za-z])[1-8]\d{16}[\dXx](?![0-9A-Za-z])")
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"
_CARD_RE = re.compile(r"(?<![\d.,+-])\d(?:[ -]?\d){12,18}(?![\d-]|[.,]\d)")
_IPV4_RE = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?!\.?\d)")
_IPV6_RE = re.compile(r"(?<![0-9A-Za-z_:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}"
                      r"(?![0-9A-Za-z_:])")
_CN_MOBILE_RE = re.compile(r"(?<![\d+])(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")
_MIN_PHONE_DIGITS = 8
_MAX_E164 = 16  # "+" and at most 15 digits (ITU-T E.164)


@dataclass(frozen=True)
class Entity:
    """One piece of personal data found in a text: ``text[start:end]`` is a ``kind``."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class RedactionResult:
    """The redacted text and how many entities of each type were replaced (types found zero times omitted)."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- validators
def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number carries in its last digit."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_network(digits: str) -> str | None:
    """The network whose issuer prefix (IIN) and length ``digits`` fits, else None."""
    n = len(digits)
    prefix2, prefix3, prefix4, prefix6 = int(digits[:2]), int(digits[:3]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= prefix2 <= 55 or 2221 <= prefix4 <= 2720) and n == 16:
        return "mastercard"
    if prefix2 in (34, 37) and n == 15:
        return "amex"
    if (prefix4 == 6011 or 644 <= prefix3 <= 649 or prefix2 == 65 or 622126 <= prefix6 <= 622925) and n in (16, 19):
        return "discover"
    if 3528 <= prefix4 <= 3589 and n in (16, 19):
        return "jcb"
    if (300 <= prefix3 <= 305 or prefix2 in (36, 38, 39)) and n in (14, 16):
        return "diners"
    if prefix2 == 62 and n in (16, 19):
        return "unionpay"
    if (prefix2 == 50 or 56 <= prefix2 <= 69) and n in (16, 19):
        return "maestro"
    return None


def cn_id_valid(candidate: str, today: datetime.date | None = None) -> bool:
    """GB 11643-1999: province code 11-82, a real birth date (1900 to today) and the MOD 11-2 check character."""
    if not 11 <= int(candidate[:2]) <= 82:
        return False
    try:
        born = datetime.date(int(candidate[6:10]), int(candidate[10:12]), int(candidate[12:14]))
    except ValueError:
        return False
    if not datetime.date(1900, 1, 1) <= born <= (today or datetime.date.today()):
        return False
    check = _CN_ID_CHECK[sum(int(d) * w for d, w in zip(candidate[:17], _CN_ID_WEIGHTS, strict=True)) % 11]
    return candidate[17].upper() == check


def _ip_valid(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------- detectors
def _emails(text: str) -> Iterator[tuple[int, int]]:
    for m in _EMAIL_RE.finditer(text):
        yield m.span()


def _cn_ids(text: str) -> Iterator[tuple[int, int]]:
    for m in _CN_ID_RE.finditer(text):
        if cn_id_valid(m.group()):
            yield m.span()


def _cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _CARD_RE.finditer(text):
        raw = m.group()
        if " " in raw and "-" in raw:
            continue
        digits = raw.replace(" ", "").replace("-", "")
        if luhn_valid(digits) and card_network(digits):
            yield m.span()


def _ips(text: str) -> Iterator[tuple[int, int]]:
    for pattern in (_IPV4_RE, _IPV6_RE):
        for m in pattern.finditer(text):
            if any(ch.isdigit() for ch in m.group()) and _ip_valid(m.group()):  # not "::" or C++'s "a::b"
                yield m.span()


def _phones(text: str) -> Iterator[tuple[int, int]]:
    if sum(ch.isdigit() for ch in text) < _MIN_PHONE_DIGITS:  # most texts: skip six matchers
        return
    for region in PHONE_REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.STRICT_GROUPING):
            e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
            if sum(ch.isdigit() for ch in match.raw_string) >= _MIN_PHONE_DIGITS and len(e164) <= _MAX_E164:
                yield _trim(text, match.start, match.end)
    for m in _CN_MOBILE_RE.finditer(text):
        yield m.span()


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """The matcher's span without surrounding spaces or an opening bracket it never closes ("(+1 201-555-0123"
    inside parentheses), so the placeholder leaves the sentence's own spacing and brackets alone."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if text[start] == "(" and ")" not in text[start:end]:
        start += 1
    return start, end


_DETECTORS = {"EMAIL": _emails, "CN_ID": _cn_ids, "CARD": _cards, "IP": _ips, "PHONE": _phones}


def find_pii(text: str) -> list[Entity]:
    """Every entity in ``text``, sorted by position, none overlapping (earlier types in PII_TYPES win)."""
    taken: list[Entity] = []
    for kind in PII_TYPES:
        spans = sorted(set(_DETECTORS[kind](text)))
        merged: list[list[int]] = []
        for start, end in spans:  # one type's overlapping matches (e.g. several phone regions) become one
            if merged and start < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        for start, end in merged:
            if not any(start < e.end and e.start < end for e in taken):
                taken.append(Entity(kind, start, end))
    return sorted(taken, key=lambda e: e.start)


def redact(text: str) -> RedactionResult:
    """``text`` with every entity :func:`find_pii` finds replaced by ``[TYPE]``, and the count of each type."""
    entities = find_pii(text)
    if not entities:
        return RedactionResult(text, {})
    pieces, counts, position = [], {}, 0
    for entity in entities:
        pieces += [text[position:entity.start], f"[{entity.kind}]"]
        counts[entity.kind] = counts.get(entity.kind, 0) + 1
        position = entity.end
    pieces.append(text[position:])
    return RedactionResult("".join(pieces), counts)
