import pytest

from genchain.data.tokenize import BPETokenizer, CharTokenizer, load_tokenizer, save_tokenizer
from genchain.errors import InputError


def test_char_ids_are_sorted_characters_like_nanogpt():
    tok = CharTokenizer.train(["hello world"])
    assert tok.chars == sorted(set("hello world"))
    assert tok.encode("hello").tolist() == [tok.chars.index(c) for c in "hello"]
    assert tok.decode(tok.encode("world")) == "world"


def test_char_tokenizer_names_unknown_characters():
    tok = CharTokenizer.train(["abc"])
    with pytest.raises(InputError, match="'xz'"):
        tok.encode("axbz")


def test_bpe_round_trips_any_unicode(tmp_path):
    tok = BPETokenizer.train(["the quick brown fox jumps over the lazy dog. " * 50, "床前明月光，疑是地上霜。"], 300)
    for text in ["the fox", "明月 🌙 unseen words"]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.eos_id is not None


@pytest.mark.parametrize("tok", [CharTokenizer.train(["abc d"]), BPETokenizer.train(["abc d " * 20], 260)],
                         ids=["char", "bpe"])
def test_save_and_load_give_the_same_encoding(tok, tmp_path):
    save_tokenizer(tok, tmp_path / "tokenizer.json")
    loaded = load_tokenizer(tmp_path / "tokenizer.json")
    assert loaded.kind == tok.kind
    assert loaded.encode("abc d").tolist() == tok.encode("abc d").tolist()


def test_bpe_vocab_too_small():
    with pytest.raises(InputError, match="too small"):
        BPETokenizer.train(["abc"], 100)


def test_corrupt_tokenizer_file(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(InputError, match="corrupt"):
        load_tokenizer(tmp_path / "tokenizer.json")
