"""Interop with transformers, checked on tiny random GPT-2 checkpoints that the tests create."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from genchain.errors import InputError
from genchain.interop.hf import export_hf, import_hf
from genchain.train.lm import load_gpt


@pytest.fixture
def hf_checkpoint(tmp_path):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                        activation_function="gelu_new")
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(tmp_path / "hf")
    return tmp_path / "hf", model


def test_imported_model_matches_transformers_logits(hf_checkpoint, tmp_path):
    hf_dir, reference = hf_checkpoint
    import_hf(hf_dir, tmp_path / "run")
    ours, card = load_gpt(tmp_path / "run")
    ours.eval()
    idx = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx).logits, reference(idx).logits, atol=1e-4, rtol=1e-4)
    assert ours.config.activation == "gelu_tanh" and card["imported_from"]


def test_exported_run_loads_in_transformers_with_the_same_logits(tiny_run, tmp_path):
    export_hf(tiny_run, tmp_path / "hf")
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    ours, _ = load_gpt(tiny_run)
    ours.eval()
    idx = torch.randint(0, ours.config.vocab_size, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(theirs(idx).logits, ours(idx).logits, atol=1e-4, rtol=1e-4)
    assert (tmp_path / "hf" / "genchain_tokenizer.json").is_file()


def test_round_trip_of_a_model_without_biases(char_dataset, tmp_path):
    from conftest import TINY_MODEL
    from genchain.train.lm import train_gpt

    train_gpt(char_dataset, tmp_path / "run", overrides=TINY_MODEL + ["bias=false", "max_iters=2"])
    export_hf(tmp_path / "run", tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "back")
    a, _ = load_gpt(tmp_path / "run")
    b, _ = load_gpt(tmp_path / "back")
    idx = torch.randint(0, a.config.vocab_size, (1, 12))
    a.eval(), b.eval()
    torch.testing.assert_close(a(idx).logits, b(idx).logits, atol=1e-5, rtol=1e-5)


def test_bpe_tokenizer_exports_for_transformers(tmp_path):
    from transformers import AutoTokenizer

    from conftest import TINY_MODEL, make_corpus
    from genchain.data.tokens import prepare_text
    from genchain.train.lm import train_gpt

    (tmp_path / "c.txt").write_text(make_corpus(300))
    prepare_text([str(tmp_path / "c.txt")], tmp_path / "d", tokenizer="bpe", vocab_size=300)
    train_gpt(tmp_path / "d", tmp_path / "run", overrides=TINY_MODEL + ["max_iters=2"])
    export_hf(tmp_path / "run", tmp_path / "hf")
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tok.decode(tok("the cat sees a rose.")["input_ids"]) == "the cat sees a rose."


def test_import_rejects_what_it_cannot_read(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        import_hf(tmp_path, tmp_path / "run")
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(InputError, match="only GPT-2"):
        import_hf(tmp_path, tmp_path / "run")
