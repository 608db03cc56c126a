"""Copywriting: a structured brief -> a prompt per kind and language -> N candidates -> filtered -> ranked.

Ranking mixes three signals because each alone fails: the backend's likelihood favours bland, short text;
keyword coverage favours lists of the features; so both feed a relevance score and MMR (maximal marginal
relevance, Carbonell & Goldstein 1998) picks the order, trading relevance against similarity to the
candidates already chosen so the top of the list is not eight paraphrases of one line.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from genchain.errors import InputError
from genchain.fileio import atomic_write_json, atomic_write_text
from genchain.generate.hf_backend import Candidate
from genchain.generate.text import SamplingConfig

KINDS = ("slogan", "product-description", "news", "social-post")
LANGS = ("en", "zh")
# (min, max) characters: Chinese packs about three times the meaning per character
LENGTH_LIMITS = {
    "en": {"slogan": (8, 90), "product-description": (60, 900), "news": (80, 1500), "social-post": (20, 280)},
    "zh": {"slogan": (3, 30), "product-description": (20, 300), "news": (30, 600), "social-post": (8, 140)},
}
MAX_NEW_TOKENS = {"slogan": 32, "product-description": 192, "news": 320, "social-post": 96}
_STOPWORDS = frozenset("a an the and or for with of to in on at by is are be it its your our this that from".split())


@dataclass(frozen=True)
class Brief:
    """What the copy is for; every field is said to the model and the features also score the candidates."""

    product: str
    features: tuple[str, ...] = ()
    audience: str = ""
    tone: str = "friendly"
    kind: str = "slogan"
    lang: str = "en"
    banned: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.product.strip():
            raise InputError("the brief has no product; pass --product \"what you are selling\"")
        if self.kind not in KINDS:
            raise InputError(f"unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.lang not in LANGS:
            raise InputError(f"unknown language {self.lang!r}; choose one of {', '.join(LANGS)}")
        if not self.tone.strip():
            raise InputError("the tone is empty; pass --tone, e.g. playful or formal")

    @classmethod
    def from_args(cls, product: str, features: str = "", audience: str = "", tone: str = "friendly",
                  kind: str = "slogan", lang: str = "en", banned: str = "") -> Brief:
        """Features and banned words as ``;``-separated strings, as the CLI takes them."""
        split = lambda s: tuple(p.strip() for p in re.split(r"[;；]", s or "") if p.strip())  # noqa: E731
        return cls(product.strip(), split(features), audience.strip(), tone.strip(), kind, lang, split(banned))


_KIND_WORDS = {
    "en": {"slogan": "a short slogan (one line, under 12 words)",
           "product-description": "a product description of 2-4 sentences",
           "news": "a short news announcement (headline, then one paragraph)",
           "social-post": "a social media post under 280 characters"},
    "zh": {"slogan": "一句简短的广告语（一行，不超过20个字）", "product-description": "一段2到4句的产品介绍",
           "news": "一则简短的新闻稿（标题加一段正文）", "social-post": "一条140字以内的社交媒体帖子"},
}


def build_prompt(brief: Brief) -> tuple[str, str]:
    """(system, user) messages for the brief; the backend wraps them in its chat template."""
    kind = _KIND_WORDS[brief.lang][brief.kind]
    if brief.lang == "zh":
        system = "你是一名专业的中文广告文案撰稿人。只输出文案本身，不要解释。"
        lines = [f"请为「{brief.product}」写{kind}。", f"语气：{brief.tone}。"]
        if brief.features:
            lines.append("卖点：" + "；".join(brief.features) + "。")
        if brief.audience:
            lines.append(f"目标受众：{brief.audience}。")
        if brief.banned:
            lines.append("不要使用这些词：" + "、".join(brief.banned) + "。")
        return system, "\n".join(lines)
    system = "You are an expert advertising copywriter. Reply with the copy only, no explanations."
    lines = [f"Write {kind} for {brief.product}.", f"Tone: {brief.tone}."]
    if brief.features:
        lines.append("Key features: " + "; ".join(brief.features) + ".")
    if brief.audience:
        lines.append(f"Audience: {brief.audience}.")
    if brief.banned:
        lines.append("Do not use these words: " + ", ".join(brief.banned) + ".")
    return system, "\n".join(lines)


# ------------------------------------------------------------------------------------------------ filtering
def clean(text: str, kind: str = "") -> str:
    """Drop preamble lines ("Here's a slogan:"), wrapping quotes and labels that small instruct models add;
    a slogan is its first line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    while len(lines) > 1 and lines[0].endswith((":", "：")):
        lines.pop(0)
    text = lines[0] if kind == "slogan" and lines else "\n".join(lines)
    text = re.sub(r"^(slogan|tagline|post|description|广告语|文案)\s*[:：]\s*", "", text, flags=re.I)
    return text.strip().strip("\"'“”「」").strip()


def rejection(text: str, brief: Brief, safety=None, prompt: str = "") -> str | None:
    """Why ``text`` cannot be shown (None when it can): length out of the kind's limits, a character cut in
    half (a byte-level token budget can end mid-character), an echo of the prompt, a banned word, safety."""
    low, high = LENGTH_LIMITS[brief.lang][brief.kind]
    if not low <= len(text) <= high:
        return f"length {len(text)} outside {low}-{high}"
    if "\ufffd" in text:
        return "broken character"
    if prompt and text in prompt:
        return "echoes the prompt"
    if copied := _copied_instruction(text, brief.lang):
        return f"copies the instructions ({copied!r})"
    lowered = text.lower()
    for word in brief.banned:
        if word.lower() in lowered:
            return f"banned word {word!r}"
    if safety is not None and safety.check_output(text).withheld:
        return "safety filter"
    return None


