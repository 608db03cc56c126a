"""The sentence VAE's model family, its training devices and its metrics, against known answers."""

import math

import pytest
import torch

from genchain.config import load_recipe
from genchain.errors import ConfigError, InputError
from genchain.eval.text_vae import active_units, iw_log_likelihood, mutual_information, score_sentences
from genchain.models.registry import create_model, list_models
from genchain.models.text_vae import Specials, free_bits_kl, gaussian_kl_per_dim, word_dropout
from genchain.train.checkpoint import load_weights, model_tensors, save_weights
from genchain.train.text_vae import TextVAERecipe, kl_weight_at

TINY = [e.name for e in list_models("text-vae") if e.name.endswith("-tiny")]
V = 21  # 17 tokens + 4 specials
SPECIALS = Specials.for_vocab(V)


def _sentences(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 9) token rows ending in EOS, PAD after it, of varied lengths."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 10, (n,), generator=g)
    tokens = torch.full((n, int(lengths.max())), SPECIALS.pad)
    for i, length in enumerate(lengths.tolist()):
        tokens[i, : length - 1] = torch.randint(0, V - 4, (length - 1,), generator=g)
        tokens[i, length - 1] = SPECIALS.eos
    return tokens, lengths


def test_registry_holds_the_family():
    names = {e.name for e in list_models("text-vae")}
    assert {"text-vae", "text-vae-tiny", "text-vae-transformer", "text-lm-gru"} <= names
    assert len(TINY) >= 3


@pytest.mark.parametrize("name", TINY)
def test_every_tiny_variant_trains_saves_and_loads(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, vocab_size=V, max_positions=12)
    tokens, lengths = _sentences()
    out = model(tokens, lengths, 0.5)
    assert torch.isfinite(out.loss) and out.rec > 0
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    save_weights(tmp_path / "w.safetensors", model_tensors(model), {"iter": "0"})
    clone = create_model(name, vocab_size=V, max_positions=12)
    load_weights(clone, tmp_path / "w.safetensors")
    model.eval(), clone.eval()
    z = torch.randn(tokens.shape[0], model.latent_dim) if model.latent_dim else None
    torch.testing.assert_close(model.log_likelihood(z, tokens), clone.log_likelihood(z, tokens))


@pytest.mark.parametrize("name", ["text-vae-tiny", "text-vae-transformer-tiny", "text-lm-gru-tiny"])
def test_step_decoding_matches_teacher_forcing(name):
    torch.manual_seed(0)
    model = create_model(name, vocab_size=V, max_positions=12).eval()
    tokens, _ = _sentences(3)
    z = torch.randn(3, model.latent_dim) if model.latent_dim else None
    with torch.no_grad():
        full = model.logits(z, model.decoder_inputs(tokens))  # (B, T, V)
        state = model.start_decoding(z, 3)
        steps = []
        for t in range(tokens.shape[1]):
            steps.append(model.next_logits(state))
            state["inputs"] = torch.cat([state["inputs"], tokens[:, t : t + 1]], dim=1)
    torch.testing.assert_close(torch.stack(steps, 1), full.float(), atol=1e-5, rtol=1e-5)


def test_kl_weight_schedules_at_known_iterations():
    assert kl_weight_at(500, "logistic", 1000) == pytest.approx(0.5)
    assert kl_weight_at(0, "logistic", 1000) == pytest.approx(1 / (1 + math.exp(5)))
    assert kl_weight_at(1000, "logistic", 1000) == pytest.approx(1 / (1 + math.exp(-5)))
    assert [kl_weight_at(i, "linear", 200) for i in (0, 50, 200, 900)] == [0.0, 0.25, 1.0, 1.0]
    cyclical = [kl_weight_at(i, "cyclical", 100, 0.5) for i in (0, 25, 50, 99, 100, 125, 250)]
    assert cyclical == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0]
    assert kl_weight_at(7, "none", 100) == 1.0
    with pytest.raises(ConfigError, match="unknown kl_anneal"):
        kl_weight_at(0, "sigmoid", 100)
    with pytest.raises(ConfigError, match="kl_anneal must be one of"):
        load_recipe(TextVAERecipe, overrides=["kl_anneal=sigmoid"])


def test_word_dropout_rate_spares_bos_and_pad():
    torch.manual_seed(0)
    inputs = torch.full((400, 200), 3)
    inputs[:, 0] = SPECIALS.bos
    inputs[:, 150:] = SPECIALS.pad
    out = word_dropout(inputs, 0.3, SPECIALS)
    body = out[:, 1:150]
    assert (body == SPECIALS.unk).float().mean().item() == pytest.approx(0.3, abs=0.005)
    assert ((body == SPECIALS.unk) | (body == 3)).all()
    assert (out[:, 0] == SPECIALS.bos).all() and (out[:, 150:] == SPECIALS.pad).all()
    assert torch.equal(word_dropout(inputs, 0.0, SPECIALS), inputs)


def test_free_bits_clamp_per_dimension():
    kl = torch.tensor([[0.0, 1.0, 0.3], [0.1, 0.0, 0.5]], requires_grad=True)  # batch means 0.05, 0.5, 0.4
    assert free_bits_kl(kl, 0.0).item() == pytest.approx(0.95)
    value = free_bits_kl(kl, 0.1)
    assert value.item() == pytest.approx(0.1 + 0.5 + 0.4)
    value.backward()
    assert kl.grad[:, 0].abs().sum() == 0  # the dimension under its free bits gets no KL gradient
    assert torch.allclose(kl.grad[:, 1:], torch.full((2, 2), 0.5))


