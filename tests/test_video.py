"""Video: Moving Fashion-MNIST synthesis, latent walks (GIF/MP4), the video VAE, its metrics and the CLI."""

import json

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
import torch

from genchain.cli import main
from genchain.data import sources
from genchain.data.moving_fashion import bounce, synthesise
from genchain.data.sources import get_source
from genchain.eval.video import (
    evaluate_run,
    frame_fid,
    independent_frames,
    multi_hot,
    shuffle_frames,
    ssim,
    temporal_metrics,
    train_frame_features,
)
from genchain.generate.video import display_size, generate_video, keyframe_path
from genchain.models.registry import create_model, list_models
from genchain.train.checkpoint import load_weights, model_tensors, save_weights
from genchain.train.video import train_video
from genchain.train.video_data import load_video_data

SMALL = {"num_train": 24, "num_test": 8, "frames": 6, "size": 48, "seed": 0}
TINY_VIDEO = ["model=video-vae-tiny", "image_size=16", "batch_size=4", "frames=4", "max_iters=3", "eval_interval=100",
              "tensorboard=false", "eval_clips=4", "grid_clips=2", "kl_warmup_iters=0"]
QUICK_GAN = ["model=gan-tiny", "batch_size=8", "eval_iters=1", "eval_interval=100", "tensorboard=false",
             "grid_samples=4", "max_iters=2"]


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory):
    raw = tmp_path_factory.mktemp("mfm") / "raw"
    get_source("moving-fashion-mnist", raw, **SMALL)
    return raw


