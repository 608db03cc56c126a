"""Perplexity under a scorer (genchain.eval.scorer): a uniform model gives PPL = V, a real one matches its loss."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from conftest import make_corpus
from genchain.errors import InputError, RunDirError
from genchain.eval.scorer import gpt_scorer, hf_scorer, load_scorer
from genchain.train.checkpoint import model_tensors, save_weights
from genchain.train.lm import load_gpt


@pytest.fixture
def uniform_run(tiny_run, tmp_path):
    """The tiny run with its output layer zeroed: every next-token distribution is uniform over the vocabulary."""
    run = tmp_path / "uniform"
    shutil.copytree(tiny_run, run)
    model, _ = load_gpt(run)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # tied to the token embedding: logits = h @ 0 = 0
    save_weights(run / "model.safetensors", model_tensors(model), {})
    return run, model.config.vocab_size


def test_uniform_gpt_scorer_gives_vocabulary_size_even_past_the_context(uniform_run):
    run, vocab = uniform_run
    scorer = gpt_scorer(run, device="cpu")
    long_text = make_corpus(6)  # ~200 characters: past block_size 32, scored with the sliding window
    result = scorer.perplexity(["the cat sees the moon.", long_text])
    assert result["perplexity"] == pytest.approx(vocab, rel=1e-4)
    assert result["tokens"] == len("the cat sees the moon.") + len(long_text)
    assert result["skipped"] == 0


def test_gpt_scorer_matches_the_models_own_loss(tiny_run):
    scorer = gpt_scorer(tiny_run, device="cpu", dtype="fp32")
    model, _ = load_gpt(tiny_run)
    text = "the king finds a rose."
    ids = scorer.start + scorer.encode(text)
    targets = [-1] * (len(scorer.start) - 1) + ids[len(scorer.start):]  # the start context is not scored
    loss = model(torch.tensor([ids[:-1]]), targets=torch.tensor([targets])).loss.item()
    assert scorer.perplexity([text])["perplexity"] == pytest.approx(math.exp(loss), rel=1e-4)


def test_sliding_window_scores_every_token_once(tiny_run):
    scorer = gpt_scorer(tiny_run, device="cpu", dtype="fp32")
    for length in (1, 31, 32, 33, 90):
        nll, count = scorer.token_nll(scorer.encode(make_corpus(5)[:length]))
        assert count == length and nll > 0


def test_unknown_characters_are_skipped_and_counted(tiny_run):
    result = gpt_scorer(tiny_run, device="cpu").perplexity(["the cat", "ÆØÅ are not in the vocabulary"])
    assert result["skipped"] == 1 and result["tokens"] == len("the cat")


def test_uniform_hugging_face_model_gives_vocabulary_size(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from genchain.data.tokenize import END_OF_TEXT, BPETokenizer

    tok = BPETokenizer.train(make_corpus(200).splitlines(), vocab_size=300)
    PreTrainedTokenizerFast(tokenizer_object=tok.hf, eos_token=END_OF_TEXT,
                            bos_token=END_OF_TEXT).save_pretrained(tmp_path / "hf")
    config = GPT2Config(vocab_size=tok.vocab_size, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    model.save_pretrained(tmp_path / "hf")
    scorer = load_scorer(tmp_path / "hf", device="cpu")
    text = make_corpus(3)  # longer than n_positions=16 in tokens
    result = scorer.perplexity([text])
    assert result["perplexity"] == pytest.approx(tok.vocab_size, rel=1e-4)
    assert result["tokens"] == len(tok.encode(text))
    assert hf_scorer(tmp_path / "hf", device="cpu").start == [tok.eos_id]


def test_scorer_path_errors(tmp_path):
    with pytest.raises(RunDirError, match="neither"):
        load_scorer(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{}")
    with pytest.raises(InputError, match="cannot load"):
        load_scorer(tmp_path / "bad")
