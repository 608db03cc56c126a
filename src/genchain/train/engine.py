"""The training loop shared by every model family: read it top to bottom in :func:`fit`.

The engine owns what is the same for all families -- precision, the optimizer and its learning-rate
schedule, gradient accumulation and clipping, periodic evaluation, best/last checkpoints, resume, metrics,
progress and clean interruption. A family supplies a :class:`TrainTask`: where batches come from, how to
evaluate, and the state of its data sampler. The model's ``forward(*batch)`` returns an output with a
``loss`` (pythae's convention), so the loop never needs to know what the model is.

A family whose step cannot be "one loss, one optimizer" (the GAN: two players, two optimizers) gives its task a
``train_step(it)`` method instead (:class:`StepTask`); the engine then leaves the optimization to that method
and keeps everything else -- evaluation, checkpoints (the task's state carries its optimizers), resume, metrics,
Ctrl-C and the time budget.

Several processes (``torchrun``) run this same loop: the model is wrapped by DDP (or sharded by FSDP2 with
``strategy=fsdp``), each rank trains on its slice of every global batch, every stop decision and evaluation is
all-reduced so the ranks agree, and rank 0 alone writes metrics, checkpoints and the card (see
:mod:`genchain.train.distributed`). One process skips all of that and reads the same.
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from genchain import rundir
from genchain.errors import ConfigError, TrainingError
from genchain.runtime import seed_everything, select_device, select_precision
from genchain.train import distributed
from genchain.train.checkpoint import (
    apply_weights,
    load_training_state,
    model_tensors,
    read_weights,
    save_training_state,
    save_weights,
)
from genchain.train.precision import Precision


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; names follow nanoGPT's ``train.py`` where they overlap."""

    batch_size: int = 64
    gradient_accumulation_steps: int = 1
    max_iters: int = 5000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int = 0  # 0 means max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 200
    log_interval: int = 10
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"
    max_seconds: float = 0.0  # wall-time budget: stop, evaluate and save when spent; 0 means none
    # CPU-time budget (this process, all threads; time.process_time): what "the same CPU time" means on a
    # shared machine, where a wall-clock budget buys each side a different amount of work; 0 means none
    max_cpu_seconds: float = 0.0
    tensorboard: bool = True
    # how torchrun's processes share the work: auto (DDP when WORLD_SIZE > 1), ddp, or fsdp (parameters, gradients
    # and optimizer state sharded across ranks, for models too large to replicate); one process ignores it
    strategy: str = "auto"

    def __post_init__(self) -> None:
        for name in ("batch_size", "gradient_accumulation_steps", "eval_interval", "eval_iters", "log_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("max_iters", "warmup_iters", "lr_decay_iters"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_seconds < 0 or self.max_cpu_seconds < 0:
            raise ValueError("max_seconds and max_cpu_seconds must be >= 0 (0 means no budget)")
        if self.learning_rate <= 0 or self.min_lr < 0:
            raise ValueError("learning_rate must be positive and min_lr >= 0")
        if self.strategy not in distributed.STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(distributed.STRATEGIES)}, got {self.strategy!r}")


class TrainTask(Protocol):
    """A family's side of training."""

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        """The next training batch on the training device; ``model(*batch).loss`` must work."""

    def items_per_batch(self) -> int:
        """How many items (tokens, images) a batch holds, for the throughput figure."""

    def flops_per_item(self, model: nn.Module) -> float:
        """Training FLOPs per item for the TFLOP/s figure; 0 when the family has no estimate."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out metrics; the first key is the one "best" is judged by (lower is better)."""

    def state_dict(self) -> dict[str, Any]:
        """Sampler state, so a resumed run draws the batches an uninterrupted one would."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class StepTask(TrainTask, Protocol):
    """A task that owns its optimizers and update rule; ``next_batch`` is then the task's own business."""

    def train_step(self, it: int) -> dict[str, float]:
        """Run iteration ``it``'s updates; return the metrics to log (the first one is shown on the bar)."""


