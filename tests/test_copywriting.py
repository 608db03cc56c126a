"""genchain copy: templates, filters, ranking signals on known cases, and end to end with a tiny real Llama."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from genchain.apps.copywriting import (
    LENGTH_LIMITS,
    Brief,
    build_prompt,
    keyword_coverage,
    mmr,
    rank,
    rejection,
    write_copy,
)
from genchain.errors import InputError
from genchain.generate.hf_backend import Candidate, HFBackend, load_backend
from genchain.provenance.safety import Blocklist, SafetyFilter
from tiny_llama import make_tiny_llama


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A real LlamaForCausalLM (2 layers, 32 wide) and a BPE tokenizer trained here, with a chat template."""
    corpus = ["Write a short slogan for a solar charger. Tone: playful. Sunlight power for hikers!"] * 20
    return make_tiny_llama(tmp_path_factory.mktemp("tiny_llama"), corpus, vocab_size=200)


def test_copies_of_the_instructions_are_rejected_but_the_brief_words_are_not():
    zh = Brief.from_args("云朵枕头", "慢回弹; 可水洗", kind="social-post", lang="zh")
    assert "copies the instructions" in rejection("你是一名专业的中文广告文案撰稿人。云朵枕头，慢回弹！", zh)
    assert "copies the instructions" in rejection("卖点：慢回弹；可水洗。快来买云朵枕头吧！", zh)
    assert rejection("云朵枕头慢回弹，可水洗，一觉睡到天亮。", zh) is None
    en = Brief.from_args("SunCharge", "charges by sunlight", kind="slogan")
    assert "copies the instructions" in rejection("Key features: charges by sunlight.", en)
    assert rejection("SunCharge: charges by sunlight, anywhere.", en) is None


def test_templates_per_kind_and_language():
    en = Brief("SunCharge", ("solar", "waterproof"), "hikers", "playful", "social-post", "en", ("cheap",))
    system, user = build_prompt(en)
    assert "copywriter" in system and "social media post" in user
    assert "solar; waterproof" in user and "hikers" in user and "playful" in user and "cheap" in user
    zh = Brief("云朵枕头", ("慢回弹", "可水洗"), "上班族", "温暖", "slogan", "zh")
    system, user = build_prompt(zh)
    assert "文案" in system and "广告语" in user and "慢回弹；可水洗" in user and "上班族" in user
    assert build_prompt(Brief("X", kind="news"))[1] != build_prompt(Brief("X", kind="slogan"))[1]


def test_filters_length_banned_and_safety(tmp_path):
    brief = Brief("SunCharge", kind="slogan", banned=("cheap",))
    assert rejection("Sunlight in your pocket.", brief) is None
    assert rejection("Hi", brief).startswith("length")
    assert rejection("x" * (LENGTH_LIMITS["en"]["slogan"][1] + 1), brief).startswith("length")
    assert rejection("So CHEAP and sunny!", brief) == "banned word 'cheap'"
    assert rejection("Sunlight in your poc\ufffd", brief) == "broken character"
    assert rejection("Write a short slogan", brief, prompt="<user>Write a short slogan for X") == "echoes the prompt"
    safety = SafetyFilter(Blocklist.load(shipped=False, files=[_blocklist(tmp_path)]), home=tmp_path)
    assert rejection("Buy the zorblax charger now", brief, safety) == "safety filter"
    assert rejection("Buy the sunny charger now", brief, safety) is None


def _blocklist(tmp_path):
    path = tmp_path / "block.txt"
    path.write_text("[test]\nzorblax\n", encoding="utf-8")
    return path


def test_keyword_coverage_known_cases():
    brief = Brief("SunCharge power bank", ("charges by sunlight", "waterproof"))
    assert keyword_coverage("Waterproof sunlight power!", brief) == 1.0  # power->product, sunlight, waterproof
    assert keyword_coverage("Waterproof.", brief) == pytest.approx(1 / 3)
    assert keyword_coverage("Nothing relevant", brief) == 0.0
    zh = Brief("云朵枕头", ("慢回弹", "可水洗"), lang="zh")
    assert keyword_coverage("云朵枕头，慢回弹更舒适", zh) == pytest.approx(2 / 3)


def test_mmr_prefers_a_diverse_second_pick():
    # 0 and 1 are near-duplicates and the two most relevant; 2 is orthogonal and a little less relevant
    vecs = np.array([[1.0, 0.0], [0.999, 0.0447], [0.0, 1.0]])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    rel = np.array([1.0, 0.95, 0.8])
    assert mmr(rel, vecs, 3, lam=0.5) == [0, 2, 1]
    assert mmr(rel, vecs, 3, lam=1.0) == [0, 1, 2]  # pure relevance


def test_rank_orders_by_likelihood_and_coverage():
    brief = Brief("SunCharge", ("solar",))
    cands = [Candidate("Plain words here", -3.0), Candidate("SunCharge solar joy", -1.0)]
    onehot = lambda texts: np.eye(len(texts))  # noqa: E731  (orthogonal: no diversity penalty)
    ranked = rank(cands, brief, onehot)
    assert [s.text for s in ranked] == ["SunCharge solar joy", "Plain words here"]
    assert ranked[0].relevance == pytest.approx(1.0) and ranked[1].relevance == pytest.approx(0.0)


