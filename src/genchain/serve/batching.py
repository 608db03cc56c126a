"""Continuous batching for our GPT: every live request of one model is decoded in the same forward pass.

One scheduler per model owns one decode thread. Each loop iteration

1. admits waiting requests while free rows remain (all ``n`` choices of a request join together),
2. runs one forward pass over every live row: rows that have just joined (or whose context is full) are
   prefilled one by one, all the others advance by one token in a single (B, 1) batched call,
3. samples each row's next token with that row's own temperature, top_p and ``torch.Generator``,
4. hands the new text to the request's consumer and retires rows that hit EOS, a stop string or max_tokens.

New requests therefore join between decode steps and finished ones leave without waiting for the batch, as in
Orca (Yu et al., OSDI 2022). The model's own :class:`~genchain.models.gpt.KVCache` keeps one length for the whole
batch, which rows of different ages cannot share, so this module keeps its own *padded, per-row* cache: keys and
values of shape (layers, max_batch, heads, block_size, head_dim), one row per live sequence, each with its own
position. A (B, 1, 1, L) additive mask hides the cache entries beyond each row's position, so rows of different
lengths attend only to their own past. Live rows are kept packed in rows ``0..B-1`` (a finished row is replaced
by the last one), so the decode step reads a prefix view of the cache without gathering. When a row reaches the
model's context it is re-prefilled from its last three quarters of a block, the rule of
:mod:`genchain.generate.text`.

``batching=False`` admits a request only when no other is running: the same code one request at a time, which is
the baseline of ``benchmarks/bench_serve_load.py``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

from genchain.generate.text import cut_at_stop

if TYPE_CHECKING:
    from genchain.generate.text import TextGenerator
    from genchain.provenance.watermark_text import TextWatermark

Emit = Callable[[dict[str, Any]], None]


class QueueFull(Exception):
    """The scheduler's queue holds ``queue_size`` rows already; the caller answers 429 with Retry-After."""

    def __init__(self, retry_after: float):
        super().__init__(f"the generation queue is full; retry in {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass
class GenerationRequest:
    """One API request: ``n`` continuations of one prompt with one set of sampling parameters.

    ``emit`` is called from the decode thread with events ``{"type": "delta", "index", "text"}`` and
    ``{"type": "done", "index", "text", "finish_reason", "tokens"}``; it must only hand them over (for example with
    ``loop.call_soon_threadsafe``), never block.
    """

    prompt_ids: list[int]
    n: int
    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None
    emit: Emit
    watermark: TextWatermark | None = None
    cancelled: bool = False


@dataclass
class _Row:
    """One choice of a request while it decodes."""

    request: GenerationRequest
    index: int
    generator: torch.Generator
    tokens: list[int]  # prompt + generated, the row's whole context
    pending: list[int]  # tokens to feed on the next step: the prompt at first, then the last sampled token
    cached: int = 0  # positions in the cache
    generated: list[int] = field(default_factory=list)
    emitted: int = 0  # characters of text already sent
    hold: int = 0  # characters held back while they could begin a stop string
    final_text: str | None = None  # set when a stop string cut the text


@dataclass
class SchedulerStats:
    """Counters the tests and /metrics read: they tell what the loop did, not how fast."""

    steps: int = 0  # forward passes
    tokens: int = 0  # tokens sampled
    requests: int = 0  # requests finished
    max_rows: int = 0  # most rows in one step
    max_requests_in_step: int = 0  # most distinct requests in one step: >1 means requests shared a batch
    shared_steps: int = 0  # steps whose rows came from more than one request
    last_batch_rows: int = 0


class BatchScheduler:
    """The decode loop of one model (see the module docstring).

    Args:
        generator: the loaded model, tokenizer, device and dtype.
        max_batch: most rows decoded together.
        queue_size: most rows waiting to start; beyond it :meth:`submit` raises :class:`QueueFull`.
        batching: False runs one request at a time (the benchmark's baseline).
        on_step: called after each step with (rows, requests) for metrics.
    """

    def __init__(self, generator: TextGenerator, max_batch: int = 32, queue_size: int = 256, batching: bool = True,
                 on_step: Callable[[int, int], None] | None = None):
        if max_batch < 1 or queue_size < 1:
            raise ValueError("max_batch and queue_size must be at least 1")
        self.gen = generator
        self.model = generator.model
        self.tokenizer = generator.tokenizer
        self.max_batch = max_batch
        self.queue_size = queue_size
        self.batching = batching
        self.on_step = on_step
        self.stats = SchedulerStats()
        cfg = self.model.config
        self.block = cfg.block_size
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        device, dtype = generator.device, generator.dtype
        self.k_t = torch.zeros((cfg.n_layer, max_batch, cfg.n_head, self.head_dim, self.block), device=device,
                               dtype=dtype)  # keys transposed: q @ k^T reads a prefix of each row in place
        self.v = torch.zeros((cfg.n_layer, max_batch, cfg.n_head, self.block, self.head_dim), device=device,
                             dtype=dtype)
        self._waiting: deque[GenerationRequest] = deque()
        self._waiting_rows = 0
        self._rows: list[_Row] = []
        self._cond = threading.Condition()
        self._stop = False
        self._step_seconds = 0.05
        self._thread = threading.Thread(target=self._loop, name="genchain-decode", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------------ public
    @property
    def queue_depth(self) -> int:
        return self._waiting_rows

    @property
    def active_rows(self) -> int:
        return len(self._rows)

    def submit(self, request: GenerationRequest) -> None:
        """Queue a request; raises :class:`QueueFull` when the queue cannot take its ``n`` rows."""
        if request.n > self.max_batch:
            raise ValueError(f"n={request.n} is more than this server decodes at once ({self.max_batch}); "
                             "ask for fewer choices")
        with self._cond:
            if self._waiting_rows + request.n > self.queue_size:
                backlog = (self._waiting_rows + len(self._rows)) / max(1, self.max_batch if self.batching else 1)
                raise QueueFull(max(1.0, backlog * request.max_tokens * self._step_seconds))
            self._waiting.append(request)
            self._waiting_rows += request.n
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._waiting and not self._rows:
                    self._cond.wait()
                if self._stop:
                    return
                self._admit()
            started = time.perf_counter()
            try:
                self._step()
            except Exception as err:  # a bug must not hang every client: fail the live requests, keep serving
                for row in self._rows:
                    row.request.emit({"type": "error", "index": row.index, "message": f"generation failed: {err}"})
                self._rows.clear()
            self._step_seconds = 0.9 * self._step_seconds + 0.1 * (time.perf_counter() - started)

    def _admit(self) -> None:
        """Move waiting requests into free rows (caller holds the lock)."""
        while self._waiting:
            request = self._waiting[0]
            if request.cancelled:
                self._waiting.popleft()
                self._waiting_rows -= request.n
                continue
            if not self.batching and self._rows:
                return
            if len(self._rows) + request.n > self.max_batch:
                return
            self._waiting.popleft()
            self._waiting_rows -= request.n
            for i in range(request.n):
                generator = torch.Generator(self.gen.device)
                seed = request.seed if request.seed is not None else int(torch.seed() % 2**62)
                generator.manual_seed((seed * 1_000_003 + i) % 2**63)
                hold = max((len(s) for s in request.stop), default=1) - 1
                self._rows.append(_Row(request, i, generator, list(request.prompt_ids), list(request.prompt_ids),
                                       hold=hold))

    @torch.inference_mode()
    def _step(self) -> None:
        rows = [r for r in self._rows if r.request.cancelled]
        for row in rows:
            self._retire(row)
        if not self._rows:
            return
        logits = torch.empty((len(self._rows), self.model.config.vocab_size), device=self.gen.device,
                             dtype=torch.float32)
        # 1. prefill rows that joined (or overflowed) one at a time, in place
        decode = []
        for slot, row in enumerate(self._rows):
            if len(row.pending) > 1 or row.cached + len(row.pending) > self.block:
                if row.cached + len(row.pending) > self.block:
                    row.pending = row.tokens[-(self.block * 3 // 4):]
                    row.cached = 0
                logits[slot] = self._forward(torch.tensor([row.pending], device=self.gen.device),
                                             [slot], [row.cached])[0].float()
                row.cached += len(row.pending)
                row.pending = []
            else:
                decode.append(slot)
        # 2. every other row advances by one token in one batched call
        if decode:
            tokens = torch.tensor([[self._rows[s].pending[0]] for s in decode], device=self.gen.device)
            starts = [self._rows[s].cached for s in decode]
            logits[decode] = self._forward(tokens, decode, starts).float()
            for s in decode:
                self._rows[s].cached += 1
                self._rows[s].pending = []
        # 3. sample every row with its own parameters and generator
        next_tokens = self._sample(logits).tolist()
        requests = {id(r.request) for r in self._rows}
        st = self.stats
        st.steps += 1
        st.tokens += len(self._rows)
        st.last_batch_rows = len(self._rows)
        st.max_rows = max(st.max_rows, len(self._rows))
        st.max_requests_in_step = max(st.max_requests_in_step, len(requests))
        st.shared_steps += len(requests) > 1
        if self.on_step is not None:
            self.on_step(len(self._rows), len(requests))
        # 4. hand out text, retire finished rows
        for row, token in list(zip(self._rows, next_tokens, strict=True)):
            reason = self._advance(row, token)
            if reason is not None:
                self._finish(row, reason)

    def _forward(self, idx: torch.Tensor, slots: list[int], starts: list[int]) -> torch.Tensor:
        """Last-position logits (B, V) for tokens ``idx`` (B, T) of rows ``slots`` starting at ``starts``.

        Either one row (a prefill, any T) or B rows with T = 1; keys and values are written into the rows' cache
        slots at their positions, and each row attends to its own positions ``[0, start + t]`` only.
        """
        model = self.model
        B, T = idx.shape
        device = idx.device
        start = torch.tensor(starts, device=device)
        pos = start[:, None] + torch.arange(T, device=device)[None, :]  # (B, T)
        length = max(starts) + T  # the cache prefix any row reads
        contiguous = slots == list(range(slots[0], slots[0] + B))
        rows = slice(slots[0], slots[0] + B) if contiguous else torch.tensor(slots, device=device)
        keep = torch.arange(length, device=device)[None, None, :] <= pos[:, :, None]  # (B, T, L)
        mask = torch.zeros((B, 1, T, length), device=device, dtype=self.gen.dtype)
        mask.masked_fill_(~keep[:, None], float("-inf"))
        x = model.transformer.wte(idx) + model.transformer.wpe(pos)  # (B, T, C)
        nh, hs = self.n_head, self.head_dim
        for layer, block in enumerate(model.transformer.h):
            attn = block.attn
            q, k, v = attn.c_attn(block.ln_1(x)).split(attn.n_embd, dim=2)
            q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
            k = k.view(B, T, nh, hs).transpose(1, 2)
            v = v.view(B, T, nh, hs).transpose(1, 2)
            if T == 1:
                cols = torch.tensor(starts, device=device)
                row_ids = torch.tensor(slots, device=device)
                self.k_t[layer, row_ids, :, :, cols] = k[:, :, 0, :]  # (B, nh, hs)
                self.v[layer, row_ids, :, cols] = v[:, :, 0, :]
            else:
                self.k_t[layer, slots[0], :, :, starts[0]:starts[0] + T] = k[0].transpose(-2, -1)
                self.v[layer, slots[0], :, starts[0]:starts[0] + T] = v[0]
            keys_t = self.k_t[layer, rows, :, :, :length]  # (B, nh, hs, L)
            values = self.v[layer, rows, :, :length]  # (B, nh, L, hs)
            scores = torch.matmul(q * hs**-0.5, keys_t) + mask  # (B, nh, T, L)
            y = torch.matmul(scores.softmax(dim=-1), values)  # (B, nh, T, hs)
            y = y.transpose(1, 2).contiguous().view(B, T, attn.n_embd)
            x = x + attn.c_proj(y)
            x = x + block.mlp(block.ln_2(x))
        x = model.transformer.ln_f(x[:, -1, :])
        return model.lm_head(x)  # (B, V)

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        """Next token per row: the row's watermark, temperature and nucleus, drawn with the row's generator.

        Drawing one uniform number per row from its own generator and inverting the row's CDF keeps every draw
        of a seeded request the same whatever else shares the batch.
        """
        rows = self._rows
        marked = [i for i, r in enumerate(rows) if r.request.watermark is not None]
        if marked:
            watermark = rows[marked[0]].request.watermark
            prev = torch.tensor([rows[i].tokens[-1] for i in marked], device=logits.device)
            logits[marked] = watermark.apply(logits[marked], prev)
        temps = torch.tensor([r.request.temperature for r in rows], device=logits.device)
        top_p = torch.tensor([r.request.top_p for r in rows], device=logits.device)
        greedy = logits.argmax(dim=-1)
        scaled = logits / temps.clamp_min(1e-5)[:, None]
        sorted_logits, order = torch.sort(scaled, descending=True, dim=-1)
        probs = F.softmax(sorted_logits, dim=-1)
        cumulative = probs.cumsum(dim=-1)
        probs = probs.masked_fill(cumulative - probs >= top_p[:, None], 0.0)  # keep the smallest prefix >= top_p
        cdf = probs.cumsum(dim=-1)
        draws = torch.cat([torch.rand(1, generator=r.generator, device=logits.device) for r in rows])
        picked = torch.searchsorted(cdf, (draws * cdf[:, -1])[:, None]).clamp_max(cdf.size(-1) - 1)
        sampled = order.gather(1, picked).squeeze(1)
        return torch.where(temps == 0, greedy, sampled)

    def _advance(self, row: _Row, token: int) -> str | None:
        """Record ``token`` on ``row``, send what text is ready; the finish reason when the row is done."""
        request = row.request
        if token == self.tokenizer.eos_id:
            return "stop"
        row.tokens.append(token)
        row.generated.append(token)
        row.pending = [token]
        text = self.tokenizer.decode(row.generated)
        cut = cut_at_stop(text, request.stop)
        if len(cut) < len(text):
            row.final_text = cut
            return "stop"
        if len(row.generated) >= request.max_tokens:
            return "length"
        ready = len(text) - row.hold
        if not text.endswith("\ufffd") and ready > row.emitted:
            request.emit({"type": "delta", "index": row.index, "text": text[row.emitted:ready]})
            row.emitted = ready
        return None

    def _finish(self, row: _Row, reason: str) -> None:
        text = row.final_text
        if text is None:
            text = cut_at_stop(self.tokenizer.decode(row.generated), row.request.stop)
        if len(text) > row.emitted:
            row.request.emit({"type": "delta", "index": row.index, "text": text[row.emitted:]})
        row.request.emit({"type": "done", "index": row.index, "text": text, "finish_reason": reason,
                          "tokens": len(row.generated)})
        if all(r is row or r.request is not row.request for r in self._rows):
            self.stats.requests += 1
        self._retire(row)

    def _retire(self, row: _Row) -> None:
        """Free ``row``'s slot by moving the last live row (and its cache) into it."""
        slot = self._rows.index(row)
        last = len(self._rows) - 1
        if slot != last:
            self.k_t[:, slot] = self.k_t[:, last]
            self.v[:, slot] = self.v[:, last]
            self._rows[slot] = self._rows[last]
        self._rows.pop()
