"""Image evaluation: metric known answers, the feature classifier, the FID Inception-v3, evaluate_run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genchain.data.ingest import ingest
from genchain.data.sources import get_source
from genchain.errors import CheckpointError, InputError
from genchain.eval.features import (
    FEATURE_NET_INFO,
    FEATURE_NET_WEIGHTS,
    extract_features,
    feature_network_for,
    train_feature_classifier,
)
from genchain.eval.image import (
    fid_from_features,
    frechet_distance,
    kernel_inception_distance,
    mmd2_unbiased,
    precision_recall,
)
from genchain.eval.inception import FIDInceptionV3, load_fid_inception
from genchain.train.image_data import load_images

SIZE = 16  # digits are 8x8; the classifier sees them at 16


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def digits_raw(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("digits") / "raw"
    get_source("digits", raw)
    return raw


@pytest.fixture(scope="module")
def digits(digits_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digits_ds") / "ds"
    ingest([str(digits_raw)], out, kind="image", label_from="dirname")
    return out


@pytest.fixture(scope="module")
def classifier(digits):
    return train_feature_classifier(digits, image_size=SIZE, epochs=0, min_steps=40, batch_size=64, seed=0)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    """Feature networks shared across runs go to $GENCHAIN_CACHE: keep each test's apart from the user's."""
    monkeypatch.setenv("GENCHAIN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _rotated_gaussians(seed: int = 0):
    """Two covariances sharing eigenvectors Q: then Tr sqrt(S1 S2) = sum sqrt(a_i b_i) exactly."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    a, b = np.array([1.0, 2.0, 3.0, 0.5, 4.0]), np.array([4.0, 1.0, 0.5, 2.0, 2.0])
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    return mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T, expected


# ---------------------------------------------------------------------------------------------- FID
def test_fid_of_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 8))
    assert abs(fid_from_features(x, x)) < 1e-6


def test_fid_of_two_gaussians_equals_the_closed_form():
    mu1, s1, mu2, s2, expected = _rotated_gaussians()
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # and from samples: the fitted Gaussians converge to the true ones
    rng = np.random.default_rng(1)
    x, y = rng.multivariate_normal(mu1, s1, 40000), rng.multivariate_normal(mu2, s2, 40000)
    assert fid_from_features(x, y) == pytest.approx(expected, rel=0.03)
    # a pure mean shift of a shared covariance gives |mu1 - mu2|^2
    assert frechet_distance(mu1, s1, mu2, s1) == pytest.approx(float(np.sum((mu1 - mu2) ** 2)), abs=1e-6)


def test_fid_survives_singular_covariances():
    """Fewer samples than dimensions (rank-deficient covariances) and a dead feature still give a finite FID."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 64)), rng.normal(size=(20, 64)) + 1.0
    x[:, 0] = y[:, 0] = 0.0
    fid = fid_from_features(x, y)
    assert np.isfinite(fid) and fid > 50  # the mean shift alone contributes 63
    assert abs(fid_from_features(x, x)) < 1e-3


# ---------------------------------------------------------------------------------------------- KID
def test_mmd2_unbiased_matches_a_direct_sum():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(9, 3)) + 0.5

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(9)) / (7 * 9)
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kid_of_one_distribution_is_zero_and_of_two_is_not():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(1200, 16)), rng.normal(size=(1200, 16))
    mean, std = kernel_inception_distance(a, b, num_subsets=20, subset_size=400)
    assert abs(mean) < 3 * std / np.sqrt(20) + 1e-3  # unbiased: zero up to the subset noise
    shifted, _ = kernel_inception_distance(a, b + 0.5, num_subsets=20, subset_size=400)
    assert shifted > 10 * max(std, 1e-4)


# ---------------------------------------------------------------------------------------------- precision / recall
def test_precision_recall_of_identical_and_disjoint_sets():
    x = np.random.default_rng(0).normal(size=(300, 10))
    assert precision_recall(x, x) == (1.0, 1.0)
    assert precision_recall(x, x + 1000.0) == (0.0, 0.0)


def test_precision_recall_by_hand():
    """1-D: real radii (k=3) are 3 at the ends and 2 in the middle; only the fake point 0.5 lies inside. The fake
    points' radii are huge (29.5, ...), so they cover every real point."""
    real = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    fake = np.array([[0.5], [10.0], [20.0], [30.0]])
    precision, recall = precision_recall(real, fake, batch_size=2)
    assert precision == 0.25 and recall == 1.0


