"""The server: :func:`create_app` builds the FastAPI app for a :class:`ServeConfig`.

:class:`Server` holds what lives as long as the process: the model registry and one batch scheduler per loaded
GPT, the store (migrated on start), the signer thread, metrics, API-key and session state. Requests reach it as
``request.app.state.server``. One ASGI middleware sits in front of everything: it refuses bodies over
``max_body`` bytes with 413 before the app reads them, and counts every response for ``/metrics`` and the
``requests`` table (written in batches once a second by a background thread, so logging costs no request a
database write).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request

from genchain.errors import GenchainError
from genchain.fileio import atomic_write_text, sha256_file
from genchain.serve import errors
from genchain.serve.auth import SESSION_COOKIE, KeyCache, Principal, RateLimiter, Sessions, hash_key
from genchain.serve.batching import BatchScheduler, GenerationRequest, QueueFull
from genchain.serve.errors import APIError
from genchain.serve.files import ArtefactFiles, new_id
from genchain.serve.metrics import Metrics
from genchain.serve.registry import ModelEntry, Registry, UnknownModel, UnsupportedModel
from genchain.serve.signing import Signer, SignJob
from genchain.serve.store import Store, utc_now

log = logging.getLogger("genchain.serve")
WEB_DIR = Path(__file__).with_name("web")


@dataclass
class ServeConfig:
    """What ``genchain serve`` was asked for (its flags, one field each)."""

    runs_dir: Path
    db: str | None = None  # path or URL; default $GENCHAIN_HOME/serve.db
    artefacts_dir: Path | None = None  # default $GENCHAIN_HOME/artefacts
    auth: bool = True
    max_batch: int = 32
    queue: int = 256
    batching: bool = True
    sign: bool = True
    watermark: bool = True
    safety: bool = True
    key: str = "default"  # the signing identity, whose key also watermarks
    ledger: str | None = None
    max_body: int = 4 * 2**20
    max_tokens: int = 1024  # most tokens per choice
    chat_max_tokens: int = 256  # default max_tokens of a chat request (OpenAI: unlimited)
    session_rate: str = "600/min"
    device: str = "auto"
    dtype: str = "auto"
    web_dir: Path = field(default_factory=lambda: WEB_DIR)
    home: Path | None = None  # identities, default ledger, store and artefacts; default $GENCHAIN_HOME


class Server:
    """Process-wide state (see the module docstring)."""

    def __init__(self, config: ServeConfig):
        from genchain.provenance.keys import genchain_home

        self.config = config
        # pinned: identities and the default ledger do not move while we run
        self.home = Path(config.home) if config.home else genchain_home()
        self.ledger_url = config.ledger or str(self.home / "ledger.db")
        self.registry = Registry(config.runs_dir, config.device, config.dtype)
        self.store = Store(config.db if config.db is not None else self.home / "serve.db")
        self.files = ArtefactFiles(config.artefacts_dir or self.home / "artefacts")
        self.metrics = Metrics()
        self.limiter = RateLimiter()
        self.sessions = Sessions()
        self.keys = KeyCache()
        self.signer = Signer(self.store, config.key, self.ledger_url, self.home) if config.sign else None
        self.safety = None
        if config.safety:
            from genchain.provenance.safety import SafetyFilter

            self.safety = SafetyFilter(home=self.home)
        self.schedulers: dict[str, tuple[BatchScheduler, Any, Any]] = {}
        self._lock = threading.Lock()
        self._log_rows: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self._closing = threading.Event()
        self._logger = threading.Thread(target=self._flush_logs, name="genchain-request-log", daemon=True)
        self._logger.start()

    # ------------------------------------------------------------------------------------------------ models
    def model(self, name: str, families: tuple[str, ...]) -> ModelEntry:
        try:
            return self.registry.get(name, families)
        except UnknownModel as err:
            raise APIError(404, str(err), param="model", code="model_not_found") from None
        except UnsupportedModel as err:
            raise APIError(400, str(err), param="model") from None

    def load_model(self, entry: ModelEntry) -> Any:
        loaded = self.registry.load(entry)
        if entry.family == "text-vae" and self.config.watermark and getattr(loaded, "watermark", None) is None:
            loaded.watermark = self._watermark(entry)[0]
        return loaded

    def scheduler_for(self, entry: ModelEntry) -> tuple[BatchScheduler, Any, Any]:
        """The model's scheduler, generator and watermark, made on first use (called in a worker thread)."""
        with self._lock:
            if entry.name not in self.schedulers:
                generator = self.registry.load(entry)
                scheduler = BatchScheduler(generator, self.config.max_batch, self.config.queue,
                                           batching=self.config.batching,
                                           on_step=self.metrics.step_hook(entry.name))
                self.schedulers[entry.name] = (scheduler, generator, self._watermark(entry)[0])
            return self.schedulers[entry.name]

    def submit(self, scheduler: BatchScheduler, request: GenerationRequest) -> None:
        try:
            scheduler.submit(request)
        except QueueFull as err:
            raise APIError(429, str(err), code="queue_full", retry_after=err.retry_after) from None
        except ValueError as err:
            raise APIError(400, str(err), param="n") from None

    def _watermark(self, entry: ModelEntry) -> tuple[Any, dict[str, Any] | None]:
        """The text watermark of the signing identity and the manifest field it produces for this run."""
        if not self.config.watermark:
            return None, None
        from genchain import rundir
        from genchain.provenance.keys import ensure_identity
        from genchain.provenance.watermark_text import TextWatermark, text_watermark_key

        watermark = TextWatermark(text_watermark_key(ensure_identity(self.config.key, self.home)[0]))
        tokenizer = entry.run_dir / rundir.TOKENIZER
        return watermark, watermark.manifest_field(sha256_file(tokenizer) if tokenizer.is_file() else None)

    def genchain_field(self, entry: ModelEntry, artefact_ids: list[str]) -> dict[str, Any]:
        return {"artefact_ids": artefact_ids, "watermark": self._watermark(entry)[1]}

    # ------------------------------------------------------------------------------------------------ provenance
    def check_prompt(self, prompt: str) -> None:
        if self.safety is None:
            return
        from genchain.provenance.safety import SafetyRefusal

        try:
            self.safety.check_prompt(prompt)
        except SafetyRefusal as err:
            raise APIError(400, str(err), param="prompt", code=f"content_filter:{err.category}") from None

    async def record_texts(self, job: Any, texts: list[str]) -> list[str]:
        """Write each text as an artefact, register it, queue its signing; returns the ids."""
        watermark = self._watermark(job.entry)[1]
        params = {"max_tokens": job.max_tokens, "temperature": job.temperature, "top_p": job.top_p,
                  "stop": list(job.stop), "n": job.n, "model": job.entry.name}

        def write() -> list[str]:
            rows, jobs = [], []
            for text in texts:
                artefact_id = new_id()
                path = self.files.new_path(artefact_id, ".txt")
                atomic_write_text(path, text)
                rows.append({"id": artefact_id, "kind": "text", "model": job.entry.name,
                             "path": self.files.relative(path), "sha256": sha256_file(path)})
                jobs.append(SignJob(artefact_id, path, "text", job.entry.run_dir, params, job.seed, job.prompt,
                                    watermark))
            self.store.add_artefacts(rows)
            if self.signer is not None:
                for sign_job in jobs:
                    self.signer.submit(sign_job)
            return [row["id"] for row in rows]

        return await asyncio.to_thread(write)

    # ------------------------------------------------------------------------------------------------ auth
    def authenticate(self, request: Request) -> Principal:
        """The caller, or 401; then the caller's rate limit, or 429."""
        principal = self._principal(request)
        rate = principal.rate
        if rate is not None:
            wait = self.limiter.acquire(principal.id, rate)
            if wait > 0:
                raise APIError(429, f"rate limit of {rate} reached; retry in {wait:.1f} s", code="rate_limited",
                               retry_after=wait)
        request.state.principal = principal
        return principal

    def _principal(self, request: Request) -> Principal:
        if not self.config.auth:
            return Principal("anonymous", "anonymous")
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            digest = hash_key(header[7:].strip())
            hit, principal = self.keys.get(digest)
            if not hit:
                row = self.store.key_by_hash(digest)
                principal = (Principal(row["id"], "key", row["rate"])
                             if row is not None and row["revoked_at"] is None else None)
                self.keys.put(digest, principal)
            if principal is None:
                raise APIError(401, "invalid or revoked API key; make one with `genchain apikey new --name NAME`",
                               code="invalid_api_key")
            return principal
        token = request.cookies.get(SESSION_COOKIE)
        if self.sessions.valid(token):
            return Principal("session-" + token[:8], "session", self.config.session_rate)
        raise APIError(401, "missing credentials: send `Authorization: Bearer <key>` (make a key with `genchain "
                            "apikey new --name NAME`), or open the web page at / for a session",
                       code="missing_api_key")

    # ------------------------------------------------------------------------------------------------ logging
    def log_request(self, row: dict[str, Any]) -> None:
        with self._log_lock:
            self._log_rows.append(row)

    def _flush_logs(self) -> None:
        while not self._closing.wait(1.0):
            self.flush_request_log()
        self.flush_request_log()

    def flush_request_log(self) -> None:
        with self._log_lock:
            rows, self._log_rows = self._log_rows, []
        try:
            self.store.log_requests(rows)
        except Exception as err:  # the log is best effort; the requests themselves were answered
            log.error("could not write %d request log rows: %s", len(rows), err)

    def close(self) -> None:
        for scheduler, _, _ in self.schedulers.values():
            scheduler.close()
        if self.signer is not None:
            self.signer.close()
        self._closing.set()
        self._logger.join(timeout=10)
        self.store.close()