def learning_rate_at(it: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to ``min_lr`` at ``lr_decay_iters`` (nanoGPT's schedule)."""
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it >= decay_iters:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.learning_rate - cfg.min_lr)


def build_optimizer(params: list[torch.Tensor], cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, norms or 1-D gains), fused where it can."""
    decay = [p for p in params if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in params if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    from torch.distributed.tensor import DTensor

    fused = (device.type in ("cpu", "cuda") and all(p.dtype == torch.float32 for p in decay + no_decay)
             and not any(isinstance(p, DTensor) for p in decay))  # FSDP's sharded parameters: the foreach path
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=fused)


class _StopFlag:
    """Turns the first Ctrl-C into a request to stop at the next iteration boundary (and save)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopFlag:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class MetricsLog:
    """``metrics.jsonl`` plus, when enabled, TensorBoard scalars under ``tb/``."""

    def __init__(self, run_dir: Path, start_iter: int, tensorboard: bool, enabled: bool = True):
        self.path = run_dir / rundir.METRICS
        self.enabled = enabled  # rank 0 writes; the other ranks' logs are no-ops
        self.writer = None
        if not enabled:
            return
        self._truncate_after(start_iter)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_iter or None)

    def _truncate_after(self, start_iter: int) -> None:
        """On resume, drop points logged after the checkpoint so the file holds one consistent curve."""
        if not self.path.exists():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines() if start_iter > 0 else []
        keep = [line for line in lines if line.strip() and json.loads(line)["iter"] <= start_iter]
        self.path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")

    def log(self, kind: str, it: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"kind": kind, "iter": it, "time": round(time.time(), 3), **values}) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{kind}/{key}", value, it)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class FitResult:
    iters: int
    best_metric: float
    last_metrics: dict[str, float]
    stopped_early: bool
    train_seconds: float

    def announce(self, out: str | Path) -> None:
        """Print the one-line outcome for the command line, once: on rank 0 only under torchrun."""
        if not distributed.is_main():
            return
        state = "stopped early at" if self.stopped_early else "finished"
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in self.last_metrics.items())
        best = f"; best {self.best_metric:.4f}" if math.isfinite(self.best_metric) else ""
        print(f"{state} iteration {self.iters} in {self.train_seconds:.1f}s: {metrics}{best} -> {out}")


