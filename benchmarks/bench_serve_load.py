"""Serving under load (issue 8): continuous batching against one-request-at-a-time, a kill -9, and fuzzing.

Figure 1: C concurrent streaming clients (default 64) for S seconds per side (default 120) against a small GPT
served by `genchain serve`, once with batching and once with --no-batching (the named baseline, measured in the
same run). Each client loops: stream a completion, then post feedback on its artefact. Reported: total tokens/s
and the ratio (a char GPT has no end-of-text token, so
every completion runs to max_tokens and counts that many), p50/p99 time to first content, failed requests,
and feedback rows acknowledged vs found in the DB.
Figure 2: the batching server is killed with SIGKILL mid-load and restarted on the same SQLite file:
PRAGMA integrity_check, and every acknowledged feedback id must still be there.
Figure 3: schemathesis against /openapi.json: count of 5xx responses.

    flock /tmp/bench/bench.lock .venv/bin/python benchmarks/bench_serve_load.py [--seconds 120] [--clients 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from common import GENCHAIN, WORK, prepare_data, write_results

MODEL = ["n_layer=4", "n_head=4", "n_embd=128", "block_size=128", "batch_size=16", "max_iters=60",
         "eval_interval=30", "eval_iters=2", "log_interval=10", "tensorboard=false"]


def small_gpt() -> Path:
    runs = WORK / "serve_runs"
    run = runs / "small"
    if not (run / "model.safetensors").is_file():
        subprocess.run(GENCHAIN + ["train", "gpt", "--data", str(prepare_data()), "--out", str(run), *MODEL],
                       check=True)
    return runs


def start(runs: Path, db: Path, home: Path, port: int, batching: bool) -> subprocess.Popen:
    cmd = GENCHAIN + ["serve", "--runs", str(runs), "--port", str(port), "--db", str(db), "--no-auth",
                      "--max-batch", "64", "--queue", "512"] + ([] if batching else ["--no-batching"])
    proc = subprocess.Popen(cmd, env={**os.environ, "GENCHAIN_HOME": str(home)}, stdout=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


async def client(url: str, until: float, stats: dict, max_tokens: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        while time.monotonic() < until:
            started = time.monotonic()
            first = None
            artefact = None
            try:
                async with http.stream("POST", "/v1/completions", json={
                        "model": "small", "prompt": "ROMEO:", "max_tokens": max_tokens, "stream": True}) as r:
                    if r.status_code != 200:
                        stats["failed"] += 1
                        continue
                    async for line in r.aiter_lines():
                        if not line.startswith("data: {"):
                            continue
                        chunk = json.loads(line[6:])
                        if chunk["choices"][0]["text"] and first is None:
                            first = time.monotonic() - started
                        if "genchain" in chunk:
                            artefact = chunk["genchain"]["artefact_ids"][0]
                if artefact is None:
                    stats["failed"] += 1
                    continue
                stats["tokens"] += max_tokens
                stats["ttft"].append(first if first is not None else time.monotonic() - started)
                response = await http.post("/v1/feedback", json={"artefact_id": artefact, "thumbs": "up"})
                if response.status_code == 200:
                    stats["feedback"].append(response.json()["id"])
                else:
                    stats["failed"] += 1
            except (httpx.HTTPError, asyncio.CancelledError):
                stats["failed"] += 1
                if stats.get("expect_death"):
                    return


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def load(url: str, clients: int, seconds: float, max_tokens: int, stats: dict) -> float:
    until = time.monotonic() + seconds
    started = time.monotonic()
    await asyncio.gather(*(client(url, until, stats, max_tokens) for _ in range(clients)))
    return time.monotonic() - started


def side(runs: Path, tmp: Path, batching: bool, args: argparse.Namespace, port: int) -> dict:
    db = tmp / f"{'on' if batching else 'off'}.db"
    proc = start(runs, db, tmp / "home", port, batching)
    stats = {"tokens": 0, "failed": 0, "ttft": [], "feedback": []}
    try:
        elapsed = asyncio.run(load(f"http://127.0.0.1:{port}", args.clients, args.seconds, args.max_tokens, stats))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    with sqlite3.connect(db) as conn:
        rows = {r[0] for r in conn.execute("SELECT id FROM feedback")}
    result = {"tokens_per_s": stats["tokens"] / elapsed, "completions": len(stats["ttft"]),
              "failed_requests": stats["failed"], "ttft_p50_s": percentile(stats["ttft"], 0.5),
              "ttft_p99_s": percentile(stats["ttft"], 0.99), "feedback_acknowledged": len(stats["feedback"]),
              "feedback_lost": len(set(stats["feedback"]) - rows), "seconds": elapsed}
    print(f"batching {'on ' if batching else 'off'}: {result['tokens_per_s']:.0f} tokens/s, "
          f"ttft p50 {result['ttft_p50_s']:.2f}s p99 {result['ttft_p99_s']:.2f}s, {result['failed_requests']} failed, "
          f"{result['feedback_lost']}/{result['feedback_acknowledged']} feedback lost", flush=True)
    return result


def fault(runs: Path, tmp: Path, args: argparse.Namespace, port: int) -> dict:
    db = tmp / "fault.db"
    proc = start(runs, db, tmp / "home", port, True)
    stats = {"tokens": 0, "failed": 0, "ttft": [], "feedback": [], "expect_death": True}

    async def run() -> None:
        task = asyncio.ensure_future(load(f"http://127.0.0.1:{port}", args.clients, 3600, args.max_tokens, stats))
        await asyncio.sleep(args.seconds / 4)
        proc.send_signal(signal.SIGKILL)
        await asyncio.sleep(1)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(run())
    proc.wait()
    proc = start(runs, db, tmp / "home", port, True)  # restart: migrations and WAL recovery on the same file
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    with sqlite3.connect(db) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        rows = {r[0] for r in conn.execute("SELECT id FROM feedback")}
    result = {"integrity_check": integrity, "feedback_acknowledged": len(stats["feedback"]),
              "feedback_lost": len(set(stats["feedback"]) - rows)}
    print(f"kill -9: integrity {integrity}, {result['feedback_lost']}/{result['feedback_acknowledged']} "
          "acknowledged feedback rows lost", flush=True)
    return result


def fuzz(runs: Path, tmp: Path, port: int, examples: int) -> dict:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    proc = start(runs, tmp / "fuzz.db", tmp / "home", port, True)
    url = f"http://127.0.0.1:{port}"
    calls, errors = [], []
    try:
        for operation in schemathesis.openapi.from_url(url + "/openapi.json").get_all_operations():
            op = operation.ok()

            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(case=op.as_strategy())
            def run(case):
                if isinstance(case.body, dict) and isinstance(case.body.get("max_tokens"), int):
                    case.body["max_tokens"] = max(1, min(abs(case.body["max_tokens"]), 8))
                response = case.call(base_url=url)
                calls.append(response.status_code)
                if response.status_code >= 500:
                    errors.append(f"{case.method} {case.path}: {response.status_code}")

            run()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    print(f"schemathesis: {len(calls)} requests, {len(errors)} server errors", flush=True)
    return {"requests": len(calls), "server_errors": len(errors), "examples": errors[:10]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--fuzz-examples", type=int, default=20)
    args = parser.parse_args()
    runs = small_gpt()
    tmp = WORK / "serve_load"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    port = 8700 + os.getpid() % 200
    on = side(runs, tmp, True, args, port)
    off = side(runs, tmp, False, args, port + 1)
    ratio = on["tokens_per_s"] / off["tokens_per_s"] if off["tokens_per_s"] else float("inf")
    print(f"batching on / off: {ratio:.1f}x tokens/s (target >= 6x)")
    killed = fault(runs, tmp, args, port + 2)
    fuzzed = fuzz(runs, tmp, port + 3, args.fuzz_examples)
    write_results("serve_load", {
        "command": " ".join([sys.executable, *sys.argv]),
        "model": {"overrides": MODEL, "data": "tinyshakespeare (char)"},
        "clients": args.clients, "seconds_per_side": args.seconds, "max_tokens": args.max_tokens,
        "batching_on": on, "batching_off (baseline)": off, "tokens_per_s_ratio": ratio,
        "kill9": killed, "schemathesis": fuzzed})


if __name__ == "__main__":
    main()