# ---------------------------------------------------------------------------------------------- feature classifier
def test_classifier_learns_the_digits(classifier):
    info = classifier.info
    assert info["kind"] == "classifier" and info["accuracy_split"] == "test"
    assert info["test_accuracy"] > 0.8, info
    assert info["config"]["image_size"] == SIZE and classifier.dim == 128


def test_fid_train_vs_test_is_small_and_real_vs_noise_is_large(classifier, digits):
    test = load_images(digits, "test", size=SIZE)
    train = load_images(digits, "train", size=SIZE)  # rows are grouped by class: compare a random subset
    train.images = train.images[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: len(test)]]
    noise = torch.randint(0, 256, test.images.shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    f_test, f_train, f_noise = (extract_features(classifier, x) for x in (test.images, train.images, noise))
    assert f_test.shape == (len(test), 128)
    floor, far = fid_from_features(f_test, f_train), fid_from_features(f_test, f_noise)
    assert far > 20 * floor, (floor, far)
    precision, _ = precision_recall(f_test, f_noise)
    assert precision < 0.05


def test_feature_network_is_saved_and_reused_for_the_same_data(classifier, digits, tmp_path):
    from genchain.eval.features import dataset_content_hash, save_feature_network, shared_cache_dir

    shared = shared_cache_dir(dataset_content_hash(digits), 1, SIZE)
    save_feature_network(classifier, shared)
    saved = json.loads((shared / FEATURE_NET_INFO).read_text())
    assert saved["test_accuracy"] == classifier.info["test_accuracy"] and saved["dataset_sha256"]
    # a new run finds the shared network and keeps its own copy
    reused = feature_network_for(digits, tmp_path / "run", channels=1, image_size=SIZE)
    assert reused.info["cached"] is True and (tmp_path / "run" / FEATURE_NET_WEIGHTS).is_file()
    images = load_images(digits, "test", size=SIZE, max_rows=16).images
    np.testing.assert_allclose(extract_features(reused, images), extract_features(classifier, images), atol=1e-5)


def test_unlabelled_dataset_gets_random_features_and_says_so(digits_raw, tmp_path):
    unlabelled = tmp_path / "unlabelled"
    ingest([str(digits_raw)], unlabelled, kind="image")
    with pytest.raises(InputError, match="no labels"):
        train_feature_classifier(unlabelled)
    network = feature_network_for(unlabelled, tmp_path / "eval", channels=1, image_size=SIZE)
    assert network.kind == "random" and network.info["test_accuracy"] is None
    assert "semantic" in network.info["note"]
    again = feature_network_for(unlabelled, tmp_path / "eval", channels=1, image_size=SIZE)
    assert again.info["cached"] is True


# ---------------------------------------------------------------------------------------------- Inception-v3
def test_fid_inception_loads_its_state_dict_and_gives_2048_features(tmp_path):
    torch.manual_seed(0)
    original = FIDInceptionV3().eval()
    with torch.no_grad():  # give BatchNorm non-trivial statistics so that a wrong load would show
        for module in original.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    state = original.state_dict()
    assert "Mixed_7c.branch3x3dbl_3b.bn.running_var" in state and state["fc.weight"].shape == (1008, 2048)
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, tmp_path / "fid.pth")
    loaded = load_fid_inception(tmp_path / "fid.pth")
    grey = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.inference_mode():
        features = loaded(grey)  # (2, 2048) after resizing to 299 x 299
        expected = original(grey[:1].repeat(1, 3, 1, 1))  # grey images are repeated to three channels
    assert features.shape == (2, 2048)
    assert torch.isfinite(features).all() and features.std() > 0
    torch.testing.assert_close(features[:1], expected)
    # pytorch-fid's InceptionV3 wrapper keeps the same modules in nn.Sequential blocks, without fc
    wrapper_names = {"Conv2d_1a_3x3": "blocks.0.0", "Conv2d_4a_3x3": "blocks.1.1", "Mixed_5b": "blocks.2.0",
                     "Mixed_6e": "blocks.2.7", "Mixed_7c": "blocks.3.2"}
    renamed = {}
    for key, tensor in state.items():
        module, rest = key.split(".", 1)
        if module != "fc":
            renamed[f"{wrapper_names.get(module, module)}.{rest}"] = tensor
    torch.save(renamed, tmp_path / "wrapper.pth")
    from_wrapper = load_fid_inception(tmp_path / "wrapper.pth").state_dict()
    for key, tensor in state.items():
        if not key.startswith("fc."):
            torch.testing.assert_close(from_wrapper[key], tensor, msg=key)


