"""A statistical watermark for generated text: Kirchenbauer et al., "A Watermark for Large Language Models", ICML 2023.

The "soft" watermark of the paper's Algorithm 2. Before each token is sampled, the previous token and a secret
key pick a pseudo-random *green list*, a ``gamma`` share of the vocabulary, and ``delta`` is added to the green
logits. Text the model wrote therefore holds more green tokens than chance allows; text written without the key
holds about ``gamma`` of them. Detection needs only the token ids and the key, not the model: count the green
tokens ``g`` among ``T`` scored positions and compute the one-proportion z-test of the paper's Eq. (2),
``z = (g - gamma T) / sqrt(T gamma (1 - gamma))``.

How the green list is drawn. The paper seeds a random permutation of the vocabulary with ``hash(prev) * key`` and
takes its first ``gamma |V|`` entries; that costs one ``randperm`` per sequence per step. Here token ``t`` is green
after ``prev`` when a keyed 32-bit hash of the pair falls below ``gamma * 2**32``: the hash is MurmurHash3's
finaliser (a bijection on 32-bit words with full avalanche) applied to ``mix(prev) XOR mix(t)``, where each side
is first mixed with 32-bit words of ``BLAKE2b(key)``. A (B,) batch of previous tokens gives the (B, V) mask in a
few vectorised integer operations, with no loop over the vocabulary or the batch. The green share for any one
``prev`` is then binomial around ``gamma`` rather than exactly ``gamma`` (for |V| = 4096 and gamma = 0.25:
0.25 +- 0.007), which changes nothing in detection: under the null hypothesis each scored token is green with
probability ``gamma`` over the choice of key. The hash is not a cryptographic PRF; a party who sees many
(prev, token) pairs with their colour could learn green lists, as the paper discusses for any
context-width-1 scheme.

Context width 1 (the previous token only) is the paper's default and the most robust to edits: changing one token
disturbs the colour of at most two scored positions.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

SCHEME = "kgw-text-v1"
HASH = "blake2b-key/murmur3-fmix32-pair/v1"
CONTEXT_WIDTH = 1
DEFAULT_GAMMA = 0.25
DEFAULT_DELTA = 2.0
DEFAULT_Z_THRESHOLD = 4.0  # the paper's threshold: a one-sided false-positive rate of 3.2e-5
_MASK32 = 0xFFFFFFFF
_TABLE_BYTES = 64 * 2**20  # the most a green-list cache may hold: |V| <= 8,192


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for int64 tensors holding 32-bit values, without ever overflowing int64.

    Splitting ``x`` into 16-bit halves keeps every product below 2**48, so the result does not depend on how a
    kernel treats signed overflow.
    """
    low = (x & 0xFFFF) * c
    high = (((x >> 16) * c) & 0xFFFF) << 16
    return (low + high) & _MASK32


def _fmix32(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finaliser: a bijection whose every output bit depends on every input bit."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


@dataclass(frozen=True)
class TextDetection:
    """The outcome of a detection: ``green`` of ``scored`` positions were green, and what that means.

    ``p_value`` is the exact one-sided binomial tail P(G >= green) for G ~ Binomial(scored, gamma), of which
    ``z`` is the normal approximation; ``detected`` follows the paper: ``z >= threshold``.
    """

    z: float
    p_value: float
    green: int
    scored: int
    detected: bool
    threshold: float
    gamma: float
    tokens: int

    @property
    def green_fraction(self) -> float:
        return self.green / self.scored if self.scored else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "green_fraction": self.green_fraction}


def z_score(green: int, scored: int, gamma: float) -> float:
    """The paper's Eq. (2): standard deviations by which ``green`` exceeds its mean under no watermark."""
    if scored == 0:
        return 0.0
    return (green - gamma * scored) / math.sqrt(scored * gamma * (1.0 - gamma))


def binomial_tail(green: int, scored: int, gamma: float) -> float:
    """P(G >= green) for G ~ Binomial(scored, gamma), summed in log space so that long texts do not underflow."""
    if green <= 0:
        return 1.0
    log_gamma, log_rest = math.log(gamma), math.log1p(-gamma)
    log_terms = [math.lgamma(scored + 1) - math.lgamma(k + 1) - math.lgamma(scored - k + 1) + k * log_gamma
                 + (scored - k) * log_rest for k in range(green, scored + 1)]
    top = max(log_terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in log_terms))


