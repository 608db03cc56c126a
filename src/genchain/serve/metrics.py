"""Prometheus metrics of one server: requests by route and status, latencies, tokens, queue depth, batch size.

Each app gets its own :class:`prometheus_client.CollectorRegistry`, so several servers in one process (the tests)
do not share counters. ``tokens_per_second`` is the rate over the last ``window`` seconds, for dashboards that
do not compute ``rate()`` themselves.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self, window: float = 10.0):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("genchain_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.latency = Histogram("genchain_request_latency_seconds", "time to the full response", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("genchain_time_to_first_token_seconds", "time to the first generated text",
                              ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("genchain_generated_tokens", "tokens sampled", ["model"], registry=r)
        self.tokens_per_second = Gauge("genchain_tokens_per_second", "tokens sampled per second, recent window",
                                       registry=r)
        self.queue_depth = Gauge("genchain_queue_depth", "rows waiting to join a decode batch", ["model"],
                                 registry=r)
        self.batch_size = Histogram("genchain_batch_rows", "rows decoded together per step", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.window = window
        self._recent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def step_hook(self, model: str) -> Callable[[int, int], None]:
        """The scheduler's ``on_step`` for ``model``: counts tokens and records the batch size."""
        tokens = self.tokens.labels(model)
        batch = self.batch_size.labels(model)

        def on_step(rows: int, _requests: int) -> None:
            tokens.inc(rows)
            batch.observe(rows)
            now = time.monotonic()
            with self._lock:
                self._recent.append((now, rows))
                while self._recent and now - self._recent[0][0] > self.window:
                    self._recent.popleft()

        return on_step

    def render(self, queue_depths: dict[str, int]) -> bytes:
        for model, depth in queue_depths.items():
            self.queue_depth.labels(model).set(depth)
        now = time.monotonic()
        with self._lock:
            recent = sum(rows for t, rows in self._recent if now - t <= self.window)
        self.tokens_per_second.set(recent / self.window)
        return generate_latest(self.registry)