def test_fid_inception_refuses_other_weights(tmp_path):
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not the FID Inception"):
        load_fid_inception(tmp_path / "other.pth")
    with pytest.raises(InputError, match="do not exist"):
        load_fid_inception(tmp_path / "missing.pth")


# ---------------------------------------------------------------------------------------------- evaluate_run
def _family_available(module: str) -> bool:
    return (importlib.util.find_spec(module) is not None
            and importlib.util.find_spec("genchain.generate.image") is not None)


def _check_report(report: dict, run: Path, classifier) -> None:
    assert report == json.loads((run / "eval" / "report.json").read_text())
    assert report["features"]["kind"] == "classifier" and report["features"]["cached"] is True
    assert report["features"]["test_accuracy"] == classifier.info["test_accuracy"]
    assert report["num_generated"] == 64 and report["reference"]["split"] == "test"
    assert report["fid"] > 0 and 0 <= report["precision"] <= 1 and 0 <= report["recall"] <= 1
    assert report["floor"]["splits"] == ["test", "train"] and report["floor"]["fid"] < report["fid"]


@pytest.mark.skipif(not _family_available("genchain.train.gan"), reason="genchain.train.gan is not written yet")
def test_evaluate_run_on_a_tiny_gan(digits, classifier, tmp_path):
    from genchain.eval.features import save_feature_network
    from genchain.eval.image import evaluate_run
    from genchain.train.gan import train_gan

    run = tmp_path / "gan"
    train_gan(digits, run, overrides=["model=gan-tiny", "image_size=16", "batch_size=32", "max_iters=4",
                                      "eval_interval=4", "log_interval=2", "tensorboard=false", "grid_samples=4"])
    save_feature_network(classifier, run / "eval")  # the classifier of this session stands in for training one
    report = evaluate_run(run, num=64, seed=1, iw_samples=4)
    _check_report(report, run, classifier)
    assert report["family"] == "gan" and "iw_nll" not in report
    assert evaluate_run(run, num=64, seed=1)["fid"] == report["fid"]  # seeded: the same images, the same FID


@pytest.mark.skipif(not _family_available("genchain.train.vae"), reason="genchain.train.vae is not written yet")
def test_evaluate_run_on_a_tiny_conditional_vae_reports_the_nll_bound(digits, classifier, tmp_path):
    from genchain.eval.features import save_feature_network
    from genchain.eval.image import evaluate_run
    from genchain.train.vae import train_vae

    run = tmp_path / "vae"
    train_vae(digits, run, overrides=["model=vae-tiny", "image_size=16", "batch_size=32", "max_iters=4",
                                      "eval_interval=4", "log_interval=2", "tensorboard=false", "conditional=true",
                                      "grid_images=4"])
    save_feature_network(classifier, run / "eval")
    report = evaluate_run(run, num=64, iw_samples=4)
    _check_report(report, run, classifier)
    nll = report["iw_nll"]
    assert nll["k"] == 4 and nll["split"] == "test" and nll["rows"] == report["reference"]["num"]
    assert 0 < nll["nll_nats"] < 16 * 16 * np.log(256)


def test_evaluate_run_refuses_a_text_run(tmp_path):
    from genchain import rundir
    from genchain.errors import RunDirError
    from genchain.eval.image import evaluate_run

    rundir.write_card(tmp_path, {"family": "text", "model": "gpt"})
    with pytest.raises(RunDirError, match="GAN and VAE"):
        evaluate_run(tmp_path, num=8)
