import pytest
import torch

from genchain.errors import ConfigError
from genchain.models.gpt import GPT, GPTConfig
from genchain.models.layers import Dropout
from genchain.models.registry import create_model, list_models
from genchain.train.checkpoint import load_weights, model_tensors, save_weights

TINY = [e.name for e in list_models("text") if e.name.endswith("-tiny")]  # other families test theirs


@pytest.mark.parametrize("name", TINY)
def test_every_tiny_variant_trains_saves_and_loads(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, vocab_size=17)
    idx = torch.randint(0, 17, (2, 8))
    out = model(idx, idx)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    save_weights(tmp_path / "w.safetensors", model_tensors(model), {"iter": "0"})
    clone = create_model(name, vocab_size=17)
    load_weights(clone, tmp_path / "w.safetensors")
    model.eval(), clone.eval()
    torch.testing.assert_close(model(idx).logits, clone(idx).logits)


def test_unknown_model_name_lists_known_ones():
    with pytest.raises(ConfigError, match="known models: .*gpt-tiny"):
        create_model("gpt-huge")


@pytest.mark.parametrize("batch", [1, 3])
def test_kv_cache_decoding_matches_full_forward(batch):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    idx = torch.randint(0, 11, (batch, 10))
    full = model(idx).logits  # (B, T, V)
    cache = model.new_cache(batch)
    steps = [model(idx[:, :4], cache=cache).logits[:, -1]]
    for t in range(4, 10):
        steps.append(model(idx[:, t : t + 1], cache=cache).logits[:, -1])
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 3:], atol=1e-5, rtol=1e-5)


def test_math_attention_matches_sdpa():
    torch.manual_seed(0)
    sdpa = GPT(GPTConfig(vocab_size=13, block_size=24, n_layer=2, n_head=4, n_embd=32, attention="sdpa"))
    math_ = GPT(GPTConfig(vocab_size=13, block_size=24, n_layer=2, n_head=4, n_embd=32, attention="math"))
    math_.load_state_dict(sdpa.state_dict())
    idx = torch.randint(0, 13, (2, 24))
    torch.testing.assert_close(sdpa(idx, idx).loss, math_(idx, idx).loss, atol=1e-5, rtol=1e-5)


def test_sequence_longer_than_block_size_is_refused():
    model = create_model("gpt-tiny", vocab_size=5)
    with pytest.raises(ValueError, match="exceeds block_size"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_byte_mask_dropout_keeps_the_expectation_and_masks_gradients():
    torch.manual_seed(0)
    drop = Dropout(0.2)
    x = torch.ones(200_000, requires_grad=True)
    y = drop(x)
    kept = (y != 0).float().mean().item()
    assert kept == pytest.approx(1 - 51 / 256, abs=0.005)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() * drop.scale)
    drop.eval()
    assert torch.equal(drop(x), x)


def test_byte_mask_dropout_is_reproducible_from_the_seed():
    drop = Dropout(0.5)
    torch.manual_seed(3)
    a = drop(torch.ones(1000))
    torch.manual_seed(3)
    assert torch.equal(a, drop(torch.ones(1000)))


def test_packed_linears_give_bit_identical_logits():
    import copy

    from genchain.models.layers import PackedLinear, can_pack_linears, pack_linears_for_cpu

    if not can_pack_linears(torch.device("cpu"), torch.bfloat16):
        pytest.skip("this PyTorch build has no oneDNN linear packing")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=19, block_size=16, n_layer=2, n_head=2, n_embd=32)).to(torch.bfloat16).eval()
    packed = pack_linears_for_cpu(copy.deepcopy(model))
    assert isinstance(packed.lm_head, PackedLinear) and isinstance(packed.transformer.h[0].mlp.c_fc, PackedLinear)
    idx = torch.randint(0, 19, (3, 16))
    with torch.inference_mode():
        assert torch.equal(model(idx).logits, packed(idx).logits)
        cache_a, cache_b = model.new_cache(3), packed.new_cache(3)
        assert torch.equal(model(idx[:, :5], cache=cache_a).logits, packed(idx[:, :5], cache=cache_b).logits)