@pytest.fixture(scope="module")
def video_run(clips_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("vrun") / "run"
    train_video(clips_dir, run, overrides=TINY_VIDEO)
    return run


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    from genchain.data.ingest import ingest
    from genchain.train.gan import train_gan

    root = tmp_path_factory.mktemp("gan")
    get_source("digits", root / "raw")
    ingest([str(root / "raw")], root / "ds", kind="image", label_from="dirname")
    train_gan(root / "ds", root / "plain", overrides=QUICK_GAN)
    return root / "plain"


# ------------------------------------------------------------------------------------------------ data
def test_bounce_reflects_at_the_edges():
    path = bounce(np.array([1.0]), np.array([-3.0]), 6, 10.0)[:, 0]
    np.testing.assert_allclose(path, [1, 2, 5, 8, 9, 6])


def test_synthesis_is_seeded_and_stays_in_bounds():
    rng = np.random.default_rng(0)
    glyphs, labels = rng.integers(1, 256, (5, 28, 28), dtype=np.uint8), np.arange(5)
    a = synthesise(glyphs, labels, 6, frames=30, size=40, seed=3)
    b = synthesise(glyphs, labels, 6, frames=30, size=40, seed=3)
    c = synthesise(glyphs, labels, 6, frames=30, size=40, seed=4)
    assert a.videos.shape == (6, 30, 40, 40) and a.videos.dtype == np.uint8
    assert np.array_equal(a.videos, b.videos) and not np.array_equal(a.videos, c.videos)
    assert a.positions.min() >= 0 and a.positions.max() <= 40 - 28
    steps = np.abs(np.diff(a.positions, axis=1))
    assert steps.max() <= 5 and steps.sum() > 0  # moves, at most the top speed (plus rounding) per frame
    # every glyph is drawn where the trajectory says: its pixels are a lower bound of the frame there
    r, col = a.positions[0, 7, 1]
    assert (a.videos[0, 7, r : r + 28, col : col + 28] >= glyphs[a.glyphs[0, 1]]).all()
    np.testing.assert_array_equal(a.classes, labels[a.glyphs])


def test_get_source_writes_arrays_and_metadata(clips_dir):
    train = np.load(clips_dir / "train.npy")
    meta = json.loads((clips_dir / "sequences.json").read_text())
    assert train.shape == (24, 6, 48, 48) and np.load(clips_dir / "test.npy").shape == (8, 6, 48, 48)
    assert len(meta["splits"]["train"]["classes"]) == 24 and len(meta["class_names"]) == 10
    assert json.loads((clips_dir / "SOURCE.json").read_text())["modality"] == "video"


@pytest.mark.slow  # importing scikit-learn takes seconds
def test_source_falls_back_to_digits_without_fashion_mnist(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.setattr(sources, "FASHION_MNIST_DIR", tmp_path / "absent")
    record = get_source("moving-fashion-mnist", tmp_path / "raw", num_train=2, num_test=1, frames=3)
    assert "digits" in record["origin"]
    assert np.load(tmp_path / "raw" / "train.npy").shape == (2, 3, 64, 64)


def test_video_data_refuses_a_folder_without_clips(tmp_path):
    with pytest.raises(Exception, match="no train.npy"):
        load_video_data(tmp_path)


# ------------------------------------------------------------------------------------------------ metrics
def test_temporal_metrics_known_answers():
    still = torch.full((2, 5, 1, 16, 16), 90, dtype=torch.uint8)
    assert temporal_metrics(still) == pytest.approx({"ssim": 1.0, "l1": 0.0, "flicker": 0.0})
    alternating = torch.zeros(1, 4, 1, 16, 16, dtype=torch.uint8)
    alternating[:, 1::2] = 255
    m = temporal_metrics(alternating)
    assert m["l1"] == pytest.approx(1.0) and m["flicker"] == pytest.approx(2.0) and m["ssim"] < 1e-3
    fade = torch.arange(0, 250, 50, dtype=torch.uint8).view(1, 5, 1, 1, 1).expand(1, 5, 1, 16, 16)
    assert temporal_metrics(fade)["flicker"] == pytest.approx(0.0, abs=1e-12)
    assert temporal_metrics(fade)["l1"] == pytest.approx(50 / 255)


def test_ssim_of_an_image_with_itself_is_one_and_drops_with_noise():
    x = torch.rand(3, 1, 20, 20, generator=torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(ssim(x, x), torch.ones(3, dtype=torch.float64))
    assert (ssim(x, (x + 0.3 * torch.randn_like(x)).clamp(0, 1)) < 0.9).all()


def test_shuffled_and_independent_frames_score_worse_than_real_motion():
    rng = np.random.default_rng(1)
    glyphs = rng.integers(100, 256, (4, 28, 28), dtype=np.uint8)
    real = torch.from_numpy(synthesise(glyphs, np.arange(4), 20, frames=12, size=64, seed=0).videos).unsqueeze(2)
    base = temporal_metrics(real)
    for baseline in (shuffle_frames(real), independent_frames(real)):
        worse = temporal_metrics(baseline)
        assert worse["ssim"] < base["ssim"] and worse["l1"] > base["l1"] and worse["flicker"] > base["flicker"]


def test_baseline_rearrangements_are_what_they_say():
    videos = torch.arange(3 * 4).view(3, 4, 1, 1, 1)
    shuffled = shuffle_frames(videos, seed=2)
    assert all(sorted(shuffled[i].flatten().tolist()) == videos[i].flatten().tolist() for i in range(3))
    mixed = independent_frames(videos)
    assert mixed[1, 2].item() == videos[0, 2].item() and mixed[2, 3].item() == videos[2, 3].item()
    torch.testing.assert_close(multi_hot(torch.tensor([[1, 3], [2, 2]]), 4),
                               torch.tensor([[0.0, 1, 0, 1], [0, 0, 1, 0]]))


def test_frame_fid_of_a_set_with_itself_is_zero(clips_dir):
    data = load_video_data(clips_dir)
    network = train_frame_features(data, steps=5)
    assert frame_fid(network, data.train[:6], data.train[:6]) == pytest.approx(0.0, abs=1e-3)
    assert frame_fid(network, data.train[:6], data.test[:6]) > 0


# ------------------------------------------------------------------------------------------------ model
@pytest.mark.parametrize("name", [e.name for e in list_models("video") if e.name.endswith("-tiny")])
def test_tiny_video_model_trains_saves_and_loads(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, image_size=16)
    video = torch.rand(2, 3, 1, 16, 16) * 2 - 1
    out = model(video)
    assert torch.isfinite(out.loss) and out.x_mean.shape == video.shape
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    save_weights(tmp_path / "w.safetensors", model_tensors(model), {"iter": "0"})
    clone = create_model(name, image_size=16)
    load_weights(clone, tmp_path / "w.safetensors")
    a = model.eval().generate(2, 5, torch.Generator().manual_seed(1))
    b = clone.eval().generate(2, 5, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert a.shape == (2, 5, 1, 16, 16) and a.min() >= -1 and a.max() <= 1


def test_prior_is_causal():
    model = create_model("video-vae-tiny", image_size=16)
    z = torch.randn(1, 6, model.config.motion_dim)
    changed = z.clone()
    changed[:, 4:] += 5.0
    mu, _ = model.prior(z)
    mu2, _ = model.prior(changed)
    torch.testing.assert_close(mu[:, :5], mu2[:, :5])  # step t sees z_<t only
    assert not torch.allclose(mu[:, 5], mu2[:, 5])


def test_train_video_run_and_its_clip(video_run, tmp_path):
    card = json.loads((video_run / "card.json").read_text())
    assert card["family"] == "video" and card["iters"] == 3 and (video_run / "model.safetensors").is_file()
    assert list((video_run / "samples").glob("clips_*.png"))
    result = generate_video(video_run, tmp_path / "clip.gif", frames=9, seed=1)
    frames = iio.imread(result.path)
    assert frames.shape[0] == 9 and frames.shape[1] == 128  # 16 px scaled x8
    assert json.loads(result.sidecar.read_text())["params"]["mode"] == "generated-clip"


def test_eval_video_reports_fid_and_consistency(video_run):
    report = evaluate_run(video_run, num=8, feature_steps=5)
    assert report["frame_fid"]["generated"] >= 0 and report["frames"] == 6
    t = report["temporal"]
    assert t["shuffled_real"]["l1"] > t["real"]["l1"]
    assert (video_run / "eval" / "video_report.json").is_file()


# ------------------------------------------------------------------------------------------------ latent walks
def test_walk_path_loops_with_an_even_step():
    keys = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    keys = keys / keys.norm(dim=1, keepdim=True)  # on one sphere slerp moves at a constant angular speed
    path = keyframe_path(keys, 24)
    torch.testing.assert_close(path[0], keys[0])
    torch.testing.assert_close(path[6], keys[1], atol=1e-5, rtol=1e-5)

    def angle(a, b):
        return torch.arccos(torch.dot(a, b) / (a.norm() * b.norm()))

    # the step from the last frame back to the first is the last segment's own step
    assert angle(path[-1], path[0]).item() == pytest.approx(angle(path[-2], path[-1]).item(), rel=1e-4)


def test_display_size():
    assert display_size(28, 28, None, even=False) == (140, 140)
    assert display_size(28, 56, 100, even=True) == (50, 100)
    assert display_size(7, 7, 9, even=True) == (10, 10)


@pytest.mark.slow
def test_latent_walk_gif_and_mp4(gan_run, tmp_path):
    gif = generate_video(gan_run, tmp_path / "walk.gif", frames=12, keyframes=3, seed=2)
    frames = iio.imread(gif.path)
    assert frames.shape[:3] == (12, 128, 128)
    steps = [np.abs(frames[i + 1].astype(int) - frames[i]).mean() for i in range(11)]
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() <= 2 * max(steps) + 1  # it loops: no jump
    mp4 = generate_video(gan_run, tmp_path / "walk.mp4", frames=10, fps=8, size=100)
    video = iio.imread(mp4.path)
    assert video.shape == (10, 100, 100, 3)
    reader = imageio_ffmpeg.read_frames(str(mp4.path))
    meta = next(reader)
    reader.close()
    assert meta["codec"].startswith("h264") and meta["fps"] == 8
    sidecar = json.loads(mp4.sidecar.read_text())
    assert sidecar["seed"] == 0 and sidecar["params"]["keyframes"] == 4 and sidecar["family"] == "gan"


@pytest.mark.slow
def test_cli_generate_video_signs_and_rejects_bad_input(gan_run, video_run, tmp_path, capsys):
    out = tmp_path / "w.gif"
    assert main(["generate", "video", "--run", str(gan_run), "--frames", "6", "-o", str(out)]) == 0
    assert out.is_file() and (tmp_path / "w.gif.manifest.json").is_file() and (tmp_path / "w.gif.json").is_file()
    bad = [
        ["--run", str(gan_run), "--frames", "1", "-o", str(tmp_path / "a.gif")],
        ["--run", str(gan_run), "-o", str(tmp_path / "a.avi")],
        ["--run", str(tmp_path), "-o", str(tmp_path / "b.gif")],  # not a run dir
        ["--run", str(video_run), "--label", "Bag", "-o", str(tmp_path / "c.gif")],
        ["--run", str(gan_run), "--keyframes", "1", "-o", str(tmp_path / "d.gif")],
    ]
    for args in bad:
        assert main(["generate", "video", *args, "--no-sign"]) == 2
        assert "error:" in capsys.readouterr().err


def test_cli_train_video_rejects_bad_data(tmp_path, capsys):
    assert main(["train", "video", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert "moving-fashion-mnist" in capsys.readouterr().err
