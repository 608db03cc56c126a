"""The green-list text watermark: green lists, the z-test under the null, detection of real generations."""

import math

import pytest
import torch
from scipy.stats import binom

from genchain.generate.text import SamplingConfig, TextGenerator
from genchain.provenance.keys import create_identity, derive_secret
from genchain.provenance.watermark_text import (
    HASH,
    TextWatermark,
    binomial_tail,
    detect_text,
    logits_processor,
    text_watermark_key,
    z_score,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def test_green_share_is_gamma_for_every_previous_token():
    vocab, rows = 4096, 1024
    for gamma in (0.25, 0.5):
        mask = TextWatermark(KEY, gamma).green_mask(torch.arange(rows), vocab).float()  # (rows, V)
        assert mask.mean().item() == pytest.approx(gamma, abs=0.002)
        per_row_sd, per_token_sd = (math.sqrt(gamma * (1 - gamma) / n) for n in (vocab, rows))
        assert mask.mean(dim=1).std().item() == pytest.approx(per_row_sd, rel=0.15)  # each green list a fair draw
        assert mask.mean(dim=0).std().item() == pytest.approx(per_token_sd, rel=0.15)  # no token always green


def test_the_cached_table_and_the_direct_hash_agree():
    wm = TextWatermark(KEY)
    prev = torch.tensor([0, 5, 4095, 5, 17])
    small = wm.green_mask(prev, 4096)  # through the (V, V) cache, twice for the repeated 5
    assert torch.equal(small, wm.is_green(prev[:, None], torch.arange(4096)[None, :]))
    assert torch.equal(wm.green_mask(prev, 4096), small)
    big = wm.green_mask(prev, 20_000)  # too large to cache: hashed directly
    assert torch.equal(big[:, :4096], small) and big.shape == (5, 20_000)


def test_apply_adds_delta_to_green_logits_only():
    wm = TextWatermark(KEY, delta=2.0)
    logits = torch.randn(3, 100, dtype=torch.bfloat16)
    prev = torch.tensor([1, 2, 3])
    out = wm.apply(logits, prev)
    assert out.dtype == torch.float32
    mask = wm.green_mask(prev, 100)
    diff = out - logits.float()
    assert torch.allclose(diff[mask], torch.full_like(diff[mask], 2.0))
    assert torch.count_nonzero(diff[~mask]) == 0


def test_keys_choose_unrelated_green_lists():
    prev = torch.arange(256)
    a = TextWatermark(KEY).green_mask(prev, 4096)
    b = TextWatermark(OTHER_KEY).green_mask(prev, 4096)
    assert (a & b).float().mean().item() == pytest.approx(0.25 * 0.25, abs=0.005)


def test_unwatermarked_sequences_give_standard_normal_z():
    wm = TextWatermark(KEY)
    gen = torch.Generator().manual_seed(0)
    zs = torch.tensor([wm.detect_ids(torch.randint(0, 4096, (200,), generator=gen)).z for _ in range(600)])
    assert abs(zs.mean().item()) < 0.15
    assert zs.std().item() == pytest.approx(1.0, abs=0.1)
    assert (zs >= 4.0).sum() == 0


def test_z_and_p_value_formulas():
    assert z_score(75, 100, 0.25) == pytest.approx(50 / math.sqrt(100 * 0.25 * 0.75))
    assert z_score(0, 0, 0.25) == 0.0
    for green, scored in ((30, 100), (60, 200), (5, 10), (190, 200)):
        assert binomial_tail(green, scored, 0.25) == pytest.approx(binom.sf(green - 1, scored, 0.25), rel=1e-9)
    assert binomial_tail(0, 50, 0.25) == 1.0


def test_repeated_pairs_are_scored_once_by_default():
    ids = [7, 9] * 100  # a text that repeats itself: two distinct (prev, token) pairs
    assert TextWatermark(KEY).detect_ids(ids).scored == 2
    assert TextWatermark(KEY, ignore_repeated=False).detect_ids(ids).scored == 199
    assert TextWatermark(KEY).detect_ids([3]).scored == 0 and not TextWatermark(KEY).detect_ids([3]).detected


def test_params_round_trip_and_a_foreign_scheme_is_refused():
    wm = TextWatermark(KEY, gamma=0.5, delta=3.0)
    params = wm.params("ab" * 32)
    assert params["hash"] == HASH and params["tokenizer_sha256"] == "ab" * 32 and params["context_width"] == 1
    again = TextWatermark.from_params(KEY, params)
    assert (again.gamma, again.delta, again.ignore_repeated) == (0.5, 3.0, True)
    with pytest.raises(ValueError, match="hash"):
        TextWatermark.from_params(KEY, {**params, "hash": "something-else"})
    with pytest.raises(ValueError, match="gamma"):
        TextWatermark(KEY, gamma=1.5)
    with pytest.raises(ValueError, match="16 bytes"):
        TextWatermark(b"short")


def test_the_key_is_derived_from_the_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("GENCHAIN_HOME", str(tmp_path))
    alice, bob = create_identity("alice"), create_identity("bob")
    assert text_watermark_key(alice) == derive_secret(alice, "watermark/text/v1")
    assert len(text_watermark_key(alice)) == 32 and text_watermark_key(alice) != text_watermark_key(bob)


@pytest.fixture(scope="module")
def generator(tiny_run):
    return TextGenerator.from_run(tiny_run, device="cpu", dtype="fp32")


def test_a_watermarked_generation_is_detected_and_only_with_its_key(generator):
    wm = TextWatermark(KEY, delta=8.0)
    cfg = SamplingConfig(max_new_tokens=120, temperature=1.0, top_k=0, seed=1, watermark=wm)
    marked = generator.generate("the", num=2, cfg=cfg)
    plain = generator.generate("the", num=2, cfg=SamplingConfig(max_new_tokens=120, temperature=1.0, top_k=0, seed=1))
    for text in marked:
        found = detect_text(text, generator.tokenizer, KEY)
        assert found.detected and found.z > 8 and found.p_value < 1e-12
        assert not detect_text(text, generator.tokenizer, OTHER_KEY).detected
    for text in plain:
        assert abs(detect_text(text, generator.tokenizer, KEY).z) < 4


def test_greedy_decoding_is_watermarked_too(generator):
    wm = TextWatermark(KEY, delta=1000.0)  # so large that only green tokens can win the argmax
    steps = list(generator.generate_ids(generator.encode_prompt("the"), 1,
                                        SamplingConfig(max_new_tokens=60, temperature=0, watermark=wm)))
    ids = [generator.encode_prompt("the")[-1]] + [int(s[0]) for s in steps]
    assert wm.is_green(torch.tensor(ids[:-1]), torch.tensor(ids[1:])).all()


def test_transformers_logits_processor_watermarks_hf_generate():
    from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessorList

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=512, n_positions=96, n_embd=16, n_layer=1, n_head=2,
                                       bos_token_id=0, eos_token_id=None)).eval()
    wm = TextWatermark(KEY, delta=2.0)
    prompt = torch.tensor([[1, 2, 3]])
    kwargs = dict(do_sample=True, max_new_tokens=80, pad_token_id=0, top_k=0)
    with torch.no_grad():
        marked = model.generate(prompt, logits_processor=LogitsProcessorList([logits_processor(wm)]), **kwargs)
        plain = model.generate(prompt, **kwargs)
    assert wm.detect_ids(marked[0, 2:].tolist()).z > 5  # from the last prompt token on
    assert abs(wm.detect_ids(plain[0, 2:].tolist()).z) < 4
