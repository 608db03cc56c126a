"""Music models: the GPT of :mod:`genchain.models.gpt` over note tokens (:mod:`genchain.data.music_tokens`).

No new architecture is needed -- a REMI token stream is a language -- so the variants here only fix sizes
that suit it: the vocabulary is ~250 tokens, a 4/4 chorale bar is ~45 tokens, and a 256-token context holds
five to six bars, enough for a four-bar phrase and its cadence. The width (128) is what a few CPU minutes
can train: ~0.8M parameters see the corpus (~280k tokens) about ten times in six CPU minutes.
They are registered under the family ``music`` so ``train music`` and ``generate music`` can check a run.
"""

from __future__ import annotations

from genchain.data.music_tokens import VOCAB
from genchain.models.gpt import GPT, GPTConfig
from genchain.models.registry import register_model

VARIANTS: dict[str, dict[str, object]] = {
    "music-gpt": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 256, "dropout": 0.0},
    "music-gpt-tiny": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 64},
}


def variant_defaults(name: str) -> dict[str, object]:
    """The GPTConfig values a registered music model name stands for, with the music vocabulary size."""
    return {**VARIANTS.get(name, {}), "vocab_size": len(VOCAB)}


def _build(name: str, kwargs: dict) -> GPT:
    return GPT(GPTConfig(**{**variant_defaults(name), **kwargs}))


@register_model("music-gpt", family="music")
def music_gpt(**kwargs) -> GPT:
    """Note-token GPT: 4 layers, 4 heads, 128 wide, 256-token context (five to six 4/4 bars)."""
    return _build("music-gpt", kwargs)


@register_model("music-gpt-tiny", family="music")
def music_gpt_tiny(**kwargs) -> GPT:
    """Two layers, 32 wide, 64-token context: for tests."""
    return _build("music-gpt-tiny", kwargs)
