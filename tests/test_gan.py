import json

import pytest
import torch
import torch.nn as nn

import genchain.models.gan  # noqa: F401  (registers the gan family)
from genchain import rundir
from genchain.data.ingest import ingest
from genchain.data.sources import get_source
from genchain.errors import ConfigError
from genchain.models.gan import GAN, GANConfig, discriminator_loss, generator_loss, gradient_penalty, r1_penalty
from genchain.models.registry import create_model, list_models
from genchain.train.checkpoint import load_weights, model_tensors, save_weights
from genchain.train.gan import diff_augment, load_gan, load_generator, sliced_wasserstein, train_gan

TINY = [e.name for e in list_models("gan") if e.name.endswith("-tiny")]
QUICK = ["model=gan-tiny", "batch_size=8", "eval_iters=2", "eval_interval=4", "log_interval=1", "tensorboard=false",
         "grid_samples=8"]
LOSSES = ["nonsaturating", "hinge", "wgan-gp"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    get_source("digits", root / "raw")
    ingest([str(root / "raw")], root / "ds", kind="image", label_from="dirname")
    return root / "ds"


@pytest.fixture(scope="module")
def tiny_run(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "gan"
    result = train_gan(digits, out, overrides=QUICK + ["max_iters=4"])
    return out, result


def _variants(name):
    yield name, {}
    yield f"{name} conditional+sn", {"num_classes": 3, "spectral_norm": True, "d_norm": "none", "bias": True}


@pytest.mark.parametrize("name", TINY)
def test_every_tiny_variant_trains_saves_and_loads(name, tmp_path):
    for label, kwargs in _variants(name):
        torch.manual_seed(0)
        model = create_model(name, **kwargs)
        size = model.config.image_size
        images = torch.rand(4, 1, size, size) * 2 - 1
        labels = torch.tensor([0, 1, 2, 0]) if kwargs else None
        out = model(images, labels)
        assert torch.isfinite(out.loss), label
        assert out.fake.shape == images.shape and out.fake.abs().max() <= 1
        out.loss.backward()
        trained = [p for p in model.parameters() if p.requires_grad]
        assert trained and all(p.grad is not None and torch.isfinite(p.grad).all() for p in trained), label
        assert all(p.grad is None for p in model.generator_ema.parameters())
        save_weights(tmp_path / "w.safetensors", model_tensors(model), {"iter": "0"})
        clone = create_model(name, **kwargs)
        load_weights(clone, tmp_path / "w.safetensors")
        model.eval(), clone.eval()
        z = torch.randn(4, model.config.latent_dim)
        torch.testing.assert_close(model.generator(z, labels), clone.generator(z, labels))
        torch.testing.assert_close(model.discriminator(images, labels), clone.discriminator(images, labels))


def test_dcgan_examples_matches_the_reference_shapes():
    model = create_model("gan-dcgan-examples")
    # pytorch/examples dcgan/main.py at nc=1: netG 3,574,656 and netD 2,763,520 parameters, no biases
    assert model.num_params() == {"generator": 3_574_656, "discriminator": 2_763_520}
    assert not any(name.endswith("bias") and "net" in name and p.dim() == 1 and p.numel() == 1
                   for name, p in model.named_parameters())
    assert model.generator(torch.randn(2, 100)).shape == (2, 1, 64, 64)


@pytest.mark.parametrize("size", [16, 28, 32, 64])
def test_image_sizes_with_a_4_or_7_start(size):
    model = GAN(GANConfig(image_size=size, latent_dim=8, g_width=4, d_width=4, channels=3))
    fake = model.generator(torch.randn(2, 8))
    assert fake.shape == (2, 3, size, size)
    assert model.discriminator(fake).shape == (2,)


def test_unsupported_image_size_is_refused():
    with pytest.raises(ValueError, match="power of two"):
        GANConfig(image_size=30)
    with pytest.raises(ConfigError, match="power of two"):
        create_model("gan-tiny", image_size=512)


def test_conditional_models_use_the_label():
    torch.manual_seed(0)
    model = GAN(GANConfig(image_size=16, latent_dim=8, g_width=8, d_width=8, num_classes=4)).eval()
    z = torch.randn(3, 8)
    a = model.generator(z, torch.tensor([0, 0, 0]))
    b = model.generator(z, torch.tensor([1, 1, 1]))
    assert a.shape == (3, 1, 16, 16) and not torch.allclose(a, b)
    x = torch.rand(3, 1, 16, 16)
    assert not torch.allclose(model.discriminator(x, torch.tensor([0, 0, 0])),
                              model.discriminator(x, torch.tensor([3, 3, 3])))
    with pytest.raises(ValueError, match="pass labels"):
        model.generator(z)


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_is_finite_and_reaches_both_players(loss):
    torch.manual_seed(0)
    model = GAN(GANConfig(image_size=16, latent_dim=8, g_width=8, d_width=8, d_norm="none"))
    real = torch.rand(4, 1, 16, 16) * 2 - 1
    fake = model.generator(torch.randn(4, 8))
    loss_d = discriminator_loss(loss, model.discriminator(real), model.discriminator(fake.detach()))
    loss_d.backward()
    assert torch.isfinite(loss_d) and all(p.grad is not None for p in model.discriminator.parameters())
    model.zero_grad()
    loss_g = generator_loss(loss, model.discriminator(fake))
    loss_g.backward()
    assert torch.isfinite(loss_g) and all(torch.isfinite(p.grad).all() for p in model.generator.parameters())
    # the non-saturating losses are BCE on sigmoid(logit): check one value against torch's BCE
    logits = torch.tensor([0.3, -1.2])
    if loss == "nonsaturating":
        expected = nn.functional.binary_cross_entropy(torch.sigmoid(logits), torch.ones(2))
        assert generator_loss(loss, logits).item() == pytest.approx(expected.item(), rel=1e-5)


class _Linear(nn.Module):
    """D(x) = <w, x>: its input gradient is w, so R1 = ||w||^2 and GP = (||w|| - 1)^2 exactly."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x, labels=None):
        return (x.flatten(1) * self.w).sum(1)


def test_r1_and_gradient_penalty_have_their_closed_form():
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])  # ||w|| = 5
    d = _Linear(w.view(1, 4))
    real = torch.randn(6, 1, 2, 2).requires_grad_(True)
    assert r1_penalty(d(real), real).item() == pytest.approx(25.0)
    gp = gradient_penalty(d, torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2), None, torch.rand(6))
    assert gp.item() == pytest.approx(16.0)
    gp.backward()  # the penalty trains D: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    torch.testing.assert_close(d.w.grad, (2 * 4 / 5 * w).view(1, 4))


def test_ema_update_is_a_lerp_and_copies_buffers():
    torch.manual_seed(0)
    model = GAN(GANConfig(image_size=16, latent_dim=8, g_width=8, d_width=8))
    before = [p.clone() for p in model.generator_ema.parameters()]
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
        model.generator.net[1].running_mean.fill_(7.0)
    model.update_ema(0.9)
    for old, new, live in zip(before, model.generator_ema.parameters(), model.generator.parameters(), strict=True):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * live)
    assert (model.generator_ema.net[1].running_mean == 7).all()
    model.update_ema(0.0)
    for ema, live in zip(model.generator_ema.parameters(), model.generator.parameters(), strict=True):
        assert torch.equal(ema, live)


def test_diffaugment_keeps_shapes_is_seeded_and_differentiable():
    x = (torch.rand(5, 3, 16, 16) * 2 - 1).requires_grad_(True)
    policy = ("color", "translation", "cutout")
    a = diff_augment(x, policy, torch.Generator().manual_seed(1))
    b = diff_augment(x, policy, torch.Generator().manual_seed(1))
    c = diff_augment(x, policy, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def _shifted(x, dy, dx):
    """x moved down by dy and right by dx, zeros where nothing moved in."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = \
        x[..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return out


def test_translation_shifts_pixels_and_cutout_zeros_a_quarter():
    x = torch.arange(1.0, 65.0).view(1, 1, 8, 8)  # shifts of up to 1 pixel (1/8 of 8)
    seen = set()
    for seed in range(30):
        out = diff_augment(x, ("translation",), torch.Generator().manual_seed(seed))
        shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if torch.equal(out, _shifted(x, dy, dx))]
        assert len(shifts) == 1
        seen.add(shifts[0])
    assert len(seen) == 9
    ones = torch.ones(200, 1, 16, 16)
    cut = diff_augment(ones, ("cutout",), torch.Generator().manual_seed(0))
    zero_fraction = (cut == 0).float().mean().item()
    assert 0.12 < zero_fraction <= 0.25  # an 8x8 hole, sometimes partly outside the image


def test_sliced_wasserstein_is_zero_for_equal_sets_and_grows_with_a_shift():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(500, 10, generator=gen)
    directions = torch.nn.functional.normalize(torch.randn(10, 32, generator=gen), dim=0)
    assert sliced_wasserstein(a, a[torch.randperm(500)], directions) == pytest.approx(0.0, abs=1e-6)
    near = sliced_wasserstein(a, a + 0.1, directions)
    far = sliced_wasserstein(a, a + 1.0, directions)
    assert 0 < near < far


def test_tiny_run_writes_samples_card_and_finite_metrics(tiny_run):
    out, result = tiny_run
    card = rundir.read_card(out)
    assert card["family"] == "gan" and card["model"] == "gan-tiny" and card["iters"] == 4
    assert card["image_size"] == 16 and card["channels"] == 1 and card["num_classes"] == 0
    assert card["data"]["licences"] and card["data"]["manifest_sha256"]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["iter_000004.png"]
    points = [json.loads(x) for x in (out / rundir.METRICS).read_text().splitlines()]
    train = [p for p in points if p["kind"] == "train"]
    assert [p["iter"] for p in train] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor([p["loss_d"], p["loss_g"]])).all() for p in train)
    assert result.last_metrics["swd"] > 0
    generator = load_generator(out)
    images = generator.decode(generator.sample_latents(3, torch.Generator().manual_seed(0)))
    assert images.shape == (3, 1, 16, 16) and images.abs().max() <= 1 and generator.num_classes is None


