"""LoRA fine-tuning of a pretrained ``transformers`` causal LM (SmolLM2 or any local directory) with ``peft``.

LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") freezes the base and learns a
rank-``r`` update ``B @ A`` beside chosen linear layers, so a 135M-parameter model is fine-tuned by training
under half a million numbers on two CPU cores, and the result is a small adapter beside an unchanged base.

The loop is the engine's :func:`~genchain.train.engine.fit` (schedule, AdamW, clipping, evaluation, best/last
checkpoints, resume, Ctrl-C, time budgets, metrics). It is handed a :class:`LoraTrainee`: a module whose only
registered parameters are the adapters, so the engine optimises, checkpoints and (under ``bf16``) keeps fp32
masters of those alone, while the frozen base sits beside it in bf16 and is never copied or saved. After
training, the best adapter is exported with ``peft`` (``adapter/``) and, with ``merge``, folded into a full
transformers directory (``merged/``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from genchain import rundir
from genchain.config import dump_yaml, load_recipe, to_dict
from genchain.errors import ConfigError, InputError, RunDirError
from genchain.fileio import atomic_write_text
from genchain.runtime import environment, seed_everything, select_precision
from genchain.train.checkpoint import apply_weights, read_weights
from genchain.train.engine import FitResult, TrainConfig, fit
from genchain.train.lora_data import IGNORE, Encoded, encode_all, read_records, split_records

FAMILY = "text-lora"
ADAPTER = "adapter"
MERGED = "merged"


@dataclass(frozen=True)
class LoraSettings:
    """The adapter: rank, scale (``alpha / r``), dropout on its input, and the linear layers it sits beside."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    targets: str = "q_proj+v_proj"  # module names joined by "+"

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"lora rank r must be at least 1, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"lora alpha must be positive, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("lora targets is empty; name linear layers joined by '+', e.g. q_proj+v_proj")

    @property
    def target_modules(self) -> list[str]:
        return [t.strip() for t in self.targets.split("+") if t.strip()]


@dataclass(frozen=True)
class LoraDataSettings:
    max_len: int = 0  # tokens per example (prompt + completion; longer completions are cut); 0: the model's
    # context, at most 512
    val_fraction: float = 0.1  # held-out share when the data has no held-out split

    def __post_init__(self) -> None:
        if self.max_len < 0 or self.max_len == 1:
            raise ValueError(f"max_len must be 0 (the model's context) or at least 2, got {self.max_len}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


def _lora_train_defaults() -> TrainConfig:
    """Fine-tuning, not pre-training: a small learning rate on few steps, no weight decay on the adapters."""
    return TrainConfig(batch_size=8, max_iters=200, learning_rate=2e-4, min_lr=2e-5, warmup_iters=10,
                       weight_decay=0.0, eval_interval=50, eval_iters=50, log_interval=5, tensorboard=False)


@dataclass(frozen=True)
class LoraRecipe:
    """``train gpt --lora``'s config: ``lora``, ``data`` and ``train`` sections (flat keys work too)."""

    lora: LoraSettings = field(default_factory=LoraSettings)
    data: LoraDataSettings = field(default_factory=LoraDataSettings)
    train: TrainConfig = field(default_factory=_lora_train_defaults)


class LoraTrainee(nn.Module):
    """What the engine trains: the adapters as this module's parameters, the peft model hidden beside them.

    The peft model is kept out of the module tree on purpose: ``model_tensors`` (checkpoints), ``.to()`` and
    the bf16 master copies then touch the adapters only. ``adapters`` holds the very Parameter objects that sit
    inside the peft model, so an update of one is an update of the other.
    """

    def __init__(self, peft_model: nn.Module):
        super().__init__()
        object.__setattr__(self, "peft_model", peft_model)
        self.adapters = nn.ParameterDict({name.replace(".", "__"): p for name, p in peft_model.named_parameters()
                                          if p.requires_grad})

    def train(self, mode: bool = True) -> LoraTrainee:
        super().train(mode)
        self.peft_model.train(mode)  # adapter dropout follows the engine's train/eval switches
        return self

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor):
        """The causal-LM output; its ``loss`` is the mean cross-entropy over the labelled (completion) tokens."""
        return self.peft_model(input_ids=ids, attention_mask=mask, labels=labels)