class TextWatermark:
    """The green-list watermark for one secret ``key``: biases logits when generating, counts greens when detecting.

    Args:
        key: the secret (32 bytes from :func:`text_watermark_key`); only its holder can embed or detect.
        gamma: the green share of the vocabulary (the paper's gamma; 0.25 is one of its two main settings).
        delta: the bias added to green logits (the paper's delta; 2.0 trades a small perplexity cost for
            detection at about 50-200 tokens).
        z_threshold: z at or above which a text counts as watermarked.
        ignore_repeated: score each (previous token, token) pair once. The z-test assumes independent positions;
            a pair that repeats (a refrain, a list, a model stuck in a loop) repeats its colour and gives no new
            evidence, and counting it again can push plain repetitive text over the threshold. The authors
            point this out for repeated text; we make it the default because a false accusation is the costlier
            error, at the price of fewer scored positions in repetitive outputs.
    """

    def __init__(self, key: bytes, gamma: float = DEFAULT_GAMMA, delta: float = DEFAULT_DELTA, *,
                 z_threshold: float = DEFAULT_Z_THRESHOLD, ignore_repeated: bool = True):
        if not isinstance(key, bytes) or len(key) < 16:
            raise ValueError("the watermark key must be at least 16 bytes; derive it with text_watermark_key()")
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"gamma is the green share of the vocabulary and must lie in (0, 1), got {gamma}")
        if delta < 0:
            raise ValueError(f"delta is the bias added to green logits and must be >= 0, got {delta}")
        self.gamma = float(gamma)
        self.delta = float(delta)
        self.z_threshold = float(z_threshold)
        self.ignore_repeated = ignore_repeated
        words = hashlib.blake2b(key, digest_size=16, person=SCHEME.encode()).digest()
        self._k = [int.from_bytes(words[i:i + 4], "little") for i in range(0, 16, 4)]
        self._cutoff = int(round(self.gamma * 2**32))
        self._token_hash: dict[tuple[int, str], torch.Tensor] = {}
        self._tables: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    # ------------------------------------------------------------------------------------------ green lists
    def _prev_hash(self, prev: torch.Tensor) -> torch.Tensor:
        return _fmix32(_fmix32((prev.long() & _MASK32) ^ self._k[0]) ^ self._k[1])

    def _tok_hash(self, tokens: torch.Tensor) -> torch.Tensor:
        return _fmix32(_fmix32((tokens.long() & _MASK32) ^ self._k[2]) ^ self._k[3])

    def _vocab_hash(self, vocab_size: int, device: torch.device) -> torch.Tensor:
        """The token side of the hash for the whole vocabulary, computed once per (size, device)."""
        cache_key = (vocab_size, str(device))
        if cache_key not in self._token_hash:
            self._token_hash[cache_key] = self._tok_hash(torch.arange(vocab_size, device=device))
        return self._token_hash[cache_key]

    def is_green(self, prev: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Whether each ``tokens`` entry is green after the matching ``prev`` entry (shapes broadcast)."""
        return _fmix32(self._prev_hash(prev) ^ self._tok_hash(tokens)) < self._cutoff

    def _green_rows(self, prev_tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
        vocab = self._vocab_hash(vocab_size, prev_tokens.device)
        return _fmix32(self._prev_hash(prev_tokens)[:, None] ^ vocab[None, :]) < self._cutoff

    def green_mask(self, prev_tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """(B, V) bool: the green list after each of the (B,) previous tokens.

        For vocabularies up to 8,192 tokens the rows are kept in a (V, V) table filled as previous tokens are
        first seen, so a decoding step costs one gather instead of about thirty integer passes over (B, V)
        (measured: 6 ms -> 0.2 ms per step at B = 32, V = 4,096 on one CPU core). Larger vocabularies are hashed
        afresh each step rather than spend |V|**2 bytes.
        """
        if vocab_size * vocab_size > _TABLE_BYTES:
            return self._green_rows(prev_tokens, vocab_size)
        with torch.inference_mode():  # the table may be born in inference mode; keep every update there
            cache_key = (vocab_size, str(prev_tokens.device))
            if cache_key not in self._tables:
                self._tables[cache_key] = (torch.zeros(vocab_size, vocab_size, dtype=torch.bool,
                                                       device=prev_tokens.device),
                                           torch.zeros(vocab_size, dtype=torch.bool, device=prev_tokens.device))
            table, known = self._tables[cache_key]
            prev = prev_tokens.long()
            if not bool(known[prev].all()):
                missing = prev[~known[prev]].unique()
                table[missing] = self._green_rows(missing, vocab_size)
                known[missing] = True
            return table[prev]

    def apply(self, logits: torch.Tensor, prev_tokens: torch.Tensor) -> torch.Tensor:
        """(B, V) ``logits`` with ``delta`` added to each row's green list (a new float32 tensor at least)."""
        if self.delta == 0:
            return logits
        mask = self.green_mask(prev_tokens, logits.size(-1))
        return torch.add(logits.float(), mask, alpha=self.delta)  # in float32: the bias is never rounded to bf16

    # ------------------------------------------------------------------------------------------ detection
    def count_green(self, ids: list[int] | torch.Tensor) -> tuple[int, int]:
        """(green, scored) over ``ids``: each token after the first is scored against its predecessor."""
        ids = torch.as_tensor(ids, dtype=torch.long).flatten()
        if ids.numel() < 2:
            return 0, 0
        pairs = torch.stack([ids[:-1], ids[1:]], dim=1)  # (T, 2): (prev, token)
        if self.ignore_repeated:
            pairs = torch.unique(pairs, dim=0)
        green = self.is_green(pairs[:, 0], pairs[:, 1])
        return int(green.sum()), int(pairs.size(0))

    def detect_ids(self, ids: list[int] | torch.Tensor) -> TextDetection:
        """Test token ids for this key's watermark; no model is needed, only the ids the tokenizer gives."""
        green, scored = self.count_green(ids)
        z = z_score(green, scored, self.gamma)
        return TextDetection(z=z, p_value=binomial_tail(green, scored, self.gamma), green=green, scored=scored,
                             detected=scored > 0 and z >= self.z_threshold, threshold=self.z_threshold,
                             gamma=self.gamma, tokens=len(ids))

    def detect_text(self, text: str, tokenizer: Any) -> TextDetection:
        """Tokenize ``text`` with the generating model's tokenizer and test it."""
        return self.detect_ids([int(i) for i in tokenizer.encode(text)])

    # ------------------------------------------------------------------------------------------ records
    def params(self, tokenizer_sha256: str | None = None) -> dict[str, Any]:
        """What a detector needs besides the key: recorded in the artefact's manifest."""
        params = {"gamma": self.gamma, "delta": self.delta, "context_width": CONTEXT_WIDTH, "hash": HASH,
                  "ignore_repeated": self.ignore_repeated, "z_threshold": self.z_threshold}
        if tokenizer_sha256:
            params["tokenizer_sha256"] = tokenizer_sha256
        return params

    def manifest_field(self, tokenizer_sha256: str | None = None) -> dict[str, Any]:
        """The manifest's ``watermark`` entry for text generated with this watermark."""
        return {"scheme": SCHEME, "applied": True, "params": self.params(tokenizer_sha256)}

    @classmethod
    def from_params(cls, key: bytes, params: dict[str, Any]) -> TextWatermark:
        """The watermark a manifest's ``params`` describe, for detection with ``key``."""
        if params.get("hash", HASH) != HASH or params.get("context_width", CONTEXT_WIDTH) != CONTEXT_WIDTH:
            raise ValueError(f"the text was watermarked with hash {params.get('hash')!r} and context width "
                             f"{params.get('context_width')}; this genchain detects {HASH!r} with width 1")
        return cls(key, gamma=params.get("gamma", DEFAULT_GAMMA), delta=params.get("delta", DEFAULT_DELTA),
                   z_threshold=params.get("z_threshold", DEFAULT_Z_THRESHOLD),
                   ignore_repeated=params.get("ignore_repeated", True))


def detect_text(text: str, tokenizer: Any, key: bytes, gamma: float = DEFAULT_GAMMA,
                z_threshold: float = DEFAULT_Z_THRESHOLD) -> TextDetection:
    """Test ``text`` for the watermark of ``key``; ``tokenizer`` must be the generating model's."""
    return TextWatermark(key, gamma, z_threshold=z_threshold).detect_text(text, tokenizer)


def text_watermark_key(identity: Any) -> bytes:
    """The text watermark secret of a signing identity: ``derive_secret(identity, "watermark/text/v1")``."""
    from genchain.provenance.keys import derive_secret

    return derive_secret(identity, "watermark/text/v1")


# ---------------------------------------------------------------------------------- transformers backends
@functools.cache
def _processor_class() -> type:
    """Built on first use so that importing this module does not import ``transformers`` (about a second)."""
    from transformers import LogitsProcessor

    class WatermarkLogitsProcessor(LogitsProcessor):
        """Adds the green-list bias in ``model.generate(logits_processor=LogitsProcessorList([...]))``.

        Works for any causal LM whose tokenizer is the one the detector will use; beam search and sampling both
        see the biased scores, as in the paper.
        """

        def __init__(self, watermark: TextWatermark):
            self.watermark = watermark

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            return self.watermark.apply(scores, input_ids[:, -1])

    return WatermarkLogitsProcessor


def logits_processor(watermark: TextWatermark) -> Any:
    """A ``transformers.LogitsProcessor`` that applies ``watermark`` during ``model.generate``."""
    return _processor_class()(watermark)


def __getattr__(name: str) -> Any:  # `from genchain.provenance.watermark_text import WatermarkLogitsProcessor`
    if name == "WatermarkLogitsProcessor":
        return _processor_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
