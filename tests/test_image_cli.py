"""A user's own colour image folder through the image commands: ingest, train gan/vae, generate, evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

FAST = ["max_iters=6", "eval_interval=3", "eval_iters=1", "batch_size=8", "log_interval=3", "tensorboard=false"]


def genchain(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "genchain", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"genchain {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def colour_dataset(tmp_path_factory) -> Path:
    """40x30 RGB photos of red discs and blue squares in two class folders, ingested at 32 px."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for label, colour in (("discs", (220, 40, 40)), ("squares", (40, 40, 220))):
        (root / "raw" / label).mkdir(parents=True)
        for i in range(24):
            image = Image.new("RGB", (40, 30), tuple(int(v) for v in rng.integers(0, 80, 3)))
            x, y, r = (int(v) for v in (rng.integers(8, 32), rng.integers(8, 22), rng.integers(4, 8)))
            draw = ImageDraw.Draw(image)
            (draw.ellipse if label == "discs" else draw.rectangle)((x - r, y - r, x + r, y + r), fill=colour)
            image.save(root / "raw" / label / f"{i}.jpg", quality=90)
    genchain("data", "ingest", str(root / "raw"), "--kind", "image", "--label-from", "dirname", "--image-size", "32",
             "-o", str(root / "ds"))
    return root / "ds"


def test_gan_on_a_colour_folder_trains_samples_walks_and_evaluates(colour_dataset, tmp_path):
    run = tmp_path / "gan"
    genchain("train", "gan", "--data", str(colour_dataset), "--out", str(run), "model=gan-tiny", "image_size=32",
             "conditional=true", *FAST)
    card = json.loads((run / "card.json").read_text())
    assert card["family"] == "gan" and card["channels"] == 3 and card["label_names"] == ["discs", "squares"]
    genchain("generate", "image", "--run", str(run), "--num", "4", "--label", "squares", "-o", str(tmp_path / "s"))
    images = sorted((tmp_path / "s").glob("*.png"))
    assert len(images) == 4 and Image.open(images[0]).size == (32, 32) and Image.open(images[0]).mode == "RGB"
    genchain("generate", "image", "--run", str(run), "--interpolate", "1,2", "--steps", "5", "-o",
             str(tmp_path / "walk.gif"))
    assert Image.open(tmp_path / "walk.gif").n_frames == 5
    bad = genchain("generate", "image", "--run", str(run), "--label", "circles", "-o", str(tmp_path / "x"),
                   check=False)
    assert bad.returncode == 2 and "circles" in bad.stderr
    report = json.loads(genchain("eval", "image", "--run", str(run), "--num", "48").stdout)
    assert report["fid"] > 0 and report["reference"]["split"] == "train" and "note" in report


def test_vae_on_a_colour_folder_reconstructs_and_reports_nll(colour_dataset, tmp_path):
    run = tmp_path / "vae"
    genchain("train", "vae", "--data", str(colour_dataset), "--out", str(run), "model=vae-tiny", *FAST)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (50, 40), (200, 30, 30)).save(photo)
    genchain("generate", "image", "--run", str(run), "--reconstruct", str(photo), "-o", str(tmp_path / "r"))
    assert len(list((tmp_path / "r").glob("*.png"))) == 1
    report = json.loads(genchain("eval", "image", "--run", str(run), "--num", "32", "--iw-samples", "4").stdout)
    assert report["iw_nll"]["nll_nats"] > 0
    wrong = genchain("train", "gan", "--data", str(colour_dataset), "--out", str(run), "--resume", check=False)
    assert wrong.returncode == 2 and "vae" in wrong.stderr
