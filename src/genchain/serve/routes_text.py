"""Text endpoints: ``/v1/completions``, ``/v1/chat/completions`` (both streaming or not) and the arena.

A GPT request goes to its model's :class:`~genchain.serve.batching.BatchScheduler` and its events come back
through an ``asyncio.Queue``; a text-vae request samples whole sentences in a worker thread. Either way the
texts pass the safety filter (a withheld text becomes ``finish_reason: "content_filter"``; streamed text is
checked line by line, as ``genchain generate text --stream`` does) and are written as artefacts before the
response ends, so the response can carry their ids.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from genchain.errors import GenchainError
from genchain.eval import human_store
from genchain.serve.batching import GenerationRequest
from genchain.serve.errors import APIError
from genchain.serve.registry import TEXT_FAMILIES, ModelEntry
from genchain.serve.schemas import ArenaPairRequest, ArenaVoteRequest, ChatRequest, CompletionRequest

router = APIRouter()


@dataclass(frozen=True)
class TextJob:
    entry: ModelEntry
    prompt: str
    n: int
    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None


def _server(request: Request) -> Any:
    return request.app.state.server


async def events(server: Any, job: TextJob) -> AsyncIterator[dict[str, Any]]:
    """``delta`` and ``done`` events of every choice, in the order they are produced."""
    if job.entry.family == "text-vae":
        generator = await asyncio.to_thread(server.load_model, job.entry)
        texts = await asyncio.to_thread(generator.sample, job.n, job.seed, job.temperature, job.max_tokens)
        for i, text in enumerate(texts):
            yield {"type": "delta", "index": i, "text": text}
            yield {"type": "done", "index": i, "text": text, "finish_reason": "stop", "tokens": len(text.split()),
                   "prompt_tokens": 0}
        return
    scheduler, generator, watermark = await asyncio.to_thread(server.scheduler_for, job.entry)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    try:
        prompt_ids = generator.encode_prompt(job.prompt)
    except GenchainError as err:
        raise APIError(400, str(err), param="prompt") from None
    request = GenerationRequest(prompt_ids, job.n, job.max_tokens, job.temperature, job.top_p, job.stop, job.seed,
                                emit=lambda event: loop.call_soon_threadsafe(queue.put_nowait, event),
                                watermark=watermark)
    server.submit(scheduler, request)
    done = 0
    try:
        while done < job.n:
            event = await queue.get()
            if event["type"] == "error":
                raise APIError(503, event["message"], type="server_error")
            done += event["type"] == "done"
            yield {**event, "prompt_tokens": len(prompt_ids)}
    finally:
        if done < job.n:
            request.cancelled = True


class LineFilter:
    """Streamed text held until each line is complete, then checked and redacted (the CLI's rule)."""

    def __init__(self, safety: Any):
        self.safety = safety
        self.pending = ""
        self.withheld = False

    def feed(self, piece: str) -> str:
        if self.safety is None:
            return piece
        self.pending += piece
        out = []
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            out.append(self._line(line) + "\n")
        return "".join(out)

    def flush(self) -> str:
        if self.safety is None or not self.pending:
            return ""
        line, self.pending = self.pending, ""
        return self._line(line)

    def _line(self, line: str) -> str:
        verdict = self.safety.check_output(line)
        if verdict.withheld:
            self.withheld = True
            return f"[withheld by the safety filter: {verdict.category}]"
        return verdict.text


def _job(server: Any, body: CompletionRequest | ChatRequest, prompt: str, default_max: int) -> TextJob:
    entry = server.model(body.model, TEXT_FAMILIES)
    server.check_prompt(prompt)
    max_tokens = body.max_tokens or default_max
    if max_tokens > server.config.max_tokens:
        raise APIError(400, f"max_tokens is {max_tokens}; this server generates at most {server.config.max_tokens} "
                            "tokens per choice", param="max_tokens")
    return TextJob(entry, prompt, body.n, max_tokens, body.temperature, body.top_p, body.stops(), body.seed)


async def _complete(server: Any, job: TextJob) -> tuple[list[dict[str, Any]], list[str]]:
    """Every choice finished (texts filtered) and recorded: (choices, artefact ids)."""
    choices: list[dict[str, Any]] = [{} for _ in range(job.n)]
    async for event in events(server, job):
        if event["type"] == "done":
            choices[event["index"]] = event
    for choice in choices:
        if server.safety is not None:
            verdict = server.safety.check_output(choice["text"])
            if verdict.withheld:
                choice["text"], choice["finish_reason"] = "", "content_filter"
            else:
                choice["text"] = verdict.text
    ids = await server.record_texts(job, [c["text"] for c in choices])
    return choices, ids


def _usage(request: Request, job: TextJob, choices: list[dict[str, Any]]) -> dict[str, int]:
    completion = sum(int(c.get("tokens", 0)) for c in choices)
    prompt = int(choices[0].get("prompt_tokens", 0))
    request.state.log = {"model": job.entry.name, "prompt_tokens": prompt, "completion_tokens": completion}
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    server = _server(request)
    job = _job(server, body, body.text(), default_max=16)
    rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if body.stream:
        return _stream(server, request, job, rid, created, chat=False)
    choices, ids = await _complete(server, job)
    return {"id": rid, "object": "text_completion", "created": created, "model": job.entry.name,
            "choices": [{"text": c["text"], "index": i, "logprobs": None, "finish_reason": c["finish_reason"]}
                        for i, c in enumerate(choices)],
            "usage": _usage(request, job, choices), "genchain": server.genchain_field(job.entry, ids)}


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request):
    server = _server(request)
    try:
        prompt = body.prompt()
    except ValueError as err:
        raise APIError(400, str(err), param="messages") from None
    job = _job(server, body, prompt, default_max=server.config.chat_max_tokens)
    rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if body.stream:
        return _stream(server, request, job, rid, created, chat=True)
    choices, ids = await _complete(server, job)
    return {"id": rid, "object": "chat.completion", "created": created, "model": job.entry.name,
            "system_fingerprint": None,
            "choices": [{"index": i, "message": {"role": "assistant", "content": c["text"], "refusal": None},
                         "logprobs": None, "finish_reason": c["finish_reason"]} for i, c in enumerate(choices)],
            "usage": _usage(request, job, choices), "genchain": server.genchain_field(job.entry, ids)}


