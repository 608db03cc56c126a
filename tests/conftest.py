"""Shared fixtures: a small real corpus, a prepared dataset and a trained tiny run, built once per session."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from genchain.data.tokens import prepare_text
from genchain.train.lm import train_gpt

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY_MODEL = ["n_layer=2", "n_head=2", "n_embd=32", "block_size=32", "batch_size=8", "eval_iters=2",
              "eval_interval=5", "log_interval=5", "tensorboard=false", "warmup_iters=2", "learning_rate=3e-3"]


def make_corpus(n_lines: int = 600, seed: int = 0) -> str:
    """Lines of a small grammar: structured enough that a tiny model's loss falls within a few steps."""
    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "my friend", "the king", "our ship"]
    verbs = ["sees", "loves", "finds", "paints", "calls"]
    objects = ["the moon", "a rose", "the sea", "an old song", "the garden"]
    return "".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}.\n" for _ in range(n_lines))


@pytest.fixture(autouse=True)
def _genchain_home(tmp_path_factory, monkeypatch):
    """Signing is on by default: keep identities and ledgers out of ~/.genchain (subprocesses inherit it)."""
    monkeypatch.setenv("GENCHAIN_HOME", str(tmp_path_factory.mktemp("genchain-home")))


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(make_corpus(), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def char_dataset(corpus_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "char"
    prepare_text([str(corpus_file)], out, tokenizer="char")
    return out


@pytest.fixture(scope="session")
def tiny_run(char_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train_gpt(char_dataset, out, overrides=TINY_MODEL + ["max_iters=20"])
    return out


@pytest.fixture
def tinyshakespeare() -> Path:
    path = SHARED_DATA / "tinyshakespeare.txt"
    if not path.is_file():
        pytest.skip(f"reference data {path} is absent")
    return path