class Middleware:
    """Body size limit (413) and per-response accounting; pure ASGI so streamed responses pass untouched."""

    def __init__(self, app: Any, server: Server):
        self.app = app
        self.server = server

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.server.config.max_body
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _reply(send, 413, f"request body over {limit} bytes; send less")
            return
        body, more = [], True
        size = 0
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body.append(message.get("body", b""))
            size += len(body[-1])
            more = message.get("more_body", False)
            if size > limit:
                await _reply(send, 413, f"request body over {limit} bytes; send less")
                return
        data = b"".join(body)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        started = time.perf_counter()
        status = [500]
        state = scope.setdefault("state", {})

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self._account(scope, state, status[0], time.perf_counter() - started)

        await self.app(scope, replay, watch)

    def _account(self, scope: dict, state: dict, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        metrics = self.server.metrics
        metrics.requests.labels(route, str(status)).inc()
        metrics.latency.labels(route).observe(seconds)
        if not route.startswith("/v1/"):
            return
        extra = state.get("log") or {}
        principal = state.get("principal")
        self.server.log_request({"key_id": principal.id if principal else None, "route": route,
                                 "model": extra.get("model"), "status": status, "latency_ms": seconds * 1000,
                                 "prompt_tokens": extra.get("prompt_tokens"),
                                 "completion_tokens": extra.get("completion_tokens"), "created_at": utc_now()})


async def _reply(send: Any, status: int, message: str) -> None:
    import json

    body = json.dumps(APIError(status, message).body()).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(config: ServeConfig) -> FastAPI:
    """The app for ``config``; the store is opened (and migrated) and the models listed here, models load later."""
    from genchain import __version__
    from genchain.serve import routes, routes_text

    try:
        server = Server(config)
    except GenchainError:
        raise

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await asyncio.to_thread(server.close)

    app = FastAPI(title="genchain", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible text generation, images, provenance and feedback for genchain runs.")
    app.state.server = server
    errors.install(app)

    def authenticated(request: Request) -> Principal:
        return server.authenticate(request)

    app.include_router(routes_text.router, dependencies=[Depends(authenticated)])
    app.include_router(routes.api, dependencies=[Depends(authenticated)])
    app.include_router(routes.public)
    routes.mount_web(app, config.web_dir)
    app.add_middleware(Middleware, server=server)
    return app
