"""Training, resuming, evaluating and generating with sentence VAE runs, through the library and the CLI."""

import json
import time

import pytest
import torch

from genchain import rundir
from genchain.cli import main
from genchain.data.dataset import DatasetWriter, base_features, make_step
from genchain.errors import ConfigError, InputError, RunDirError
from genchain.generate.text_vae import TextVAEGenerator
from genchain.train.checkpoint import read_weights
from genchain.train.text_vae import evaluate_text_vae, load_text_vae, train_text_vae
from genchain.train.text_vae_data import hash_fraction

SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "her sister", "the bird"]
VERBS = ["sat on", "looked at", "ran past", "sang to", "found"]
OBJECTS = ["the mat", "the moon", "a tree", "the river", "an apple", "the door"]
SENTENCES = [f"{s} {v} {o}." for s in SUBJECTS for v in VERBS for o in OBJECTS]  # 180 short sentences
pytestmark = pytest.mark.slow  # each test trains or loads a real (tiny) run: seconds each on 2 shared cores

TINY = ["model=text-vae-tiny", "bpe_vocab=300", "batch_size=16", "max_iters=20", "eval_interval=10",
        "log_interval=5", "eval_sentences=20", "eval_k=3", "tensorboard=false", "warmup_iters=2",
        "kl_anneal_iters=10", "lr_decay_iters=20"]


def _text_dataset(path, train, test=(), features=None):
    with DatasetWriter(path, "text", features or base_features("text")) as writer:
        for i, text in enumerate(train):
            writer.add({"id": f"train-{i}", "source": "s.txt", "text": text}, split="train")
        for i, text in enumerate(test):
            writer.add({"id": f"test-{i}", "source": "s.txt", "text": text}, split="test")
        writer.close({"sources": [{"path": "s.txt", "licence": "CC0-1.0"}],
                      "steps": [make_step("ingest", {}, rows_in=None, rows_out=len(train), started=time.time())]})
    return path


@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
    long = ["word " * 80]  # longer than max_len: dropped, and counted
    return _text_dataset(tmp_path_factory.mktemp("data") / "sentences", SENTENCES + long)


@pytest.fixture(scope="module")
def vae_run(sentences, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tvae"
    train_text_vae(sentences, out, overrides=TINY)
    return out


def test_training_records_the_run(vae_run):
    card = rundir.read_card(vae_run)
    assert card["family"] == "text-vae" and card["model"] == "text-vae-tiny" and card["latent_dim"] == 4
    splits = card["data"]["splits"]
    assert splits["train"]["dropped_longer_than_max_len"] + splits["val"]["dropped_longer_than_max_len"] + \
        splits["test"]["dropped_longer_than_max_len"] == 1
    assert splits["val"]["from"] == "5% of train by text hash"
    expected_val = sum(1 for s in SENTENCES if hash_fraction(s) < 0.05)
    assert splits["val"]["sentences"] == expected_val > 0
    assert sum(splits[s]["sentences"] for s in ("train", "val", "test")) == len(SENTENCES)
    evals = [json.loads(line) for line in (vae_run / rundir.METRICS).read_text().splitlines()
             if json.loads(line)["kind"] == "eval"]
    assert [e["iter"] for e in evals] == [10, 20]
    first = [k for k in evals[0] if k not in ("kind", "iter", "time")][0]
    assert first == "val_nll"
    assert evals[-1]["val_nll"] == pytest.approx(evals[-1]["val_rec"] + evals[-1]["val_kl"])
    assert evals[-1]["val_nll"] < evals[0]["val_nll"]
    assert (vae_run / rundir.TOKENIZER).is_file()


@pytest.mark.slow
def test_resume_continues_exactly(sentences, vae_run, tmp_path):
    out = tmp_path / "resumed"
    train_text_vae(sentences, out, overrides=[*TINY, "max_iters=10"])
    result = train_text_vae(sentences, out, overrides=["max_iters=20"], resume=True)
    assert result.iters == 20
    a, _ = read_weights(vae_run / rundir.LAST_WEIGHTS)
    b, _ = read_weights(out / rundir.LAST_WEIGHTS)
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)
    with pytest.raises(ConfigError, match="model differs"):
        train_text_vae(sentences, out, overrides=["max_iters=30", "latent_dim=9"], resume=True)


def test_evaluate_report(vae_run):
    report = evaluate_text_vae(vae_run, split="test", k=5)
    assert report["split"] == "test" and report["sentences"] > 0 and report["k"] == 5
    assert report["nll_elbo"] == pytest.approx(report["rec"] + report["kl"])
    assert report["ppl"] == pytest.approx(2.718281828 ** (report["nll_iwae"] * report["sentences"]
                                                          / report["tokens"]), rel=1e-6)
    assert json.loads((vae_run / "eval_test.json").read_text())["nll_iwae"] == report["nll_iwae"]