def _stream(server: Any, request: Request, job: TextJob, rid: str, created: int, chat: bool) -> StreamingResponse:
    """Server-sent events in OpenAI's chunk shapes; the last chunk carries the artefact ids."""
    obj = "chat.completion.chunk" if chat else "text_completion"
    started = time.perf_counter()

    def chunk(index: int, text: str | None, finish: str | None, first: bool = False) -> dict[str, Any]:
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": text or ""} if first else (
                {"content": text} if text is not None else {})
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"text": text or "", "index": index, "logprobs": None, "finish_reason": finish}
        return {"id": rid, "object": obj, "created": created, "model": job.entry.name, "choices": [choice]}

    def sse(data: dict[str, Any]) -> str:
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    async def body() -> AsyncIterator[str]:
        filters = [LineFilter(server.safety) for _ in range(job.n)]
        texts = [""] * job.n
        finishes: list[str] = ["stop"] * job.n
        tokens = prompt_tokens = 0
        first_text = True
        if chat:
            for i in range(job.n):
                yield sse(chunk(i, "", None, first=True))
        try:
            async for event in events(server, job):
                i = event["index"]
                if event["type"] == "delta":
                    piece = filters[i].feed(event["text"])
                else:
                    piece = filters[i].flush()
                    finishes[i] = "content_filter" if filters[i].withheld else event["finish_reason"]
                    tokens += int(event["tokens"])
                    prompt_tokens = int(event["prompt_tokens"])
                if piece:
                    if first_text:
                        server.metrics.ttft.labels(job.entry.name).observe(time.perf_counter() - started)
                        first_text = False
                    texts[i] += piece
                    yield sse(chunk(i, piece, None))
        except APIError as err:
            yield sse({"error": err.body()["error"]})
            return
        ids = await server.record_texts(job, texts)
        request.state.log = {"model": job.entry.name, "prompt_tokens": prompt_tokens,
                             "completion_tokens": tokens}
        for i in range(job.n):
            last = chunk(i, None, finishes[i])
            if i == job.n - 1:
                last["genchain"] = server.genchain_field(job.entry, ids)
            yield sse(last)
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# ---------------------------------------------------------------------------------------------------- arena
@router.post("/v1/arena/pair")
async def arena_pair(body: ArenaPairRequest, request: Request):
    """Two models' continuations of one prompt, sides shuffled, model names withheld until the vote."""
    server = _server(request)
    names = body.models or server.registry.names(("text",))
    if body.models is None:
        if len(names) < 2:
            raise APIError(400, "the arena needs two GPT models; this server has "
                                f"{len(names)} (put more run dirs under --runs)", param="models")
        names = random.sample(names, 2)
    if names[0] == names[1]:
        raise APIError(400, "pick two different models", param="models")
    entries = [server.model(name, TEXT_FAMILIES) for name in names]
    server.check_prompt(body.prompt)
    jobs = [TextJob(e, body.prompt, 1, body.max_tokens, 0.8, 1.0, (), None) for e in entries]
    results = await asyncio.gather(*(_complete(server, job) for job in jobs))
    ids = []
    for entry, (choices, _) in zip(entries, results, strict=True):
        added = await asyncio.to_thread(server.store.ratings.add_samples, entry.name,
                                        [(body.prompt, choices[0]["text"])], "web-arena")
        ids.append(added.sample_ids[0])
    sides = [(ids[0], results[0][0][0]["text"]), (ids[1], results[1][0][0]["text"])]
    random.shuffle(sides)
    return {"prompt": body.prompt, "left": {"sample_id": sides[0][0], "text": sides[0][1]},
            "right": {"sample_id": sides[1][0], "text": sides[1][1]}}


@router.post("/v1/arena/vote")
async def arena_vote(body: ArenaVoteRequest, request: Request):
    """Store the judgement as a comparison (source "web"); the answer reveals both models."""
    server = _server(request)
    if body.left_sample_id == body.right_sample_id:
        raise APIError(400, "left and right are the same sample", param="right_sample_id")

    def vote() -> dict[str, Any]:
        samples = human_store.samples
        with server.store.engine.connect() as conn:
            rows = dict(conn.execute(select(samples.c.id, samples.c.generator)
                                     .where(samples.c.id.in_([body.left_sample_id, body.right_sample_id]))).all())
        missing = [s for s in (body.left_sample_id, body.right_sample_id) if s not in rows]
        if missing:
            raise APIError(404, f"sample {missing[0][:16]} is not in the ratings store; get a pair from "
                                "/v1/arena/pair first", param="left_sample_id", code="not_found")
        choice = {"left": "a", "right": "b", "tie": "tie"}[body.choice]
        principal = getattr(request.state, "principal", None)
        rater = principal.id if principal is not None else "web"
        comparison = server.store.ratings.add_comparison(body.left_sample_id, body.right_sample_id, rater, choice,
                                                         "left", source="web")
        return {"id": comparison, "left_model": rows[body.left_sample_id],
                "right_model": rows[body.right_sample_id]}

    return await asyncio.to_thread(vote)
