"""Where the data pipeline's per-partition work runs: in this process, or on a Dask cluster.

Why Dask (``dask.distributed``) rather than Ray or datatrove: it is pure Python and small (two wheels of about
1.5 MB and 1 MB, against Ray's ~70 MB of native code), it runs a local cluster of N worker processes on a laptop
or on this machine's 2 cores with no daemon to install, and the same code reaches many machines by pointing it
at a scheduler (``dask scheduler`` on one host, ``dask worker tcp://HOST:8786`` on the others, or
dask-jobqueue / dask-kubernetes on a cluster). datatrove's executors would have meant rewriting each step as
datatrove pipeline blocks with their own document type.

The executor only *maps a function over partitions, in order*: every decision that depends on more than one
row (exact dedup's "first occurrence wins", near dedup's LSH and clusters) stays in the calling process, which
consumes the results in dataset order. That is what makes a distributed run give the same dataset as a local
one, row for row.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from genchain.errors import InputError

EXECUTORS = ("local", "dask")
T = TypeVar("T")
R = TypeVar("R")


class LocalExecutor:
    """Runs every partition in this process, one after the other."""

    workers = 1

    def map(self, fn: Callable[..., R], items: Iterable[T], *args: Any) -> Iterator[R]:
        for item in items:
            yield fn(item, *args)


class DaskExecutor:
    """Runs partitions on Dask workers, a bounded number in flight, and yields the results in input order."""

    def __init__(self, client: Any, workers: int):
        self.client = client
        self.workers = workers

    def map(self, fn: Callable[..., R], items: Iterable[T], *args: Any) -> Iterator[R]:
        # the extra arguments (a cleaner and its rules) go to every worker once, not with every partition
        shared = [self.client.scatter(arg, broadcast=True) for arg in args]
        in_flight: deque = deque()
        window = 2 * self.workers  # enough to keep every worker busy; memory stays a few partitions
        for item in items:
            in_flight.append(self.client.submit(fn, item, *shared, pure=False))
            if len(in_flight) >= window:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()


@contextmanager
def open_executor(name: str = "local", workers: int | None = None, scheduler: str | None = None
                  ) -> Iterator[LocalExecutor | DaskExecutor]:
    """An executor for the duration of a ``with`` block.

    Args:
        name: ``local`` or ``dask``.
        workers: Dask worker processes to start on this machine (default: one per CPU core); ignored with
            ``scheduler``.
        scheduler: address of a running Dask scheduler (``tcp://HOST:8786``) whose workers do the work; the
            dataset must then be readable at the same path on every worker's machine.
    """
    if name not in EXECUTORS:
        raise InputError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers} must be at least 1")
    if name == "local":
        yield LocalExecutor()
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as err:
        raise InputError("--executor dask needs Dask: pip install 'genchain[distributed]' "
                         "(or pip install 'dask[distributed]')") from err
    if scheduler:
        with Client(scheduler) as client:
            yield DaskExecutor(client, max(1, len(client.scheduler_info()["workers"])))
        return
    import os

    n = workers or os.cpu_count() or 1
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield DaskExecutor(client, n)