def test_generator_api(vae_run):
    gen = TextVAEGenerator.from_run(vae_run, device="cpu")
    a = gen.sample(4, seed=3, temperature=1.0)
    assert len(a) == 4 and all(isinstance(t, str) for t in a)
    assert gen.sample(4, seed=3) == a and gen.sample(2, seed=3, temperature=0) == gen.sample(2, seed=3, temperature=0)
    full, short = gen.sample(3, seed=1), gen.sample(3, seed=1, max_len=2)  # same z, same draws, cut short
    assert all(f.startswith(s) for f, s in zip(full, short, strict=True)) and short != full
    path = gen.interpolate("the cat sat on the mat.", "a dog found the moon.", steps=5)
    assert len(path) == 5
    assert gen.reconstruct(["the cat sat on the mat."])[0] == path[0]  # both ends are the posterior means
    with pytest.raises(InputError, match="empty sentence"):
        gen.interpolate("", "a dog found the moon.")
    with pytest.raises(ConfigError, match="steps"):
        gen.interpolate("a", "b", steps=1)


@pytest.mark.slow
def test_cli_sample_interpolate_and_detect(vae_run, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    assert main(["generate", "text", "--run", str(vae_run), "--num", "3", "--seed", "1", "-o", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3 and lines[0]["run"] == str(vae_run)
    assert (tmp_path / "s.jsonl.manifest.json").is_file()  # signed like GPT output
    assert main(["generate", "text", "--run", str(vae_run), "--interpolate", "the cat sat on the mat.",
                 "a dog found the moon.", "--steps", "4", "--no-sign"]) == 0
    printed = capsys.readouterr().out
    assert "  4  " in printed
    assert main(["watermark", "detect", str(out), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert len(found) == 3 and all(r["manifest_says"] == "watermarked" for r in found)
    assert main(["generate", "text", "--run", str(vae_run), "--prompt", "hi"]) == 2
    assert "only for GPT runs" in capsys.readouterr().err


def test_cli_train_and_lm_baseline(sentences, tmp_path, capsys):
    out = tmp_path / "lm"
    assert main(["train", "text-vae", "--data", str(sentences), "--out", str(out), *TINY,
                 "model=text-lm-gru-tiny", "max_iters=5", "eval_interval=5"]) == 0
    assert "finished iteration 5" in capsys.readouterr().out
    model, _, _, card = load_text_vae(out)
    assert model.latent_dim == 0 and card["task"] == "causal-lm"
    gen = TextVAEGenerator.from_run(out)
    assert len(gen.sample(2, seed=0)) == 2
    with pytest.raises(InputError, match="no latent space"):
        gen.interpolate("the cat sat on the mat.", "a dog found the moon.")


def test_bad_inputs_give_clear_errors(sentences, tmp_path, capsys):
    empty = _text_dataset(tmp_path / "empty", ["   ", "\n"])
    with pytest.raises(InputError, match="no non-empty training text"):
        train_text_vae(empty, tmp_path / "r1", overrides=TINY)
    features = {k: v for k, v in base_features("text").items() if k != "text"}
    features["body"] = {"dtype": "string", "_type": "Value"}
    no_text = _text_dataset(tmp_path / "notext", [], features=features)
    with pytest.raises(InputError, match='no "text" column'):
        train_text_vae(no_text, tmp_path / "r2", overrides=TINY)
    with pytest.raises(ConfigError, match="kl_anneal must be one of"):
        train_text_vae(sentences, tmp_path / "r3", overrides=[*TINY, "kl_anneal=sigmoid"])
    with pytest.raises(ConfigError, match="is a 'text' model"):
        train_text_vae(sentences, tmp_path / "r4", overrides=[*TINY, "model=gpt-tiny"])
    with pytest.raises(InputError, match="no sentence of at most"):
        train_text_vae(sentences, tmp_path / "r5", overrides=[*TINY, "max_len=3"])
    gpt_run = tmp_path / "gpt"
    gpt_run.mkdir()
    rundir.write_card(gpt_run, {"family": "text", "model": "gpt"})
    with pytest.raises(RunDirError, match="not a 'text-vae' one"):
        TextVAEGenerator.from_run(gpt_run)
    (gpt_run / rundir.CONFIG).write_text("{}\n")
    assert main(["generate", "text", "--run", str(gpt_run), "--interpolate", "a", "b", "--no-sign"]) == 2
    assert "--interpolate needs a sentence VAE run" in capsys.readouterr().err