def test_gaussian_kl_matches_torch_distributions():
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * logvar).exp()),
                                                 torch.distributions.Normal(0.0, 1.0))
    torch.testing.assert_close(gaussian_kl_per_dim(mu, logvar), expected)


def _decoder_ignoring_z(name: str = "text-vae-tiny"):
    """A tiny VAE whose decoder cannot see z: log p(x | z) is the same for every z, so log p(x) is known."""
    torch.manual_seed(0)
    model = create_model(name, vocab_size=V).eval()
    with torch.no_grad():
        model.decoder.init_hidden.weight.zero_()
        model.decoder.rnn.weight_ih_l0[:, -model.latent_dim :].zero_()
    return model


def test_iwae_bound_is_tighter_than_the_elbo_and_reaches_the_exact_likelihood():
    model = _decoder_ignoring_z()
    tokens, lengths = _sentences(4)
    # a posterior off the prior and wider than it, so the importance weights p(z) / q(z) are bounded (here by ~16)
    mu = torch.tensor([[0.8, -0.8, 0.6, 0.6]]).expand(4, 4)
    logvar = torch.full((4, 4), math.log(1.5))
    with torch.no_grad():
        exact = model.log_likelihood(torch.zeros(4, model.latent_dim), tokens)  # log p(x) = log p(x | z) here
    elbo = exact - gaussian_kl_per_dim(mu, logvar).sum(1)
    torch.manual_seed(1)
    bounds = {k: iw_log_likelihood(model, tokens, lengths, k, mu, logvar).sum() for k in (10, 200, 3000)}
    assert (exact - elbo).sum() > 4.0  # the ELBO alone is more than a nat per sentence off
    assert elbo.sum() < bounds[10] < bounds[200] < bounds[3000] <= exact.sum() + 0.1  # tighter as k grows
    assert bounds[3000].item() == pytest.approx(exact.sum().item(), abs=0.3)  # and it converges to log p(x)


def test_scores_of_a_language_model_are_exact():
    torch.manual_seed(0)
    model = create_model("text-lm-gru-tiny", vocab_size=V).eval()
    tokens, lengths = _sentences(5)
    scores = score_sentences(model, tokens, lengths, k=50, batch_size=2)
    nll = -model.log_likelihood(None, tokens).mean().item()
    assert scores["nll_iwae"] == pytest.approx(nll, rel=1e-5) and scores["nll_elbo"] == pytest.approx(nll, rel=1e-5)
    assert (scores["kl"], scores["mi"], scores["active_units"]) == (0.0, 0.0, 0)
    assert scores["ppl"] == pytest.approx(math.exp(nll * 5 / int(lengths.sum())), rel=1e-5)


def test_active_units_known_answers():
    mu = torch.zeros(500, 3)
    mu[:, 0] = torch.randn(500)  # varies with x
    mu[:, 1] = 0.05 * torch.randn(500)  # variance 0.0025: below Burda et al.'s 0.01
    assert active_units(mu) == 1
    model = _decoder_ignoring_z()
    tokens, lengths = _sentences(40, seed=3)
    with torch.no_grad():
        assert active_units(model.encode(tokens, lengths)[0]) > 0
        model.encoder.to_posterior.weight.zero_()  # the encoder now ignores its input
        assert active_units(model.encode(tokens, lengths)[0]) == 0


def test_mutual_information_zero_for_a_posterior_independent_of_x():
    torch.manual_seed(0)
    mu = torch.tensor([0.3, -1.0, 2.0]).expand(3000, 3)
    logvar = torch.tensor([0.0, -1.0, 0.5]).expand(3000, 3)
    assert mutual_information(mu, logvar) == pytest.approx(0.0, abs=0.05)
    spread = torch.randn(3000, 3) * 3.0  # posteriors narrow and far apart: z identifies x well
    mi = mutual_information(spread, torch.full((3000, 3), math.log(0.01)))
    assert 3.0 < mi <= math.log(3000) + 0.05


def test_scores_report_collapse_for_an_encoder_that_ignores_x():
    model = _decoder_ignoring_z()
    with torch.no_grad():
        model.encoder.to_posterior.weight.zero_()
        model.encoder.to_posterior.bias.zero_()  # q(z | x) = N(0, I) = p(z): a fully collapsed posterior
    tokens, lengths = _sentences(30)
    scores = score_sentences(model, tokens, lengths, k=5)
    assert scores["kl"] == pytest.approx(0.0, abs=1e-6) and scores["active_units"] == 0
    assert scores["mi"] == pytest.approx(0.0, abs=0.3)
    assert scores["nll_iwae"] == pytest.approx(scores["nll_elbo"], abs=1e-3)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("text-vae-huge", vocab_size=V)
    with pytest.raises(ConfigError, match="latent_dim must be >= 0"):
        create_model("text-vae-tiny", vocab_size=V, latent_dim=-1)
    with pytest.raises(InputError, match="importance samples"):
        iw_log_likelihood(create_model("text-vae-tiny", vocab_size=V), *_sentences(2), k=0)
    with pytest.raises(InputError, match="no sentences"):
        score_sentences(create_model("text-vae-tiny", vocab_size=V), torch.zeros(0, 3, dtype=torch.long),
                        torch.zeros(0, dtype=torch.long))