class LoraTask:
    """Random batches of encoded examples, right-padded to the longest in the batch."""

    def __init__(self, train: list[Encoded], val: list[Encoded], batch_size: int, eval_iters: int, seed: int,
                 pad_id: int, device: torch.device):
        self.train, self.val = train, val
        self.batch_size, self.eval_iters = batch_size, eval_iters
        self.pad_id, self.device = pad_id, device
        self.generator = torch.Generator().manual_seed(seed)
        self.tokens = 0

    def _collate(self, examples: list[Encoded]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        width = max(len(e.ids) for e in examples)
        ids = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, e in enumerate(examples):
            ids[row, : len(e.ids)] = torch.tensor(e.ids)
            labels[row, : len(e.labels)] = torch.tensor(e.labels)
            mask[row, : len(e.ids)] = 1
        self.tokens = int(mask.sum())
        return ids.to(self.device), mask.to(self.device), labels.to(self.device)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        picks = torch.randint(len(self.train), (self.batch_size,), generator=self.generator).tolist()
        return self._collate([self.train[i] for i in picks])

    def items_per_batch(self) -> int:
        return self.tokens

    def flops_per_item(self, model: nn.Module) -> float:
        return 0.0

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Mean completion-token loss over the held-out examples (all of them, up to ``eval_iters`` batches)."""
        total, count = 0.0, 0
        for start in range(0, min(len(self.val), self.eval_iters * self.batch_size), self.batch_size):
            ids, mask, labels = self._collate(self.val[start : start + self.batch_size])
            n = int((labels[:, 1:] != IGNORE).sum())
            total += float(model(ids, mask, labels).loss) * n
            count += n
        return {"val_loss": total / max(count, 1)}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def lora_model(base: nn.Module, settings: LoraSettings) -> nn.Module:
    """``base`` wrapped by peft with fresh adapters (seed first: A is drawn at random, B starts at zero)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=settings.target_modules, task_type="CAUSAL_LM")
    try:
        return get_peft_model(base, config)
    except ValueError as err:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in base.named_modules() if isinstance(m, nn.Linear)})
        raise ConfigError(f"lora targets {settings.targets!r} do not name layers of this model ({err}); "
                          f"its linear layers are: {'+'.join(linear)}") from err