# The fixed parts of build_prompt's messages that copy never contains: the system sentences and the field labels.
# A small model sometimes answers with them ("你是一名专业的中文广告文案撰稿人…", "Key features: ..."); the
# brief's own words (product, features) are not here, since good copy repeats those.
_INSTRUCTION_PARTS = {
    "en": ("You are an expert advertising copywriter", "Reply with the copy only", "no explanations",
           "Key features:", "Tone:", "Audience:", "Do not use these words"),
    "zh": ("你是一名专业的中文广告文案撰稿人", "只输出文案本身", "不要解释", "卖点：", "语气：", "目标受众：",
           "不要使用这些词"),
}


def _copied_instruction(text: str, lang: str) -> str | None:
    lowered = text.lower()
    return next((part for part in _INSTRUCTION_PARTS[lang] if part.lower() in lowered), None)


# ------------------------------------------------------------------------------------------------ ranking
def _terms(phrase: str, lang: str) -> list[str]:
    if lang == "zh" or re.search(r"[\u4e00-\u9fff]", phrase):
        return [phrase.strip()]  # Chinese has no spaces: the phrase itself is the term
    return [w for w in re.findall(r"[a-z0-9]+", phrase.lower()) if len(w) > 2 and w not in _STOPWORDS]


def keyword_coverage(text: str, brief: Brief) -> float:
    """Share of the brief's features (and the product) that the text mentions; a feature counts when any of its
    content words appears (English) or the phrase itself does (Chinese)."""
    phrases = [brief.product, *brief.features]
    lowered = text.lower()
    words = set(re.findall(r"[a-z0-9]+", lowered))
    hits = 0
    for phrase in phrases:
        terms = _terms(phrase, brief.lang)
        if any((t in lowered) if not t.isascii() else (t in words) for t in terms):
            hits += 1
    return hits / len(phrases)


def mmr(relevance: np.ndarray, vectors: np.ndarray, k: int, lam: float = 0.7) -> list[int]:
    """Indices in MMR order: each step takes argmax ``lam * rel - (1 - lam) * max cos(chosen)``.

    ``vectors`` must be unit length (cosine = dot product).
    """
    sims = vectors @ vectors.T
    chosen: list[int] = []
    left = list(range(len(relevance)))
    while left and len(chosen) < k:
        penalty = sims[np.ix_(left, chosen)].max(axis=1) if chosen else np.zeros(len(left))
        scores = lam * relevance[left] - (1 - lam) * penalty
        best = left[int(np.argmax(scores))]
        chosen.append(best)
        left.remove(best)
    return chosen


@dataclass
class Scored:
    text: str
    loglik: float
    coverage: float
    relevance: float = 0.0
    rank: int = 0
    rejected: str | None = None


@dataclass
class CopyResult:
    brief: Brief
    prompt: str
    ranked: list[Scored]
    rejected: list[Scored] = field(default_factory=list)


def rank(candidates: list[Candidate], brief: Brief, embed, lam: float = 0.7) -> list[Scored]:
    """Kept candidates, best first. Relevance = likelihood min-max scaled to [0, 1] plus coverage (equal weight)."""
    if not candidates:
        return []
    ll = np.array([c.loglik if np.isfinite(c.loglik) else -1e9 for c in candidates], dtype=np.float64)
    spread = ll.max() - ll.min()
    ll_scaled = (ll - ll.min()) / spread if spread > 0 else np.ones_like(ll)
    cov = np.array([keyword_coverage(c.text, brief) for c in candidates])
    relevance = 0.5 * ll_scaled + 0.5 * cov
    order = mmr(relevance, np.asarray(embed([c.text for c in candidates]), dtype=np.float64), len(candidates), lam)
    return [Scored(candidates[i].text, candidates[i].loglik, float(cov[i]), float(relevance[i]), r + 1)
            for r, i in enumerate(order)]


def write_copy(brief: Brief, backend, num: int = 8, seed: int = 0, out: str | Path | None = None,
               safety=None, embed=None, temperature: float = 0.8, top_k: int = 50) -> CopyResult:
    """Generate, filter, rank and (with ``out``) write ``copy.txt`` + ``copy.json`` (the sidecar)."""
    if num < 1:
        raise InputError(f"--num must be at least 1, got {num}")
    system, user = build_prompt(brief)
    if safety is not None:
        safety.check_prompt(user)
    prompt = backend.render(system, user)
    cfg = SamplingConfig(max_new_tokens=MAX_NEW_TOKENS[brief.kind], temperature=temperature, top_k=top_k,
                         seed=seed)
    kept, rejected = [], []
    for cand in backend.sample(prompt, num, cfg):
        text = clean(cand.text, brief.kind)
        why = "duplicate" if any(k.text == text for k in kept) else rejection(text, brief, safety, prompt)
        if why:
            rejected.append(Scored(text, cand.loglik, keyword_coverage(text, brief), rejected=why))
        else:
            kept.append(Candidate(text, cand.loglik))
    if embed is None:
        from genchain.data.embed import default_embedder

        embed = default_embedder().embed
    result = CopyResult(brief, prompt, rank(kept, brief, embed), rejected)
    if out is not None:
        out = Path(out)
        atomic_write_text(out / "copy.txt", "".join(f"{s.text}\n\n" for s in result.ranked))
        atomic_write_json(out / "copy.json", {
            "backend": getattr(backend, "name", type(backend).__name__), "brief": asdict(brief),
            "config": {"num": num, "temperature": temperature, "top_k": top_k,
                       "max_new_tokens": cfg.max_new_tokens, "mmr_lambda": 0.7},
            "seed": seed, "prompt": prompt,
            "candidates": [asdict(s) for s in result.ranked], "rejected": [asdict(s) for s in result.rejected]})
    return result
