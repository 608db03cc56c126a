"""Causal language modelling: the GPT recipe (config), its batches, and ``train_gpt``.

Batches are random windows of the token stream, as nanoGPT samples them, drawn with a generator whose
state is checkpointed so ``--resume`` continues the exact sequence of batches. Validation loss is measured
on a fixed set of windows (the same at every evaluation), so successive figures differ only by the model.

Under torchrun every rank holds the same generator and draws the starts of the *global* batch (``batch_size``
x world size), then reads only its slice: the ranks never read the same window of a step, and 2 processes x B
see exactly the windows of 1 process x 2B. (Seeding each rank differently would not give that: two ranks could
draw the same window.)
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from genchain import rundir
from genchain.config import dump_yaml, load_recipe, to_dict
from genchain.data.manifest import manifest_hash
from genchain.data.tokens import TokenDataset
from genchain.errors import ConfigError, InputError, RunDirError
from genchain.fileio import atomic_write_text, sha256_file
from genchain.models.gpt import GPT, GPTConfig
from genchain.models.registry import create_model
from genchain.runtime import environment, seed_everything
from genchain.train import distributed
from genchain.train.checkpoint import load_weights
from genchain.train.engine import FitResult, TrainConfig, fit


@dataclass(frozen=True)
class GPTRecipe:
    """``genchain train gpt``'s config: a ``model`` and a ``train`` section (flat keys work too)."""

    model: GPTConfig = field(default_factory=GPTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class LMTask:
    """Random (B, T) windows of a token stream; targets are the inputs shifted by one."""

    def __init__(self, data: TokenDataset, block_size: int, batch_size: int, eval_iters: int, seed: int,
                 device: torch.device):
        for split, tokens in (("train", data.train), ("val", data.val)):
            if len(tokens) <= block_size + 1:
                raise InputError(f"the {split} split has {len(tokens)} tokens, fewer than block_size + 2 = "
                                 f"{block_size + 2}; use more text or a smaller block_size")
        self.data = data
        self.seq_len = block_size
        self.batch_size = batch_size
        self.eval_iters = eval_iters
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)  # the same on every rank: see the module docstring
        self.eval_seed = seed + 1
        self.world_size = distributed.world().world_size
        self.rank_part = distributed.local_slice(batch_size)

    def _windows(self, tokens: np.ndarray, generator: torch.Generator,
                 part: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(tokens) - self.seq_len - 1, (self.batch_size * self.world_size,),
                               generator=generator)[part].tolist()
        window = torch.from_numpy(np.stack([tokens[s : s + self.seq_len + 1] for s in starts]).astype(np.int64))
        window = window.to(self.device, non_blocking=True)
        return window[:, :-1], window[:, 1:]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._windows(self.data.train, self.generator, self.rank_part)

    def items_per_batch(self) -> int:
        return self.batch_size * self.seq_len

    def flops_per_item(self, model: nn.Module) -> float:
        return model.flops_per_token(self.seq_len)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        generator = torch.Generator().manual_seed(self.eval_seed)  # each rank scores its slice of the same windows
        losses = [model(*self._windows(self.data.val, generator, self.rank_part)).loss.item()
                  for _ in range(self.eval_iters)]
        return {"val_loss": float(np.mean(losses))}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def load_gpt(run_dir: str | Path, weights: str = rundir.BEST_WEIGHTS) -> tuple[GPT, dict[str, Any]]:
    """The GPT of a run dir in fp32 on the CPU, and its card."""
    card = rundir.require_family(run_dir, "text")
    recipe = load_recipe(GPTRecipe, Path(run_dir) / rundir.CONFIG)
    model = create_model(card.get("model", "gpt"), **to_dict(recipe.model))
    assert isinstance(model, GPT)
    load_weights(model, Path(run_dir) / weights)
    return model, card


def train_gpt(
    data_dir: str | Path,
    out_dir: str | Path,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
    resume: bool = False,
    init: str | Path | None = None,
) -> FitResult:
    """Train (or fine-tune from ``init``, or resume) a GPT on a token dataset; everything lands in ``out_dir``."""
    out_dir = Path(out_dir)
    data = TokenDataset.open(data_dir)
    place = distributed.init()  # under torchrun: join the group first, as only rank 0 writes the run dir
    resume = distributed.should_resume(resume, (out_dir / rundir.STATE).is_file())
    # 1. resolve the config: the resumed run's, or the init run's model, then the file, then the overrides
    saved: GPTRecipe | None = None
    base: dict[str, Any] = {}
    if resume:
        saved = rundir.saved_recipe(out_dir, "text", GPTRecipe)
        base = to_dict(saved)
    elif init is not None:
        rundir.require_family(init, "text")
        _check_same_tokenizer(Path(init), data)
        base = {"model": to_dict(load_recipe(GPTRecipe, Path(init) / rundir.CONFIG).model)}
    recipe = load_recipe(GPTRecipe, config_file, overrides, base=base)
    recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model,
                                                                   vocab_size=data.tokenizer.vocab_size))
    # 2. check everything that can be checked before anything is written
    if saved is not None:
        if saved.model != recipe.model:
            raise ConfigError("the model section differs from the run being resumed; "
                              "only train settings (e.g. max_iters) may change on --resume")
        if rundir.read_card(out_dir).get("data", {}).get("tokenizer_sha256") != _tokenizer_hash(data):
            raise InputError(f"{data_dir} uses another tokenizer than the run being resumed")
    run = rundir.prepare_new_run(out_dir, resume)

    # 3. build the model (seeded: the weight init draws from the global generator)
    seed_everything(recipe.train.seed)
    model = create_model("gpt", **to_dict(recipe.model))
    if init is not None and not resume:
        load_weights(model, Path(init) / rundir.BEST_WEIGHTS)

    # 4. record the run (rank 0), then train
    if place.is_main:
        atomic_write_text(run / rundir.CONFIG, dump_yaml(recipe))
        if not resume:
            shutil.copyfile(data.directory / "tokenizer.json", run / rundir.TOKENIZER)
            rundir.write_card(run, {
                "family": "text", "model": "gpt", "task": "causal-lm",
                "params": sum(p.numel() for p in model.parameters()),
                "data": {"dir": str(Path(data_dir).resolve()), "manifest_sha256": manifest_hash(data_dir),
                         "tokenizer": data.tokenizer.kind, "tokenizer_sha256": _tokenizer_hash(data),
                         **rundir.data_provenance(data.manifest)},
                "init": str(init) if init else None,
                "environment": environment(),
            })
    distributed.barrier()

    def task_factory(device: torch.device) -> LMTask:
        return LMTask(data, recipe.model.block_size, recipe.train.batch_size, recipe.train.eval_iters,
                      recipe.train.seed, device)

    return fit(model, task_factory, recipe.train, run, resume=resume)


def _tokenizer_hash(data: TokenDataset) -> str:
    return sha256_file(data.directory / "tokenizer.json")


def _check_same_tokenizer(init_dir: Path, data: TokenDataset) -> None:
    init_tok = init_dir / rundir.TOKENIZER
    if not init_tok.is_file():
        raise RunDirError(f"{init_dir} has no {rundir.TOKENIZER}; it cannot be fine-tuned here")
    if sha256_file(init_tok) != _tokenizer_hash(data):
        raise InputError(
            f"{data.directory} was tokenized differently from {init_dir}; prepare the fine-tuning data with the "
            f"same tokenizer (genchain data prepare text ... --tokenizer-from {init_dir})"
        )
