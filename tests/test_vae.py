"""The VAE family: likelihoods and KL against closed forms, the IWAE bound, training, resume, the generator view."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

import genchain.models.vae  # noqa: F401  (registers the vae models)
from genchain import rundir
from genchain.errors import ConfigError, InputError, RunDirError
from genchain.models.registry import create_model, list_models
from genchain.models.vae import (
    VAE,
    bernoulli_log_prob,
    discretized_gaussian_log_prob,
    gaussian_kl,
    importance_weighted_nll,
    iw_log_likelihood,
)
from genchain.train.checkpoint import load_weights, model_tensors, save_weights
from genchain.train.vae import VAERecipe, VAETask, load_generator, load_vae_data, train_vae

TINY = ["model=vae-tiny", "image_size=16", "batch_size=32", "eval_interval=20", "log_interval=10",
        "tensorboard=false", "warmup_iters=5", "learning_rate=3e-3", "grid_images=16", "lr_decay_iters=40"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    from genchain.data.ingest import ingest
    from genchain.data.sources import get_source

    root = tmp_path_factory.mktemp("digits")
    get_source("digits", root / "raw")
    ingest([str(root / "raw")], root / "ds", kind="image", label_from="dirname")
    return root / "ds"


@pytest.fixture(scope="module")
def vae_run(digits, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "vae"
    train_vae(digits, out, overrides=TINY + ["max_iters=40", "conditional=true"])
    return out


def _images(n: int, channels: int = 1, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Random 8-bit images mapped to [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=g).float() / 127.5 - 1.0


@pytest.mark.parametrize("name,kwargs", [
    ("vae-tiny", {"image_size": 16}),
    ("vae-tiny", {"image_size": 28, "decoder": "gaussian"}),
    ("vae-tiny", {"image_size": 32, "channels": 3, "conditional": True, "num_classes": 5, "learn_sigma": False,
                  "decoder": "gaussian"}),
    ("vae-mlp-examples", {}),
])
def test_forward_backward_save_load(name, kwargs, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    cfg = model.config
    x = _images(4, cfg.channels, cfg.image_size)
    y = torch.tensor([0, 1, 2, 3]) if cfg.conditional else None
    out = model(x, y)
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert out.x_mean.shape == x.shape and out.x_mean.min() >= -1 and out.x_mean.max() <= 1
    torch.testing.assert_close(out.elbo, -(out.recon + out.kl))
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())

    save_weights(tmp_path / "w.safetensors", model_tensors(model), {"iter": "0"})
    clone = create_model(name, **kwargs)
    load_weights(clone, tmp_path / "w.safetensors")
    z = torch.randn(3, cfg.latent_dim)
    labels = y[:3] if y is not None else None
    torch.testing.assert_close(clone.decode(z, labels), model.decode(z, labels))


def test_registry_has_the_family():
    names = {e.name for e in list_models("vae")}
    assert {"vae", "vae-tiny", "vae-mlp-examples"} <= names
    mlp = create_model("vae-mlp-examples")
    # pytorch/examples vae/main.py: 784-400-20(x2)-400-784
    assert sum(p.numel() for p in mlp.parameters()) == 784 * 400 + 400 + 2 * (400 * 20 + 20) + 20 * 400 + 400 \
        + 400 * 784 + 784


def test_kl_matches_closed_form():
    mu = torch.tensor([[1.0, -2.0, 0.0], [0.0, 0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0), -1.0], [0.0, 0.0, 0.0]])
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)
    # by hand: 0.5 * (mu^2 + s^2 - 1 - log s^2) per dim
    by_hand = 0.5 * (1 + 0) + 0.5 * (4 + 4 - 1 - math.log(4)) + 0.5 * (math.exp(-1) - 1 + 1)
    assert gaussian_kl(mu, logvar)[0].item() == pytest.approx(by_hand, rel=1e-6)
    assert gaussian_kl(mu, logvar)[1].item() == 0.0


def test_bernoulli_log_prob_matches_torch():
    logits = torch.randn(2, 1, 4, 4)
    binary = (torch.rand(2, 1, 4, 4) > 0.5).float()
    expected = Bernoulli(logits=logits).log_prob(binary).flatten(1).sum(1)
    torch.testing.assert_close(bernoulli_log_prob(logits, binary * 2 - 1), expected)


@pytest.mark.parametrize("mean,sigma", [(0.5, 0.1), (0.0, 0.3), (1.2, 0.05), (0.3, 1e-3), (0.7, 5.0)])
def test_discretized_gaussian_is_a_distribution_over_levels(mean, sigma):
    levels = torch.arange(256, dtype=torch.float32).view(256, 1, 1, 1)
    images = levels / 127.5 - 1.0
    log_p = discretized_gaussian_log_prob(torch.full_like(images, mean), torch.tensor(math.log(sigma)), images)
    assert torch.isfinite(log_p).all()
    assert log_p.double().exp().sum().item() == pytest.approx(1.0, abs=1e-4)
    # an interior level is the Normal mass of its bin
    k = 100
    normal = Normal(torch.tensor(mean, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64))
    mass = normal.cdf(torch.tensor((k + 0.5) / 255, dtype=torch.float64)) - normal.cdf(
        torch.tensor((k - 0.5) / 255, dtype=torch.float64))
    if mass > 1e-30:
        assert log_p[k].item() == pytest.approx(math.log(mass.item()), rel=1e-3, abs=1e-3)


def test_discretized_gaussian_gradients_are_finite():
    mean = torch.rand(2, 1, 8, 8, requires_grad=True)
    log_sigma = torch.tensor(math.log(0.02), requires_grad=True)
    x = _images(2, size=8)
    discretized_gaussian_log_prob(mean, log_sigma, x).sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_sigma.grad)


def test_iwae_bound_k1_is_elbo_and_larger_k_is_tighter():
    torch.manual_seed(0)
    model = create_model("vae-tiny", image_size=16).eval()
    x = _images(32)
    reps = 40
    with torch.no_grad():
        elbo = torch.stack([model(x).elbo for _ in range(reps)]).mean()
        iw1 = torch.stack([iw_log_likelihood(model, x, k=1).mean() for _ in range(reps)]).mean()
        iw50 = torch.stack([iw_log_likelihood(model, x, k=50, chunk=7).mean() for _ in range(4)]).mean()
    assert iw1.item() == pytest.approx(elbo.item(), abs=0.5)  # same expectation, Monte-Carlo noise apart
    assert iw50.item() > elbo.item() + 0.01  # the k-sample bound is higher (NLL lower)
    report = importance_weighted_nll(model, ((x + 1) * 127.5).round().to(torch.uint8), k=50, progress=False)
    assert report["nll_nats"] < -elbo.item()
    assert report["bits_per_dim"] == pytest.approx(report["nll_nats"] / (256 * math.log(2)))
    with pytest.raises(InputError):
        iw_log_likelihood(model, x, k=0)


def test_conditional_uses_labels():
    torch.manual_seed(0)
    model = create_model("vae-tiny", image_size=16, conditional=True, num_classes=3)
    z = torch.randn(2, model.config.latent_dim)
    assert not torch.allclose(model.decode(z, torch.tensor([0, 0])), model.decode(z, torch.tensor([1, 1])))
    with pytest.raises(InputError):
        model(_images(2))
    with pytest.raises(InputError):
        model(_images(2), torch.tensor([0, 3]))


def test_train_eval_loss_falls_and_writes_run(vae_run):
    card = rundir.require_family(vae_run, "vae")
    assert card["model"] == "vae-tiny" and card["image_size"] == 16 and card["num_classes"] == 10
    assert card["data"]["eval_split"] == "test" and card["data"]["licences"]
    assert card["label_names"] == [str(i) for i in range(10)]
    import json

    evals = [json.loads(line) for line in (vae_run / rundir.METRICS).read_text().splitlines()
             if json.loads(line)["kind"] == "eval"]
    assert [e["iter"] for e in evals] == [20, 40]
    assert list(evals[0])[3] == "loss" and evals[-1]["loss"] < evals[0]["loss"]
    assert evals[-1]["loss"] == pytest.approx(evals[-1]["recon"] + evals[-1]["kl"])
    assert sorted(p.name for p in (vae_run / "samples").iterdir())[:2] == ["recon_000020.png", "recon_000040.png"]


def test_resume_continues_exactly(digits, vae_run, tmp_path):
    out = tmp_path / "resumed"
    train_vae(digits, out, overrides=TINY + ["max_iters=20", "conditional=true"])
    result = train_vae(digits, out, overrides=["max_iters=40"], resume=True)
    assert result.iters == 40
    from genchain.train.checkpoint import read_weights

    a, _ = read_weights(vae_run / rundir.LAST_WEIGHTS)
    b, _ = read_weights(out / rundir.LAST_WEIGHTS)
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)
    with pytest.raises(ConfigError):
        train_vae(digits, out, overrides=["max_iters=60", "latent_dim=9"], resume=True)


def test_load_generator_protocol(vae_run):
    gen = load_generator(vae_run)
    assert (gen.latent_dim, gen.num_classes, gen.image_size, gen.channels) == (4, 10, 16, 1)
    z = gen.sample_latents(6, torch.Generator().manual_seed(1))
    assert z.shape == (6, 4)
    images = gen.decode(z, torch.tensor(3))
    assert images.shape == (6, 1, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert gen.encode(images, torch.full((6,), 3)).shape == (6, 4)
    with pytest.raises(InputError):
        gen.decode(z)  # conditional: a label is required
    with pytest.raises(InputError):
        gen.encode(torch.zeros(2, 1, 8, 8), torch.tensor(0))


def test_wrong_family_and_bad_config(digits, tmp_path):
    other = tmp_path / "gan_run"
    other.mkdir()
    rundir.write_card(other, {"family": "gan", "model": "gan-tiny"})
    with pytest.raises(RunDirError):
        load_generator(other)
    with pytest.raises(RunDirError):
        train_vae(digits, other, overrides=["max_iters=5"], resume=True)
    with pytest.raises(ConfigError):
        train_vae(digits, tmp_path / "x", overrides=["model=nope"])
    with pytest.raises(ConfigError):
        train_vae(digits, tmp_path / "y", overrides=["image_size=15", "model=vae-tiny"])


def test_kl_warmup_and_holdout(digits):
    from genchain.config import load_recipe

    recipe = load_recipe(VAERecipe, overrides=["kl_warmup_iters=4", "batch_size=8", "image_size=16"])
    data = load_vae_data(digits, 16, recipe.vae)
    task = VAETask(data, recipe, torch.device("cpu"), Path("."))
    weights = [task.next_batch()[2] for _ in range(5)]
    assert weights == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert isinstance(create_model("vae-tiny", image_size=16), VAE)
