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
    tensorboard: bool = True

    def __post_init__(self) -> None:
        for name in ("batch_size", "gradient_accumulation_steps", "eval_interval", "eval_iters", "log_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("max_iters", "warmup_iters", "lr_decay_iters"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.min_lr < 0:
            raise ValueError("learning_rate must be positive and min_lr >= 0")


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
    fused = device.type in ("cpu", "cuda") and all(p.dtype == torch.float32 for p in decay + no_decay)
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

    def __init__(self, run_dir: Path, start_iter: int, tensorboard: bool):
        self.path = run_dir / rundir.METRICS
        self._truncate_after(start_iter)
        self.writer = None
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


def fit(
    model: nn.Module,
    task_factory: Callable[[torch.device], TrainTask],
    cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
) -> FitResult:
    """Train ``model`` on the task's batches until ``cfg.max_iters``, Ctrl-C or ``cfg.max_seconds``.

    Args:
        model: fp32 module on the CPU; it is moved to the chosen device and precision here (a
            :class:`StepTask` moves it itself, as its optimizers and precision are its own).
        task_factory: builds the family's task once the device is known.
        cfg: optimisation settings.
        run_dir: where checkpoints and metrics go (see :mod:`genchain.rundir`).
        resume: continue from ``last.safetensors`` + ``state.pt`` in ``run_dir``.
    """
    run_dir = Path(run_dir)
    seed_everything(cfg.seed)
    device = select_device(cfg.device)
    precision = Precision(select_precision(device, cfg.dtype), device)
    task = task_factory(device)
    train_step: Callable[[int], dict[str, float]] | None = getattr(task, "train_step", None)
    optimizer: torch.optim.Optimizer | None = None
    if train_step is None:
        params = precision.prepare(model)
        optimizer = build_optimizer(params, cfg, device)

    start_iter, best = 0, math.inf
    if resume:
        start_iter, best = _restore(run_dir, model, precision, optimizer, task)
    if start_iter >= cfg.max_iters and resume:
        raise ConfigError(f"the run is already at iteration {start_iter}; raise max_iters to train further")

    metrics = MetricsLog(run_dir, start_iter, cfg.tensorboard)
    flops_per_item = task.flops_per_item(model)

    def save(it: int, eval_metrics: dict[str, float]) -> None:
        nonlocal best
        tensors = _fp32_tensors(model, precision)
        meta = {"iter": str(it), "format": "genchain"}
        metric, value = next(iter(eval_metrics.items()))
        if value < best:
            best = value
            save_weights(run_dir / rundir.BEST_WEIGHTS, tensors, meta)
        save_weights(run_dir / rundir.LAST_WEIGHTS, tensors, meta)
        save_training_state(run_dir / rundir.STATE, {
            "iter": it, "best": best, "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "precision": precision.state_dict(),
            "task": task.state_dict(), "rng": _rng_state(device),
        })
        card = rundir.read_card(run_dir)
        card.pop("schema_version")
        rundir.write_card(run_dir, {**card, "iters": it, "best": {metric: best}, "last_eval": eval_metrics,
                                    "precision": precision.name, "device": str(device)})

    def evaluate(it: int) -> dict[str, float]:
        model.eval()
        with torch.no_grad(), precision.autocast():
            result = task.evaluate(model)
        model.train()
        metrics.log("eval", it, result)
        return result

    model.train()
    it = start_iter
    last_eval: dict[str, float] = {}
    last_eval_iter = -1
    started = time.perf_counter()
    window_start, window_items = time.perf_counter(), 0
    # The bar is for terminals; piped output (CI, logs) gets the eval lines and metrics.jsonl instead.
    bar = tqdm(total=cfg.max_iters, initial=start_iter, desc="train", unit="it", dynamic_ncols=True, leave=False,
               mininterval=0.5, disable=None)
    with _StopFlag() as stop:
        while it < cfg.max_iters and not stop.requested:
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
                for _ in range(cfg.gradient_accumulation_steps):
                    batch = task.next_batch()
                    with precision.autocast():
                        loss = model(*batch).loss / cfg.gradient_accumulation_steps
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
                point = {**point, "items_per_s": rate}
                if flops_per_item:
                    point["tflops"] = rate * flops_per_item / 1e12
                metrics.log("train", it, point)
                shown = next(iter(point))
                bar.set_postfix({shown: f"{point[shown]:.4f}", "tok_s": f"{rate:,.0f}"})
                window_start, window_items = time.perf_counter(), 0
            if cfg.max_seconds and time.perf_counter() - started >= cfg.max_seconds:
                break
            if it % cfg.eval_interval == 0 and it < cfg.max_iters:
                last_eval, last_eval_iter = evaluate(it), it
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


def _fp32_tensors(model: nn.Module, precision: Precision) -> list[tuple[str, torch.Tensor]]:
    if precision.master is None:
        return model_tensors(model)
    master = dict(precision.master.named_fp32())
    return [(name, master.get(name, tensor)) for name, tensor in model_tensors(model)]


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore(run_dir: Path, model: nn.Module, precision: Precision, optimizer: torch.optim.Optimizer | None,
             task: TrainTask) -> tuple[int, float]:
    state, meta = read_weights(run_dir / rundir.LAST_WEIGHTS)
    apply_weights(model, state, run_dir / rundir.LAST_WEIGHTS)
    if precision.master is not None:  # the model holds bf16 copies; the fp32 masters come from the file exactly
        with torch.no_grad():
            for name, master in precision.master.named_fp32():
                master.copy_(state[name])
    training = load_training_state(run_dir / rundir.STATE, meta)
    if optimizer is not None:
        optimizer.load_state_dict(training["optimizer"])
    precision.load_state_dict(training["precision"])
    task.load_state_dict(training["task"])
    rng = training["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return int(training["iter"]), float(training["best"])