def test_end_to_end_tiny_backend_writes_sidecar(tiny_llama, tmp_path):
    backend = load_backend(str(tiny_llama))
    assert isinstance(backend, HFBackend)
    assert backend.render("sys", "user").startswith("<|system|>sys</s><|user|>user")
    brief = Brief("solar charger", ("sunlight",), "hikers", "playful", "social-post")
    out = tmp_path / "copy"
    result = write_copy(brief, backend, num=4, seed=1, out=out, embed=lambda t: np.eye(len(t)))
    side = json.loads((out / "copy.json").read_text(encoding="utf-8"))
    assert side["seed"] == 1 and side["backend"] == str(tiny_llama) and side["prompt"] == result.prompt
    assert side["brief"]["product"] == "solar charger" and side["config"]["num"] == 4
    assert len(result.ranked) + len(result.rejected) == 4
    for s in result.ranked + result.rejected:
        assert s.loglik < 0  # a mean log-probability of real tokens
    again = write_copy(brief, backend, num=4, seed=1, embed=lambda t: np.eye(len(t)))
    assert [s.text for s in again.ranked + again.rejected] == [s.text for s in result.ranked + result.rejected]


def test_loglik_matches_a_manual_forward(tiny_llama):
    import torch

    from genchain.generate.text import SamplingConfig

    backend = HFBackend.from_dir(tiny_llama)
    prompt = backend.render("s", "u")
    [cand] = backend.sample(prompt, 1, SamplingConfig(max_new_tokens=5, temperature=0, seed=0))
    ids = backend.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    full = backend.model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=backend.tokenizer.eos_token_id)
    new = full[0, ids.shape[1]:].tolist()
    eos = backend.tokenizer.eos_token_id
    n = new.index(eos) if eos in new else len(new)
    with torch.no_grad():
        logp = torch.log_softmax(backend.model(full).logits[0, ids.shape[1] - 1:-1], -1)
    expected = float(torch.stack([logp[i, new[i]] for i in range(max(n, 1))]).mean())
    assert cand.loglik == pytest.approx(expected, abs=1e-4)


def test_bad_input_errors(tiny_llama, tmp_path):
    with pytest.raises(InputError, match="no product"):
        Brief.from_args("  ")
    with pytest.raises(InputError, match="unknown kind"):
        Brief("x", kind="poem")
    with pytest.raises(InputError, match="unknown backend"):
        load_backend(str(tmp_path / "nowhere"))
    from genchain.generate.text import SamplingConfig

    backend = HFBackend.from_dir(tiny_llama)
    with pytest.raises(InputError, match="context"):
        backend.sample("solar " * 600, 2, SamplingConfig(max_new_tokens=8))


def test_cli_registers_and_exits_2_on_empty_brief(tiny_llama, capsys):
    from genchain.cli_copy import add_copy_command

    def command(sub, name, func, help_text):
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        return p

    parser = argparse.ArgumentParser()
    add_copy_command(parser.add_subparsers(dest="group"), command)
    args = parser.parse_args(["copy", "--product", "", "--backend", str(tiny_llama)])
    with pytest.raises(InputError, match="no product"):
        args.func(args)
    with pytest.raises(SystemExit) as err:
        parser.parse_args(["copy", "--product", "x", "--kind", "poem"])
    assert err.value.code == 2


def test_clean_drops_preambles_and_quotes():
    from genchain.apps.copywriting import clean

    assert clean("Here's a possible slogan:\n\n\"Solar Sun!\"\nIt is great.", "slogan") == "Solar Sun!"
    assert clean("Slogan: Power from the sky", "slogan") == "Power from the sky"
    assert clean("Line one.\nLine two.", "product-description") == "Line one.\nLine two."


def test_gpt_run_backend_scores_and_refuses_a_long_prompt(tiny_run):
    from genchain.generate.hf_backend import GPTBackend
    from genchain.generate.text import SamplingConfig

    backend = load_backend(str(tiny_run))
    assert isinstance(backend, GPTBackend)
    cands = backend.sample("the ", 3, SamplingConfig(max_new_tokens=10, seed=0))
    assert len(cands) == 3 and all(c.loglik < 0 for c in cands)
    assert cands == backend.sample("the ", 3, SamplingConfig(max_new_tokens=10, seed=0))
    with pytest.raises(InputError, match="context"):
        backend.sample("the " * backend.context, 1, SamplingConfig(max_new_tokens=4))


def test_rank_with_minilm_sinks_a_paraphrase():
    from genchain.data.embed import default_embedder

    texts = ["Sunlight charges your phone anywhere", "Your phone charges anywhere with sunlight",
             "Cheese pizza for dinner tonight"]
    ranked = rank([Candidate(t, -1.0) for t in texts], Brief("gadget"), default_embedder().embed)
    assert [s.text for s in ranked] == [texts[0], texts[2], texts[1]]
