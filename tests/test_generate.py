import pytest
import torch

from genchain.errors import ConfigError, RunDirError
from genchain.generate.text import SamplingConfig, TextGenerator, sample_next


@pytest.fixture(scope="module")
def generator(tiny_run):
    return TextGenerator.from_run(tiny_run, dtype="fp32")


def test_same_seed_same_text_and_other_seeds_differ(generator):
    cfg = SamplingConfig(max_new_tokens=40, seed=5)
    first = generator.generate("the ", 3, cfg)
    assert first == generator.generate("the ", 3, cfg)
    assert first != generator.generate("the ", 3, SamplingConfig(max_new_tokens=40, seed=6))
    assert all(len(t) == 40 for t in first)


def test_generation_runs_past_the_context_window(generator):
    block = generator.model.config.block_size
    (text,) = generator.generate("", 1, SamplingConfig(max_new_tokens=3 * block, seed=0))
    assert len(text) == 3 * block


def test_stop_strings_cut_the_text(generator):
    texts = generator.generate("the ", 4, SamplingConfig(max_new_tokens=200, seed=1, stop=(".",)))
    assert all("." not in t for t in texts)
    assert any(len(t) < 200 for t in texts)


def test_stream_yields_the_same_text_as_generate(generator):
    cfg = SamplingConfig(max_new_tokens=50, seed=9, stop=("ea",))
    (whole,) = generator.generate("a ", 1, cfg)
    assert "".join(generator.stream("a ", cfg)) == whole


def test_greedy_equals_top_k_1_and_tiny_top_p():
    logits = torch.tensor([[0.1, 2.0, 0.3, 1.9], [3.0, 0.0, -1.0, 2.5]])
    greedy = sample_next(logits, SamplingConfig(temperature=0), None, None)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next(logits, SamplingConfig(top_k=1), None, g), greedy)
    assert torch.equal(sample_next(logits, SamplingConfig(top_k=0, top_p=0.01), None, g), greedy)


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    g = torch.Generator().manual_seed(0)
    draws = {int(sample_next(probs.log(), SamplingConfig(temperature=1, top_k=0, top_p=0.8), None, g))
             for _ in range(300)}
    assert draws == {0, 1}


def test_repetition_penalty_lowers_seen_tokens():
    logits = torch.tensor([[2.0, 2.0, -1.0]])
    history = torch.tensor([[0, 2]])
    cfg = SamplingConfig(temperature=0, repetition_penalty=2.0)
    assert int(sample_next(logits, cfg, history, None)) == 1


@pytest.mark.parametrize("kwargs", [{"temperature": -1}, {"top_p": 0}, {"top_k": -2}, {"max_new_tokens": 0},
                                    {"repetition_penalty": 0}])
def test_bad_sampling_settings(kwargs):
    with pytest.raises(ConfigError):
        SamplingConfig(**kwargs)


def test_prompt_with_unknown_characters(generator):
    from genchain.errors import InputError

    with pytest.raises(InputError, match="not in the tokenizer"):
        generator.generate("€", 1, SamplingConfig(max_new_tokens=2))


def test_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(RunDirError, match="not a genchain run dir"):
        TextGenerator.from_run(tmp_path)


def test_a_run_of_another_family(tiny_run, tmp_path):
    import json
    import shutil

    other = tmp_path / "gan"
    shutil.copytree(tiny_run, other)
    card = json.loads((other / "card.json").read_text())
    (other / "card.json").write_text(json.dumps({**card, "family": "image", "model": "gan"}))
    with pytest.raises(RunDirError, match="holds a 'image' model"):
        TextGenerator.from_run(other)


def test_bf16_generation_works(tiny_run):
    gen = TextGenerator.from_run(tiny_run, dtype="bf16")
    assert gen.model.transformer.wte.weight.dtype == torch.bfloat16
    assert len(gen.generate("the", 2, SamplingConfig(max_new_tokens=10, seed=0))[0]) == 10
