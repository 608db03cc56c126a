import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY_MODEL
from genchain import rundir
from genchain.errors import CheckpointError, ConfigError, InputError, RunDirError
from genchain.train.engine import TrainConfig, learning_rate_at
from genchain.train.lm import load_gpt, train_gpt


def _train_losses(run):
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(p["iter"], p["loss"]) for p in lines if p["kind"] == "train"]


def test_tiny_run_leaves_a_complete_run_dir(tiny_run):
    for name in (rundir.CONFIG, rundir.CARD, rundir.BEST_WEIGHTS, rundir.LAST_WEIGHTS, rundir.STATE,
                 rundir.METRICS, rundir.TOKENIZER):
        assert (tiny_run / name).is_file(), name
    card = rundir.read_card(tiny_run)
    assert card["family"] == "text" and card["iters"] == 20 and card["environment"]["torch"]
    losses = [loss for _, loss in _train_losses(tiny_run)]
    assert losses[-1] < losses[0]


def test_resume_gives_the_same_loss_curve_as_an_uninterrupted_run(char_dataset, tmp_path):
    common = TINY_MODEL + ["lr_decay_iters=20", "dropout=0.1"]
    train_gpt(char_dataset, tmp_path / "full", overrides=common + ["max_iters=20"])
    train_gpt(char_dataset, tmp_path / "split", overrides=common + ["max_iters=10"])
    train_gpt(char_dataset, tmp_path / "split", overrides=["max_iters=20"], resume=True)
    full, split = _train_losses(tmp_path / "full"), _train_losses(tmp_path / "split")
    assert [i for i, _ in full] == [i for i, _ in split]
    assert [loss for _, loss in full] == pytest.approx([loss for _, loss in split], abs=1e-6)


def test_resume_refuses_a_changed_model_or_a_finished_run(tiny_run, char_dataset):
    with pytest.raises(ConfigError, match="model section differs"):
        train_gpt(char_dataset, tiny_run, overrides=["n_layer=3", "max_iters=30"], resume=True)
    with pytest.raises(ConfigError, match="raise max_iters"):
        train_gpt(char_dataset, tiny_run, resume=True)


def test_existing_run_is_not_overwritten(tiny_run, char_dataset):
    before = (tiny_run / rundir.BEST_WEIGHTS).read_bytes()
    with pytest.raises(RunDirError, match="--resume"):
        train_gpt(char_dataset, tiny_run, overrides=TINY_MODEL + ["max_iters=2"])
    assert (tiny_run / rundir.BEST_WEIGHTS).read_bytes() == before


def test_fine_tune_from_another_run(tiny_run, char_dataset, tmp_path):
    result = train_gpt(char_dataset, tmp_path / "ft", overrides=["max_iters=3", "eval_iters=2",
                                                                 "tensorboard=false"], init=tiny_run)
    base, _ = load_gpt(tiny_run)
    tuned, card = load_gpt(tmp_path / "ft")
    assert tuned.config == base.config and card["init"] == str(tiny_run)
    assert result.best_metric < 3.0  # starts from the trained weights, not from scratch (ln 27 = 3.3)


def test_fine_tune_needs_the_same_tokenizer(tiny_run, tmp_path):
    from genchain.data.tokens import prepare_text

    (tmp_path / "other.txt").write_text("completely different characters: XYZ 123 " * 200)
    prepare_text([str(tmp_path / "other.txt")], tmp_path / "other")
    with pytest.raises(InputError, match="tokenized differently"):
        train_gpt(tmp_path / "other", tmp_path / "ft", init=tiny_run)


def test_corrupt_checkpoint_is_reported(tiny_run, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / rundir.BEST_WEIGHTS).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_gpt(broken)


def test_learning_rate_schedule_warms_up_then_decays_to_min():
    cfg = TrainConfig(learning_rate=1.0, min_lr=0.1, warmup_iters=10, max_iters=100)
    assert learning_rate_at(0, cfg) == pytest.approx(1 / 11)
    assert learning_rate_at(10, cfg) == pytest.approx(1.0)
    assert learning_rate_at(55, cfg) == pytest.approx(0.55)
    assert learning_rate_at(100, cfg) == pytest.approx(0.1)


def test_block_size_larger_than_the_data_is_explained(char_dataset, tmp_path):
    with pytest.raises(InputError, match="fewer than block_size"):
        train_gpt(char_dataset, tmp_path / "r", overrides=TINY_MODEL + ["block_size=100000", "max_iters=1"])


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_that_resumes(char_dataset, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "genchain", "train", "gpt", "--data", str(char_dataset), "--out", str(run),
           *TINY_MODEL, "max_iters=100000", "log_interval=1", "eval_interval=100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / rundir.METRICS).exists() or len((run / rundir.METRICS).read_text().splitlines()) < 5:
        assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped early" in out
    state_iter = rundir.read_card(run)["iters"]
    assert 5 <= state_iter < 100000
    more = subprocess.run(cmd[:-3] + [f"max_iters={state_iter + 3}", "--resume"], capture_output=True, text=True,
                          env={**os.environ}, timeout=120)
    assert more.returncode == 0, more.stderr
    assert rundir.read_card(run)["iters"] == state_iter + 3
