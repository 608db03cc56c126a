"""Training with several processes (torchrun, gloo on the CPU): equivalence with one process, a killed worker,
checkpoints across world sizes, FSDP, and the sharding helpers.

The multi-process tests start real ``torchrun --standalone --nproc-per-node 2 -m genchain train gpt`` runs of a
tiny GPT in fp32 (``OMP_NUM_THREADS=1``). Tolerance for "the same loss curve": 1e-5 absolute on losses near 3;
what differs between 2 x B and 1 x 2B is only the order of floating-point sums (measured: ~3e-7).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_corpus
from genchain import rundir
from genchain.data.tokens import TokenDataset, prepare_text
from genchain.errors import ConfigError
from genchain.train import distributed
from genchain.train.checkpoint import read_weights
from genchain.train.engine import TrainConfig, _rekey_optimizer
from genchain.train.lm import LMTask, load_gpt, train_gpt

TORCHRUN = Path(sys.executable).with_name("torchrun")
ARGS = ["n_layer=2", "n_head=2", "n_embd=32", "block_size=32", "eval_iters=2", "eval_interval=5", "log_interval=1",
        "tensorboard=false", "warmup_iters=2", "learning_rate=3e-3", "dtype=fp32", "gradient_accumulation_steps=2"]
TOL = 1e-5

pytestmark = pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun is not installed beside this python")


def _torchrun(data: Path, out: Path, overrides: list[str], *flags: str, env: dict[str, str] | None = None,
              family: str = "gpt") -> str:
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", *flags, "-m", "genchain", "train", family,
           "--data", str(data), "--out", str(out), *overrides]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def _points(run: Path, kind: str) -> list[dict]:
    lines = [json.loads(x) for x in (run / rundir.METRICS).read_text().splitlines()]
    return [p for p in lines if p["kind"] == kind]


def _curve(run: Path) -> tuple[list[int], list[float], list[float]]:
    train, val = _points(run, "train"), _points(run, "eval")
    return [p["iter"] for p in train], [p["loss"] for p in train], [p["val_loss"] for p in val]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    (root / "corpus.txt").write_text(make_corpus(), encoding="utf-8")
    prepare_text([str(root / "corpus.txt")], root / "data", tokenizer="char")
    return root / "data"


@pytest.fixture(scope="module")
def ddp_run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    _torchrun(data, out, ARGS + ["batch_size=8", "max_iters=10"])
    return out


# ----------------------------------------------------------------------------------------------- torchrun runs
@pytest.mark.slow
def test_two_processes_of_batch_b_match_one_process_of_batch_2b(ddp_run, data, tmp_path):
    train_gpt(data, tmp_path / "one", overrides=ARGS + ["batch_size=16", "max_iters=10"])
    iters2, loss2, val2 = _curve(ddp_run)
    iters1, loss1, val1 = _curve(tmp_path / "one")
    assert iters2 == iters1 == list(range(1, 11))  # rank 0 alone writes metrics: one point per iteration
    assert loss2 == pytest.approx(loss1, abs=TOL)
    assert val2 == pytest.approx(val1, abs=TOL)
    assert loss2[-1] < loss2[0] - 0.2  # it trained
    card = rundir.read_card(ddp_run)
    assert card["world_size"] == 2 and card["strategy"] == "ddp" and card["iters"] == 10
    point = _points(ddp_run, "train")[-1]
    assert point["items_per_s"] > 0  # the throughput of both ranks together


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_finishes_with_the_uninterrupted_weights(ddp_run, data, tmp_path):
    # rank 1 SIGKILLs itself at iteration 7 (after the checkpoint at 5); torchrun restarts both workers, which
    # resume from iteration 5 on their own (no --resume on the command line)
    _torchrun(data, tmp_path / "killed", ARGS + ["batch_size=8", "max_iters=10"], "--max-restarts", "1",
              env={distributed.FAULT_ENV: "1:7"})
    killed, _ = read_weights(tmp_path / "killed" / rundir.LAST_WEIGHTS)
    whole, _ = read_weights(ddp_run / rundir.LAST_WEIGHTS)
    for name, tensor in whole.items():
        torch.testing.assert_close(killed[name], tensor, rtol=0, atol=1e-6)
    assert [p["iter"] for p in _points(tmp_path / "killed", "train")] == list(range(1, 11))  # no repeated points


@pytest.mark.slow
def test_checkpoints_move_between_world_sizes(ddp_run, data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ddp_run, run)
    model, _ = load_gpt(run)  # the 2-rank checkpoint is a plain one
    assert sum(p.numel() for p in model.parameters()) > 0
    result = train_gpt(data, run, overrides=["max_iters=15"], resume=True)  # 2 ranks -> 1 process
    assert result.iters == 15
    _torchrun(data, run, ["max_iters=20", "--resume"])  # 1 process -> 2 ranks
    assert rundir.read_card(run)["iters"] == 20 and rundir.read_card(run)["world_size"] == 2
    iters, losses, _ = _curve(run)
    assert iters == list(range(1, 21)) and all(np.isfinite(losses))


@pytest.mark.slow
def test_fsdp_trains_like_ddp_and_saves_a_plain_checkpoint(ddp_run, data, tmp_path):
    _torchrun(data, tmp_path / "fsdp", ARGS + ["batch_size=8", "max_iters=10", "strategy=fsdp"])
    _, fsdp_loss, fsdp_val = _curve(tmp_path / "fsdp")
    _, ddp_loss, ddp_val = _curve(ddp_run)
    assert fsdp_loss == pytest.approx(ddp_loss, abs=TOL) and fsdp_val == pytest.approx(ddp_val, abs=TOL)
    fsdp_weights, _ = read_weights(tmp_path / "fsdp" / rundir.LAST_WEIGHTS)
    ddp_weights, _ = read_weights(ddp_run / rundir.LAST_WEIGHTS)
    assert fsdp_weights.keys() == ddp_weights.keys()
    for name, tensor in ddp_weights.items():
        torch.testing.assert_close(fsdp_weights[name], tensor, rtol=0, atol=1e-4)
    # its optimizer state (saved whole, keyed by parameter name) resumes in one process
    result = train_gpt(data, tmp_path / "fsdp", overrides=["max_iters=12"], resume=True)
    assert result.iters == 12


@pytest.mark.slow
def test_image_families_train_under_torchrun(tmp_path):
    from genchain.data.ingest import ingest
    from genchain.data.sources import get_source
    from genchain.train.gan import load_gan
    from genchain.train.vae import load_vae

    get_source("digits", tmp_path / "raw")
    ingest([str(tmp_path / "raw")], tmp_path / "digits", kind="image", label_from="dirname")
    common = ["tensorboard=false", "log_interval=1", "dtype=fp32"]
    _torchrun(tmp_path / "digits", tmp_path / "vae", common + ["model=vae-tiny", "image_size=16", "batch_size=16",
                                                               "max_iters=12", "eval_interval=6", "grid_images=8",
                                                               "learning_rate=3e-3", "warmup_iters=2"], family="vae")
    losses = [p["loss"] for p in _points(tmp_path / "vae", "train")]
    assert len(losses) == 12 and losses[-1] < losses[0]
    assert rundir.read_card(tmp_path / "vae")["world_size"] == 2
    load_vae(tmp_path / "vae")
    assert len(list((tmp_path / "vae" / "samples").glob("samples_*.png"))) == 2  # rank 0 alone draws grids
    _torchrun(tmp_path / "digits", tmp_path / "gan", common + ["model=gan-tiny", "batch_size=8", "max_iters=4",
                                                               "eval_iters=2", "eval_interval=2", "grid_samples=8"],
              family="gan")
    assert all(np.isfinite(p["swd"]) for p in _points(tmp_path / "gan", "eval"))
    load_gan(tmp_path / "gan")


# ----------------------------------------------------------------------------------------------- in-process
def test_rank_slices_of_the_global_batch_are_the_one_process_batch(data, monkeypatch):
    tokens = TokenDataset.open(data)
    single = LMTask(tokens, 16, 8, 1, seed=3, device=torch.device("cpu")).next_batch()[0]
    parts = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        parts.append(LMTask(tokens, 16, 4, 1, seed=3, device=torch.device("cpu")).next_batch()[0])
    assert torch.equal(torch.cat(parts), single)  # each drawn window is read by exactly one rank


def test_strategy_and_restart_decisions(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="strategy must be one of"):
        TrainConfig(strategy="zero3")
    assert distributed.resolve_strategy("fsdp") == "none"  # one process: nothing to shard
    with pytest.raises(ConfigError, match="strategy must be one of"):
        distributed.resolve_strategy("deepspeed")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.resolve_strategy("auto") == "ddp" and not distributed.is_main()
    assert distributed.local_slice(8) == slice(8, 16)
    assert distributed.should_resume(False, has_checkpoint=True) is False
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert distributed.should_resume(False, has_checkpoint=True) is True
    assert distributed.should_resume(False, has_checkpoint=False) is False  # died before the first save
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="torchrun"):
        distributed.init()


def test_optimizer_state_rekeying_round_trips():
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(2))]
    optimizer = torch.optim.AdamW([{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}])
    sum(p.sum() for p in params).backward()
    optimizer.step()
    state = optimizer.state_dict()
    by_name = _rekey_optimizer(state, {0: "w", 1: "b"})
    assert set(by_name["state"]) == {"w", "b"} and by_name["param_groups"][1]["params"] == ["b"]
    back = _rekey_optimizer(by_name, {"w": 0, "b": 1})
    fresh = torch.optim.AdamW([{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}])
    fresh.load_state_dict(back)
    torch.testing.assert_close(fresh.state[params[0]]["exp_avg"], optimizer.state[params[0]]["exp_avg"])


def test_text_vae_trains_under_torchrun_and_ranks_split_each_batch(tmp_path, monkeypatch):
    from genchain.generate.text_vae import TextVAEGenerator
    from genchain.train.text_vae import TextVAETask, _data_for, resolve_recipe
    from test_text_vae_train import SENTENCES, TINY, _text_dataset

    data_dir = _text_dataset(tmp_path / "sentences", SENTENCES)
    _torchrun(data_dir, tmp_path / "tvae", [*TINY, "max_iters=6", "eval_interval=3", "log_interval=1", "dtype=fp32",
                                            "batch_size=8"], family="text-vae")
    assert rundir.read_card(tmp_path / "tvae")["world_size"] == 2
    assert all(np.isfinite(p["loss"]) for p in _points(tmp_path / "tvae", "train"))
    assert len(TextVAEGenerator.from_run(tmp_path / "tvae").sample(2, seed=0)) == 2

    recipe = resolve_recipe(None, [*TINY, "batch_size=8"], {})
    sentences = _data_for(data_dir, recipe)
    single = TextVAETask(sentences, resolve_recipe(None, [*TINY, "batch_size=16"], {}), torch.device("cpu"))
    parts = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        parts.append(TextVAETask(sentences, recipe, torch.device("cpu")).batch_indices())
    assert torch.equal(torch.cat(parts), single.batch_indices())  # each sentence of a step goes to one rank
