import numpy as np
import pytest
import torch
from PIL import Image

from genchain import rundir
from genchain.data.ingest import ingest
from genchain.data.sources import get_source
from genchain.errors import ConfigError, RunDirError
from genchain.generate.image import interpolate, make_grid, reconstruct, sample, slerp
from genchain.train.gan import train_gan

QUICK = ["model=gan-tiny", "batch_size=8", "eval_iters=1", "eval_interval=100", "tensorboard=false",
         "grid_samples=4", "max_iters=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    get_source("digits", root / "raw")
    ingest([str(root / "raw")], root / "ds", kind="image", label_from="dirname")
    train_gan(root / "ds", root / "cond", overrides=QUICK + ["conditional=true"])
    train_gan(root / "ds", root / "plain", overrides=QUICK)
    return root / "cond", root / "plain"


def _pixels(path):
    return np.asarray(Image.open(path))


def test_sample_writes_one_png_per_image_and_is_seeded(runs, tmp_path):
    cond, _ = runs
    first = sample(cond, tmp_path / "a", num=5, label="3", seed=7)
    again = sample(cond, tmp_path / "b", num=5, label="3", seed=7)
    other = sample(cond, tmp_path / "c", num=5, label="3", seed=8)
    assert len(first) == 5 and all(p.suffix == ".png" for p in first)
    assert _pixels(first[0]).shape == (16, 16)
    assert all(np.array_equal(_pixels(a), _pixels(b)) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(_pixels(a), _pixels(b)) for a, b in zip(first, other, strict=True))


def test_grid_of_a_conditional_model_has_one_class_per_column(runs, tmp_path):
    cond, plain = runs
    (grid,) = sample(cond, tmp_path, num=20, seed=0, grid=True)
    assert _pixels(grid).shape == (2 * 18 + 2, 10 * 18 + 2)  # 2 rows x 10 classes of 16 px, 2 px padding
    (named,) = sample(plain, tmp_path / "g.png", num=4, seed=0, grid=True)
    assert named == tmp_path / "g.png" and _pixels(named).shape == (38, 38)


def test_label_by_name_or_index_and_bad_labels(runs, tmp_path):
    cond, plain = runs
    by_name = sample(cond, tmp_path / "n", num=2, label="4", seed=1)  # digits' class names are "0".."9"
    assert len(by_name) == 2
    with pytest.raises(ConfigError, match="unknown label 'Sneaker'; this run knows: 0, 1"):
        sample(cond, tmp_path, num=1, label="Sneaker")
    with pytest.raises(ConfigError, match="class-conditional"):
        sample(plain, tmp_path, num=1, label="3")
    with pytest.raises(ConfigError, match="--num"):
        sample(plain, tmp_path, num=0)


def test_interpolation_gif_starts_and_ends_at_the_seed_images(runs, tmp_path):
    cond, _ = runs
    path = interpolate(cond, tmp_path / "walk.gif", seeds=(3, 9), steps=5, label="2")
    gif = Image.open(path)
    assert gif.n_frames == 5 and gif.size == (20, 20)  # one 16 px image with 2 px padding per frame
    start = _pixels(sample(cond, tmp_path / "s", num=1, label="2", seed=3)[0])
    end = _pixels(sample(cond, tmp_path / "e", num=1, label="2", seed=9)[0])
    frames = []
    for i in range(5):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("L"))[2:18, 2:18])
    assert np.array_equal(frames[0], start) and np.array_equal(frames[-1], end)
    assert not np.array_equal(frames[0], frames[-1])


def test_interpolation_png_strip_and_class_rows(runs, tmp_path):
    cond, plain = runs
    strip = interpolate(plain, tmp_path / "walk.png", seeds=(0, 1), steps=4)
    assert _pixels(strip).shape == (20, 4 * 20)
    rows = interpolate(cond, tmp_path / "rows.gif", seeds=(0, 1), steps=3)  # no label: every class per frame
    assert Image.open(rows).size == (10 * 18 + 2, 20)
    with pytest.raises(ConfigError, match=".gif or .png"):
        interpolate(plain, tmp_path / "walk.mp4", seeds=(0, 1), steps=4)


def test_reconstruct_needs_a_vae_and_other_families_are_refused(runs, tmp_path):
    cond, _ = runs
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(image)
    with pytest.raises(ConfigError, match="needs a VAE run"):
        reconstruct(cond, [image], tmp_path / "out")
    text_run = tmp_path / "text"
    rundir.write_card(text_run, {"family": "text", "model": "gpt"})
    with pytest.raises(RunDirError, match="not an image generator"):
        sample(text_run, tmp_path, num=1)
    with pytest.raises(RunDirError, match="is not a genchain run dir"):
        sample(tmp_path, tmp_path, num=1)


def test_make_grid_places_images_row_major():
    images = torch.stack([torch.full((1, 2, 2), v, dtype=torch.uint8) for v in (10, 20, 30)])
    grid = make_grid(images, nrow=2, padding=1)
    assert grid.shape == (1, 7, 7)
    assert grid[0, 1, 1] == 10 and grid[0, 1, 4] == 20 and grid[0, 4, 1] == 30 and grid[0, 4, 4] == 0


def test_slerp_keeps_the_ends_and_the_norm_of_orthogonal_unit_vectors():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    assert slerp(a, b, 0.5).norm().item() == pytest.approx(1.0)


def test_reconstruct_a_vae_run_writes_original_beside_reconstruction(runs, tmp_path):
    train_vae = pytest.importorskip("genchain.train.vae").train_vae
    ds = runs[0].parent / "ds"
    train_vae(ds, tmp_path / "vae", overrides=["model=vae-tiny", "image_size=16", "batch_size=16", "max_iters=2",
                                               "eval_interval=100", "tensorboard=false"])
    sources = []
    for i, size in enumerate((8, 40)):  # any size: resized and centre-cropped to the run's 16 px
        sources.append(tmp_path / f"in{i}.png")
        Image.fromarray((np.arange(size * size).reshape(size, size) % 256).astype(np.uint8)).save(sources[-1])
    written = reconstruct(tmp_path / "vae", sources, tmp_path / "out")
    assert [p.name for p in written] == ["recon_000_in0.png", "recon_001_in1.png"]
    assert _pixels(written[0]).shape == (20, 38)  # original | reconstruction, 16 px each, 2 px padding
    with pytest.raises(ConfigError, match="class-conditional"):
        reconstruct(tmp_path / "vae", sources, tmp_path / "out", label="3")