def fit(
    model: nn.Module,
    task_factory: Callable[[torch.device], TrainTask],
    cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
) -> FitResult:
    """Train ``model`` on the task's batches until ``cfg.max_iters``, Ctrl-C or a time budget.

    Args:
        model: fp32 module on the CPU, initialised identically on every rank; it is moved to the chosen device
            and precision here (a :class:`StepTask` moves it itself, as its optimizers and precision are its own).
        task_factory: builds the family's task once the device is known.
        cfg: optimisation settings.
        run_dir: where checkpoints and metrics go (see :mod:`genchain.rundir`).
        resume: continue from ``last.safetensors`` + ``state.pt`` in ``run_dir``.
    """
    run_dir = Path(run_dir)
    device = select_device(cfg.device)
    place = distributed.init(device)
    seed_everything(cfg.seed + place.rank)  # dropout differs per rank; the weights were drawn before, alike
    strategy = distributed.resolve_strategy(cfg.strategy)
    precision_name = select_precision(device, cfg.dtype)
    task = task_factory(device)
    train_step: Callable[[int], dict[str, float]] | None = getattr(task, "train_step", None)
    fsdp_dtype = None
    if strategy == "fsdp":
        if train_step is not None:
            raise ConfigError("strategy=fsdp is for the single-optimizer families (GPT, VAE, text VAE); the GAN "
                              "averages its gradients itself: use strategy=auto")
        if precision_name == "fp16-mixed":
            raise ConfigError("strategy=fsdp trains in bf16 or fp32 here; set dtype=bf16 or dtype=fp32")
        # FSDP keeps the fp32 shards as master weights and gathers bf16 copies for compute itself
        fsdp_dtype = torch.bfloat16 if precision_name in ("bf16", "bf16-mixed") else None
        precision_name = "fp32"
    precision = Precision(precision_name, device)

    checkpoint: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
    if resume:
        checkpoint = _read_checkpoint(run_dir)
    net, optimizer, params, names = model, None, [], []
    if train_step is None:
        params = precision.prepare(model)
        names = precision.master.names if precision.master is not None else [n for n, _ in model.named_parameters()]
        if checkpoint is not None:  # before wrapping: DDP broadcasts these tensors, FSDP shards them
            _load_weights(model, precision, checkpoint[0], run_dir)
        net = distributed.wrap(model, strategy, device, fsdp_dtype)
        if strategy == "fsdp":
            params = list(model.parameters())  # the sharded parameters that replaced the whole ones
        optimizer = build_optimizer(params, cfg, device)
    elif checkpoint is not None:
        _load_weights(model, precision, checkpoint[0], run_dir)

    start_iter, best = 0, math.inf
    if checkpoint is not None:
        start_iter, best = _restore_state(checkpoint[1], task, device, optimizer, precision, net, strategy,
                                          _optimizer_names(optimizer, params, names))
    if start_iter >= cfg.max_iters and resume:
        raise ConfigError(f"the run is already at iteration {start_iter}; raise max_iters to train further")

    metrics = MetricsLog(run_dir, start_iter, cfg.tensorboard, enabled=place.is_main)
    flops_per_item = task.flops_per_item(model)

    def save(it: int, eval_metrics: dict[str, float]) -> None:
        """Every rank calls this (FSDP gathers the full tensors; the samplers' states are gathered); rank 0
        writes, and the others wait for it, so a restart never finds a half-saved run."""
        nonlocal best
        tensors = _fp32_tensors(model, precision, strategy)
        optimizer_state = _optimizer_state(net, optimizer, strategy)
        rng = distributed.gather_objects(_rng_state(device))
        task_states = distributed.gather_objects(task.state_dict())
        metric, value = next(iter(eval_metrics.items()))
        improved = value < best
        best = min(best, value)
        if place.is_main:
            meta = {"iter": str(it), "format": "genchain"}
            if improved:
                save_weights(run_dir / rundir.BEST_WEIGHTS, tensors, meta)
            save_weights(run_dir / rundir.LAST_WEIGHTS, tensors, meta)
            save_training_state(run_dir / rundir.STATE, {
                "iter": it, "best": best, "optimizer": optimizer_state, "precision": precision.state_dict(),
                "task": task_states[0], "rng": rng[0], "task_ranks": task_states, "rng_ranks": rng,
            })
            card = rundir.read_card(run_dir)
            card.pop("schema_version")
            rundir.write_card(run_dir, {**card, "iters": it, "best": {metric: best}, "last_eval": eval_metrics,
                                        "precision": precision.name, "device": str(device),
                                        "world_size": place.world_size, "strategy": strategy})
        distributed.barrier()

    def evaluate(it: int) -> dict[str, float]:
        model.eval()
        with torch.no_grad(), precision.autocast():
            result = distributed.mean_dict(task.evaluate(model))  # every rank judges "best" on the same numbers
        model.train()
        metrics.log("eval", it, result)
        return result

    net.train()
    it = start_iter
    last_eval: dict[str, float] = {}
    last_eval_iter = -1
    started, cpu_started = time.perf_counter(), time.process_time()
    window_start, window_items = time.perf_counter(), 0
    # The bar is for terminals (rank 0's); piped output (CI, logs) gets the eval lines and metrics.jsonl instead.
    bar = tqdm(total=cfg.max_iters, initial=start_iter, desc="train", unit="it", dynamic_ncols=True, leave=False,
               mininterval=0.5, disable=None if place.is_main else True)
    with _StopFlag() as stop:
        while it < cfg.max_iters:
            distributed.fault_point(it)
            if train_step is not None:  # the family's own update (the GAN: D then G, each with its optimizer)
                point = train_step(it)
                window_items += task.items_per_batch()
                bad = [key for key, value in point.items() if not math.isfinite(value)]
                if bad:
                    raise TrainingError(f"{bad[0]} became {point[bad[0]]} at iteration {it}; "
                                        "lower the learning rates or change the loss")
            else:
                lr = learning_rate_at(it, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss_sum = 0.0
                for micro in range(cfg.gradient_accumulation_steps):
                    batch = task.next_batch()
                    # gradients are exchanged once per iteration, on the last micro-step
                    with distributed.gradient_sync(net, micro == cfg.gradient_accumulation_steps - 1):
                        with precision.autocast():
                            loss = net(*batch).loss / cfg.gradient_accumulation_steps
                        precision.backward(loss)
                    loss_sum += loss.item()
                    window_items += task.items_per_batch()
                if not math.isfinite(loss_sum):
                    raise TrainingError(f"training loss became {loss_sum} at iteration {it}; "
                                        "lower learning_rate or raise warmup_iters")
                grad_norm = precision.unscale_and_clip(optimizer, params, cfg.grad_clip)
                precision.step(optimizer)
                point = {"loss": loss_sum, "lr": lr, "grad_norm": grad_norm}
            it += 1
            bar.update(1)
            if it % cfg.log_interval == 0 or it == cfg.max_iters:
                elapsed = time.perf_counter() - window_start
                rate = window_items / elapsed if elapsed > 0 else 0.0
                point = distributed.mean_dict({**point, "items_per_s": rate})  # the ranks' mean ...
                point["items_per_s"] *= place.world_size  # ... but the throughput of all of them together
                if flops_per_item:
                    point["tflops"] = point["items_per_s"] * flops_per_item / 1e12
                metrics.log("train", it, point)
                shown = next(iter(point))
                bar.set_postfix({shown: f"{point[shown]:.4f}", "tok_s": f"{point['items_per_s']:,.0f}"})
                window_start, window_items = time.perf_counter(), 0
            out_of_time = bool(cfg.max_seconds and time.perf_counter() - started >= cfg.max_seconds) or bool(
                cfg.max_cpu_seconds and time.process_time() - cpu_started >= cfg.max_cpu_seconds)
            if distributed.any_true(out_of_time or stop.requested):  # all ranks stop at the same iteration
                break
            if it % cfg.eval_interval == 0 and it < cfg.max_iters:
                last_eval, last_eval_iter = evaluate(it), it
                if place.is_main:
                    bar.write(f"iter {it}: " + ", ".join(f"{k} {v:.4f}" for k, v in last_eval.items()))
                save(it, last_eval)
                window_start, window_items = time.perf_counter(), 0  # throughput excludes evaluation
        bar.close()
        if last_eval_iter != it:
            last_eval = evaluate(it)
            save(it, last_eval)
    metrics.close()
    return FitResult(iters=it, best_metric=best, last_metrics=last_eval,
                     stopped_early=it < cfg.max_iters, train_seconds=time.perf_counter() - started)


def _fp32_tensors(model: nn.Module, precision: Precision, strategy: str) -> list[tuple[str, torch.Tensor]]:
    """The whole model's fp32 tensors under their plain names (on rank 0; [] on the others under FSDP)."""
    if strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return [(name, full[name]) for name, _ in model_tensors(model)] if full else []
    if precision.master is None:
        return model_tensors(model)
    master = dict(precision.master.named_fp32())
    return [(name, master.get(name, tensor)) for name, tensor in model_tensors(model)]


def _optimizer_state(net: nn.Module, optimizer: torch.optim.Optimizer | None, strategy: str) -> dict | None:
    """The optimizer's state: indexed by parameter position, or, under FSDP, whole and keyed by parameter name."""
    if optimizer is None:
        return None
    if strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(net, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict()


def _optimizer_names(optimizer: torch.optim.Optimizer | None, params: list[torch.Tensor],
                     names: list[str]) -> list[str]:
    """The parameter name behind each index of ``optimizer.state_dict()`` (its groups' order)."""
    if optimizer is None:
        return []
    by_id = {id(p): name for p, name in zip(params, names, strict=True)}
    return [by_id[id(p)] for group in optimizer.param_groups for p in group["params"]]


def _rekey_optimizer(state: dict, mapping: dict) -> dict:
    """An optimizer state dict with its parameter keys (positions or names) replaced through ``mapping``."""
    return {"state": {mapping[k]: v for k, v in state["state"].items()},
            "param_groups": [{**g, "params": [mapping[p] for p in g["params"]]} for g in state["param_groups"]]}


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _read_checkpoint(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The last weights and the training state saved with them (checked to belong together)."""
    weights, meta = read_weights(run_dir / rundir.LAST_WEIGHTS)
    return weights, load_training_state(run_dir / rundir.STATE, meta)


def _load_weights(model: nn.Module, precision: Precision, weights: dict[str, torch.Tensor], run_dir: Path) -> None:
    apply_weights(model, weights, run_dir / rundir.LAST_WEIGHTS)
    if precision.master is not None:  # the model holds bf16 copies; the fp32 masters come from the file exactly
        with torch.no_grad():
            for name, master in precision.master.named_fp32():
                master.copy_(weights[name])


def _restore_state(training: dict[str, Any], task: TrainTask, device: torch.device,
                   optimizer: torch.optim.Optimizer | None, precision: Precision, net: nn.Module, strategy: str,
                   names: list[str]) -> tuple[int, float]:
    """Optimizer, scaler, sampler and RNG state from ``state.pt``. A run saved by N ranks resumes on M: each rank
    takes its own sampler and RNG state when the world size is unchanged, else rank 0's."""
    if optimizer is not None:
        saved = training["optimizer"]
        by_name = any(isinstance(k, str) for g in saved["param_groups"] for k in g["params"])
        if strategy == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            if not by_name:  # saved by DDP or one process: positions -> names
                saved = _rekey_optimizer(saved, dict(enumerate(names)))
            set_optimizer_state_dict(net, optimizer, saved, options=StateDictOptions(full_state_dict=True))
        else:
            if by_name:  # saved by FSDP: names -> positions
                saved = _rekey_optimizer(saved, {name: i for i, name in enumerate(names)})
            optimizer.load_state_dict(saved)
    precision.load_state_dict(training["precision"])
    place = distributed.world()
    same_world = len(training.get("task_ranks") or []) == place.world_size
    task.load_state_dict(training["task_ranks"][place.rank] if same_world else training["task"])
    rng = training["rng_ranks"][place.rank] if same_world else training["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return int(training["iter"]), float(training["best"])