def _weights(run):
    model, _ = load_gan(run, rundir.LAST_WEIGHTS)
    return dict(model_tensors(model))


def test_resume_repeats_an_uninterrupted_run(digits, tmp_path):
    common = QUICK + ["diffaugment=color,translation,cutout", "eval_interval=100"]
    train_gan(digits, tmp_path / "full", overrides=common + ["max_iters=6"])
    train_gan(digits, tmp_path / "split", overrides=common + ["max_iters=3"])
    train_gan(digits, tmp_path / "split", overrides=["max_iters=6"], resume=True)
    assert rundir.read_card(tmp_path / "split")["iters"] == 6

    def curve(run):
        return [(p["iter"], p["loss_d"], p["loss_g"]) for p in map(json.loads, (run / rundir.METRICS).open())
                if p["kind"] == "train"]

    assert curve(tmp_path / "full") == curve(tmp_path / "split")
    full, split = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    assert full.keys() == split.keys()
    for name in full:
        assert torch.equal(full[name], split[name]), name


def test_resume_refuses_a_changed_model(tiny_run, digits):
    out, _ = tiny_run
    with pytest.raises(ConfigError, match="model differs"):
        train_gan(digits, out, overrides=["g_width=16", "max_iters=8"], resume=True)


@pytest.mark.parametrize("extra", [
    ["loss=hinge", "spectral_norm=true", "d_norm=none", "r1_gamma=1.0", "conditional=true", "diffaugment=color"],
    ["loss=wgan-gp", "d_norm=none", "n_critic=2", "adam_beta1=0.0", "adam_beta2=0.9"],
])
def test_other_objectives_train(digits, tmp_path, extra):
    result = train_gan(digits, tmp_path / "run", overrides=QUICK + ["max_iters=2"] + extra)
    points = [json.loads(x) for x in (tmp_path / "run" / rundir.METRICS).read_text().splitlines()]
    assert result.iters == 2 and all(p["penalty"] >= 0 for p in points if p["kind"] == "train")
    if "conditional=true" in extra:
        card = rundir.read_card(tmp_path / "run")
        assert card["num_classes"] == 10 and card["label_names"][:2] == ["0", "1"]


@pytest.mark.parametrize("extra, message", [
    (["learning_rate=0.01"], "does not apply to a GAN"),
    (["loss=wgan-gp"], "set d_norm=none"),
    (["diffaugment=rotate"], "unknown diffaugment"),
    (["model=gpt-tiny"], "is a text model"),
])
def test_bad_configs_are_explained(digits, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        train_gan(digits, tmp_path / "run", overrides=QUICK + ["max_iters=1"] + extra)
    assert not (tmp_path / "run").exists()


def test_conditional_needs_labels(tmp_path):
    get_source("digits", tmp_path / "raw")
    ingest([str(tmp_path / "raw" / "test")], tmp_path / "unlabelled", kind="image")
    with pytest.raises(ConfigError, match="no labels"):
        train_gan(tmp_path / "unlabelled", tmp_path / "run", overrides=QUICK + ["max_iters=1", "conditional=true"])