def train_lora(init: str, data: str | Path, out_dir: str | Path, config_file: str | Path | None = None,
               overrides: list[str] | None = None, resume: bool = False, merge: bool = False) -> FitResult:
    """Fine-tune base ``init`` (``smollm2`` or a transformers dir) with LoRA on ``data``; write run ``out_dir``."""
    from genchain.generate.hf_backend import load_base

    out_dir = Path(out_dir)
    # 1. the config: the resumed run's, then the file, then the overrides
    base_values = to_dict(LoraRecipe())  # the LoRA defaults, under the file and the overrides
    if resume:
        card = rundir.require_family(out_dir, FAMILY)
        if card.get("base", {}).get("spec") != init:
            raise ConfigError(f"{out_dir} was trained from --init {card.get('base', {}).get('spec')}, not {init}")
        base_values = to_dict(load_recipe(LoraRecipe, out_dir / rundir.CONFIG))
    recipe = load_recipe(LoraRecipe, config_file, overrides, base=base_values)
    if resume and recipe.lora != load_recipe(LoraRecipe, out_dir / rundir.CONFIG).lora:
        raise ConfigError("the lora section differs from the run being resumed; only train settings may change")
    # 2. read and check the data before loading the model or writing anything
    records, held = read_records(data)
    train_records, val_records = split_records(records, held, recipe.data.val_fraction, recipe.train.seed)
    model, tokenizer, base_record = load_base(init)
    context = int(getattr(model.config, "max_position_embeddings", 512))
    if recipe.data.max_len > context:
        raise ConfigError(f"max_len {recipe.data.max_len} exceeds the model's context of {context}; lower it")
    max_len = recipe.data.max_len or min(context, 512)
    train_set = encode_all(train_records, tokenizer, max_len, "train")
    val_set = encode_all(val_records, tokenizer, max_len, "held-out")
    seed_everything(recipe.train.seed)  # the adapters' A matrices are drawn here
    peft_model = lora_model(model, recipe.lora)
    trainee = LoraTrainee(peft_model)
    # 3. the record of the run
    run = rundir.prepare_new_run(out_dir, resume)
    atomic_write_text(run / rundir.CONFIG, dump_yaml(recipe))
    if not resume:
        rundir.write_card(run, {
            "family": FAMILY, "model": "lora", "task": "causal-lm",
            "base": {"spec": init, **base_record},
            "params": sum(p.numel() for p in peft_model.parameters()),
            "trainable_params": sum(p.numel() for p in trainee.parameters()),
            "data": {"path": str(Path(data).resolve()), "train_examples": len(train_set),
                     "heldout_examples": len(val_set)},
            "environment": environment(),
        })
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def task_factory(device: torch.device) -> LoraTask:
        # the frozen base computes in the training precision; only the adapters need fp32 masters
        dtype = torch.bfloat16 if select_precision(device, recipe.train.dtype) in ("bf16", "bf16-mixed") else None
        peft_model.to(device)
        if dtype is not None:
            for p in peft_model.parameters():
                if not p.requires_grad:
                    p.data = p.data.to(dtype)
        return LoraTask(train_set, val_set, recipe.train.batch_size, recipe.train.eval_iters, recipe.train.seed,
                        pad, device)

    result = fit(trainee, task_factory, recipe.train, run, resume=resume)
    # 4. export the best adapters with peft (fp32, from the best checkpoint) and, if asked, merge them
    weights, _ = read_weights(run / rundir.BEST_WEIGHTS)
    peft_model.float()
    apply_weights(trainee, weights, run / rundir.BEST_WEIGHTS)
    peft_model.to("cpu")
    _write_dir(run / ADAPTER, lambda tmp: peft_model.save_pretrained(tmp))
    if not merge and (run / MERGED).exists():  # merged from an earlier adapter of this run: stale now
        shutil.rmtree(run / MERGED)
    if merge:
        base, tokenizer, _ = load_base(init)  # a fresh fp32 base: merging into the bf16 copy would round it
        merged = load_adapter(base, run).merge_and_unload()
        _write_dir(run / MERGED, lambda tmp: (merged.save_pretrained(tmp), tokenizer.save_pretrained(tmp)))
    card = rundir.read_card(run)
    card.pop("schema_version")
    rundir.write_card(run, {**card, "adapter": ADAPTER, "merged": MERGED if merge else None})
    return result


def load_adapter(base: nn.Module, run_dir: str | Path) -> nn.Module:
    """``base`` with the run's saved adapter attached (a peft model; ``merge_and_unload()`` folds it in)."""
    from peft import PeftModel

    adapter = Path(run_dir) / ADAPTER
    if not (adapter / "adapter_config.json").is_file():
        raise RunDirError(f"{run_dir} has no {ADAPTER}/ (the training did not finish); train it again or --resume")
    return PeftModel.from_pretrained(base, adapter)


def _write_dir(target: Path, write) -> None:
    """Fill a hidden sibling with ``write(tmp)`` and rename it onto ``target``: never a half-written model."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(staging)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_init(init: str) -> None:
    """Refuse, before any work, an ``--init`` that is not a pretrained transformers model."""
    if init == "smollm2":
        return
    path = Path(init)
    if (path / rundir.CARD).is_file():
        raise ConfigError(f"{init} is a genchain run; --lora fine-tunes a pretrained transformers model (smollm2 or "
                          "a directory with config.json). Fine-tune a genchain GPT run with --init RUN without --lora")
    if not (path / "config.json").is_file():
        raise InputError(f"--init {init} is neither smollm2 nor a transformers model directory (no config.json)")
