"""Every file `genchain generate` writes is signed, recorded and verifiable; --no-sign writes no provenance."""

import json

import pytest
from PIL import Image

from genchain import rundir
from genchain.cli import main
from genchain.data.ingest import ingest
from genchain.data.sources import get_source
from genchain.fileio import sha256_file
from genchain.train.gan import train_gan

QUICK = ["model=gan-tiny", "batch_size=8", "eval_iters=1", "eval_interval=100", "tensorboard=false",
         "grid_samples=4", "max_iters=2"]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENCHAIN_HOME", str(tmp_path / "gc"))
    return tmp_path / "gc"


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan")
    get_source("digits", root / "raw")
    ingest([str(root / "raw")], root / "ds", kind="image", label_from="dirname")
    train_gan(root / "ds", root / "run", overrides=QUICK)
    return root / "run"


def sidecar(path):
    return path.with_name(path.name + ".manifest.json")


def verify_json(path, ledger, capsys, *extra):
    status = main(["verify", str(path), "--ledger", ledger, "--json", *extra])
    report = json.loads(capsys.readouterr().out)
    return status, {check["name"]: check for check in report["checks"]}


def test_generate_text_signs_watermarks_and_verifies(tiny_run, tmp_path, capsys):
    out, ledger = tmp_path / "samples.jsonl", str(tmp_path / "ledger.db")
    assert main(["generate", "text", "--run", str(tiny_run), "--prompt", "the", "--max-new-tokens", "50",
                 "--seed", "3", "--num", "2", "-o", str(out), "--ledger", ledger]) == 0
    assert "signed " in capsys.readouterr().err
    manifest = json.loads(sidecar(out).read_text())
    assert manifest["artefact"]["kind"] == "text" and manifest["c2pa"]["embedded"] is False
    run = manifest["generation"]["run"]
    assert run["checkpoint_sha256"] == sha256_file(tiny_run / rundir.BEST_WEIGHTS)
    assert run["data"]["manifest_sha256"] == rundir.read_card(tiny_run)["data"]["manifest_sha256"]
    assert manifest["generation"]["seed"] == 3 and manifest["generation"]["parameters"]["num"] == 2
    assert manifest["watermark"]["scheme"] == "kgw-text-v1" and manifest["watermark"]["applied"]
    status, checks = verify_json(out, ledger, capsys)
    assert status == 0, checks
    assert checks["watermark"]["status"] == "ok" and "detected" in checks["watermark"]["detail"]
    assert checks["ledger"]["status"] == "ok" and checks["signature"]["status"] == "ok"


def test_generate_text_no_sign_writes_no_provenance(tiny_run, tmp_path, home):
    out = tmp_path / "plain.txt"
    assert main(["generate", "text", "--run", str(tiny_run), "--max-new-tokens", "10", "--seed", "1", "-o", str(out),
                 "--no-sign", "--no-watermark"]) == 0
    assert out.is_file() and not sidecar(out).exists() and not home.exists()


def test_generate_image_signs_each_png_embeds_c2pa_and_verifies(gan_run, tmp_path, capsys):
    ledger = str(tmp_path / "ledger.db")
    assert main(["generate", "image", "--run", str(gan_run), "--num", "3", "--seed", "2", "-o",
                 str(tmp_path / "out"), "--ledger", ledger]) == 0
    assert capsys.readouterr().out.count("signed ") == 3
    images = sorted((tmp_path / "out").glob("*.png"))
    assert len(images) == 3 and all(sidecar(p).is_file() for p in images)
    manifest = json.loads(sidecar(images[0]).read_text())
    assert manifest["c2pa"]["embedded"] and manifest["generation"]["run"]["family"] == "gan"
    assert manifest["watermark"]["applied"] is False  # 16 px samples are below the mark's minimum size
    for path in images:
        status, checks = verify_json(path, ledger, capsys)
        assert status == 0 and checks["c2pa"]["status"] == "ok", checks


def test_generate_image_grid_is_watermarked_and_a_gif_carries_c2pa(gan_run, tmp_path, capsys):
    ledger = str(tmp_path / "ledger.db")
    grid = tmp_path / "grid.png"
    assert main(["generate", "image", "--run", str(gan_run), "--num", "64", "--grid", "-o", str(grid),
                 "--ledger", ledger]) == 0
    assert Image.open(grid).size[0] >= 128
    assert json.loads(sidecar(grid).read_text())["watermark"]["applied"]
    capsys.readouterr()
    status, checks = verify_json(grid, ledger, capsys)
    assert status == 0 and checks["watermark"]["status"] == "ok", checks
    walk = tmp_path / "walk.gif"
    assert main(["generate", "image", "--run", str(gan_run), "--interpolate", "1,2", "--steps", "4", "-o", str(walk),
                 "--ledger", ledger]) == 0
    capsys.readouterr()
    manifest = json.loads(sidecar(walk).read_text())
    assert manifest["c2pa"]["embedded"] and manifest["artefact"]["media_type"] == "image/gif"
    assert Image.open(walk).n_frames == 4
    status, checks = verify_json(walk, ledger, capsys)
    assert status == 0 and checks["watermark"]["status"] == "skipped", checks


def test_generate_image_no_sign(gan_run, tmp_path, home):
    assert main(["generate", "image", "--run", str(gan_run), "--num", "2", "-o", str(tmp_path / "out"),
                 "--no-sign", "--no-watermark"]) == 0
    images = list((tmp_path / "out").glob("*.png"))
    assert len(images) == 2 and not any(sidecar(p).exists() for p in images)
    assert not home.exists()  # no identity, no ledger
