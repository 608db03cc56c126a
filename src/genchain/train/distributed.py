"""Several processes, one training run: the process group from torchrun's environment, and the few collectives
the engine needs.

``torchrun`` starts one process per device and tells each who it is through ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT``. :func:`init` reads them and joins the group (gloo on CPU,
NCCL on CUDA, one GPU per ``LOCAL_RANK``); without them everything here is a no-op for a single process, so the
engine calls these helpers unconditionally and reads the same either way.

How the work is split (see ``docs/distributed.md``):

* **Data.** Every rank builds its sampler with the same seed, draws the *global* batch (``batch_size`` x world
  size) and keeps its slice (:func:`local_slice`). So no window or image is seen twice in an epoch, and 2
  processes x batch B draw exactly the samples of 1 process x batch 2B.
* **Gradients.** :func:`wrap` puts the model under DistributedDataParallel (or FSDP2's ``fully_shard`` when
  ``strategy=fsdp``); the GAN, whose step owns two optimizers and runs D several times per backward, averages
  its gradients by hand with :func:`average_gradients` instead.
* **Agreement.** Every decision that ends or branches the loop (a time budget, Ctrl-C, "is this the best
  evaluation so far") is taken on all-reduced numbers, so all ranks stop at the same iteration and never wait
  on a collective that one of them has left.
"""

from __future__ import annotations

import atexit
import os
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from genchain.errors import ConfigError

STRATEGIES = ("auto", "ddp", "fsdp")
# Test hook for the kill-and-resume test: "RANK:ITER" makes that rank SIGKILL itself at that iteration, on
# torchrun's first attempt only, as a crashed worker would die.
FAULT_ENV = "GENCHAIN_FAULT_KILL_AT"


@dataclass(frozen=True)
class World:
    """Who this process is among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, metrics, the card and the progress bar; the others only compute."""
        return self.rank == 0


def world() -> World:
    """This process's place, from torchrun's environment (one process when it is not set)."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def is_main() -> bool:
    return world().is_main


def init(device: torch.device | None = None) -> World:
    """Join the process group when started by torchrun (idempotent); a no-op for a single process.

    Families call it before writing the run dir (only rank 0 writes it); the engine calls it again.
    """
    w = world()
    if not w.enabled or dist.is_initialized():
        return w
    if "MASTER_ADDR" not in os.environ:
        raise ConfigError(f"WORLD_SIZE={w.world_size} but MASTER_ADDR is not set; start several processes with "
                          "torchrun (torchrun --nproc-per-node N -m genchain train ...)")
    cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
    if cuda:
        torch.cuda.set_device(w.local_rank)
    backend = "nccl" if cuda else "gloo"
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        # torchrun's store outlives a restart, and with it the addresses the dead workers published: a restarted
        # rank that starts faster than its peer would read its stale address and fail to connect. A namespace per
        # attempt keeps each attempt's keys apart.
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), w.world_size,
                              is_master=False, timeout=timedelta(minutes=30))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(backend, store=dist.PrefixStore(f"genchain/attempt_{attempt}", store), rank=w.rank,
                                world_size=w.world_size)
    else:
        dist.init_process_group(backend)
    atexit.register(_shutdown)
    return w


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def elastic_restart() -> bool:
    """True when torchrun restarted this worker after a failure (``--max-restarts``)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def should_resume(resume: bool, has_checkpoint: bool) -> bool:
    """Resume when asked, or when torchrun restarted the workers and a checkpoint exists: a worker that died
    must come back where the run last saved, not start over (torchrun re-runs the same command line)."""
    return resume or (elastic_restart() and has_checkpoint)


def fault_point(it: int) -> None:
    """Kill this process at the iteration named by :data:`FAULT_ENV` (tests only; first attempt only)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec or elastic_restart():
        return
    rank, at = (int(x) for x in spec.split(":"))
    if rank == world().rank and it == at:
        os.kill(os.getpid(), signal.SIGKILL)


def resolve_strategy(strategy: str) -> str:
    """``none`` for one process; else ``ddp`` (the default) or ``fsdp``."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    if not world().enabled:
        return "none"
    return "ddp" if strategy == "auto" else strategy


# --------------------------------------------------------------------------------------------- data sharding
def local_slice(batch_size: int) -> slice:
    """This rank's part of a global batch of ``batch_size`` x world size samples."""
    w = world()
    return slice(w.rank * batch_size, (w.rank + 1) * batch_size)


# --------------------------------------------------------------------------------------------- model wrapping
def wrap(model: nn.Module, strategy: str, device: torch.device, param_dtype: torch.dtype | None = None) -> nn.Module:
    """The module the training step calls: ``model`` itself, under DDP, or sharded in place by FSDP2.

    Args:
        model: on its device, already in its training dtype (and, on resume, holding the checkpoint's weights:
            DDP broadcasts rank 0's tensors, FSDP shards what it is given).
        strategy: from :func:`resolve_strategy`.
        device: the training device.
        param_dtype: FSDP only: the dtype parameters are all-gathered in for compute (bf16 for mixed precision);
            the sharded fp32 parameters stay the optimizer's master weights.
    """
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        # device_ids=None: the tasks put batches on the device themselves, and DDP must not move every tensor
        # argument there (the text VAE's sequence lengths stay on the CPU, as pack_padded_sequence wants)
        return DistributedDataParallel(model, device_ids=None)
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(device.type, (world().world_size,))
        policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
        # each block of a ModuleList (the GPT's transformer layers) is its own unit: its parameters are gathered
        # just before it runs and freed after, so one layer, not the model, is ever whole in memory
        for module in model.modules():
            if isinstance(module, nn.ModuleList):
                for block in module:
                    fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        return model
    return model


@contextmanager
def gradient_sync(module: nn.Module, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on all but the last micro-step of an accumulated batch (DDP's ``no_sync``,
    FSDP2's ``set_requires_gradient_sync``): the gradients are summed locally and exchanged once."""
    if sync:
        yield
        return
    if hasattr(module, "no_sync"):
        with module.no_sync():
            yield
        return
    if hasattr(module, "set_requires_gradient_sync"):
        module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True)
        return
    yield  # a single process has nothing to exchange


# --------------------------------------------------------------------------------------------- collectives
def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def any_true(flag: bool) -> bool:
    """True on every rank when it is true on any: how all ranks agree to stop at the same iteration."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([float(flag)], device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_dict(values: dict[str, float]) -> dict[str, float]:
    """The mean over ranks of each value (every rank passes the same keys in the same order)."""
    if not dist.is_initialized() or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=_device())
    dist.all_reduce(t)
    return dict(zip(values, (t / world().world_size).tolist(), strict=True))


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (picklable objects: RNG and sampler states)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * world().world_size
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """Replace each gradient by its mean over ranks, in one flat all-reduce (what DDP does, by hand)."""
    if not dist.is_initialized():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat)
    flat /= world().world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


@torch.no_grad()
def broadcast_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank, as DDP does before each forward."""
    if not dist.is_initialized():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)
