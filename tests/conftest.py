"""Shared fixtures: a small real corpus, a prepared dataset and a trained tiny run, built once per session."""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import random
import shutil
import subprocess
import tempfile
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


@pytest.fixture(scope="session")
def _postgres_server():
    """A real PostgreSQL server for this test session (Debian's package), or a skip saying why there is none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("no PostgreSQL server here (/usr/lib/postgresql/*/bin/initdb)")
    bindir = Path(found[-1]).parent
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="gc-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(base, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    try:
        subprocess.run(as_user + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "gc", "--no-sync"],
                       check=True, capture_output=True)
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                                  f"-k {base} -c listen_addresses='' -F", "start"], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {err}")
    yield bindir, base
    subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                   capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def postgres_url(_postgres_server, request):
    """A fresh, empty database on the session's server for each test, so tests never see each other's tables."""
    bindir, base = _postgres_server
    name = "t_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    subprocess.run([str(bindir / "createdb"), "-h", str(base), "-U", "gc", name], check=True, capture_output=True)
    return f"postgresql://gc@/{name}?host={base}"
