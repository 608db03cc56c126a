"""Every endpoint but the text ones: models, images, artefacts, verify, feedback, leaderboard, health, metrics,
and the web page.

``api`` routes need credentials (the app adds the dependency); ``public`` ones do not: ``/healthz``,
``/metrics`` and the page itself, which hands out the session cookie its own API calls then carry.
"""

from __future__ import annotations

import asyncio
import base64
import re
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from genchain.errors import GenchainError
from genchain.serve.auth import SESSION_COOKIE
from genchain.serve.errors import APIError
from genchain.serve.files import new_id, valid_id
from genchain.serve.registry import IMAGE_FAMILIES
from genchain.serve.schemas import FeedbackRequest, ImageRequest
from genchain.serve.signing import SignJob

api = APIRouter()
public = APIRouter()
MEDIA = {".txt": "text/plain; charset=utf-8", ".png": "image/png"}


def _server(request: Request) -> Any:
    return request.app.state.server


@api.get("/v1/models")
def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [e.describe() for e in _server(request).registry.entries.values()]}


# ---------------------------------------------------------------------------------------------------- images
@api.post("/v1/images/generations")
async def images(body: ImageRequest, request: Request) -> dict[str, Any]:
    """Samples of a GAN or VAE run; ``prompt`` may name a class of a conditional model."""
    server = _server(request)
    entry = server.model(body.model, IMAGE_FAMILIES)
    seed = body.seed if body.seed is not None else int(time.time_ns() % 2**31)
    rows = await asyncio.to_thread(_make_images, server, entry, body, seed)
    request.state.log = {"model": entry.name}
    data = []
    for row in rows:
        item: dict[str, Any] = {"genchain": {"artefact_id": row["id"]}, "revised_prompt": None}
        if body.response_format == "url":
            item["url"] = f"/v1/artefacts/{row['id']}/content"
        else:
            item["b64_json"] = base64.b64encode(server.files.resolve(row["path"]).read_bytes()).decode("ascii")
        data.append(item)
    return {"created": int(time.time()), "data": data}


def _make_images(server: Any, entry: Any, body: ImageRequest, seed: int) -> list[dict[str, Any]]:
    import torch

    from genchain.generate.image import _decode, _labels, resolve_label, save_png
    from genchain.provenance.keys import ensure_identity
    from genchain.provenance.watermark_image import image_watermark_key, watermark_png_file

    generator = server.load_model(entry)
    try:
        label = resolve_label(generator, body.prompt or None)
    except GenchainError as err:
        raise APIError(400, str(err), param="prompt") from None
    z = generator.sample_latents(body.n, torch.Generator().manual_seed(seed))
    pictures = _decode(generator, z, _labels(generator, body.n, label))
    key = image_watermark_key(ensure_identity(server.config.key, server.home)[0]) if server.config.watermark else None
    rows, jobs = [], []
    for picture in pictures:
        artefact_id = new_id()
        path = save_png(server.files.new_path(artefact_id, ".png"), picture)
        mark = watermark_png_file(path, key) if key else {"applied": False, "reason": "turned off with --no-watermark"}
        rows.append({"id": artefact_id, "kind": "image", "model": entry.name, "path": server.files.relative(path),
                     "sha256": _sha(path)})
        jobs.append(SignJob(artefact_id, path, "image", entry.run_dir, {"label": body.prompt, "n": body.n,
                                                                        "model": entry.name}, seed, None, mark))
    server.store.add_artefacts(rows)
    if server.signer is not None:
        for job in jobs:
            server.signer.submit(job)
    return rows


def _sha(path: Path) -> str:
    from genchain.fileio import sha256_file

    return sha256_file(path)


# ---------------------------------------------------------------------------------------------------- artefacts
def _artefact(server: Any, artefact_id: str) -> dict[str, Any]:
    record = server.store.artefact(artefact_id) if valid_id(artefact_id) else None
    if record is None:
        raise APIError(404, f"no artefact {artefact_id[:40]!r}; ids come from generation responses",
                       param="artefact_id", code="not_found")
    return record


@api.get("/v1/artefacts/{artefact_id}")
def get_artefact(artefact_id: str, request: Request) -> dict[str, Any]:
    record = _artefact(_server(request), artefact_id)
    return {"id": record["id"], "kind": record["kind"], "model": record["model"],
            "created": int(record["created_at"].timestamp()), "sha256": record["sha256"],
            "manifest": record["manifest"], "content_url": f"/v1/artefacts/{record['id']}/content"}


@api.get("/v1/artefacts/{artefact_id}/content")
def get_content(artefact_id: str, request: Request) -> FileResponse:
    server = _server(request)
    record = _artefact(server, artefact_id)
    try:
        path = server.files.resolve(record["path"])
    except GenchainError as err:
        raise APIError(404, str(err)) from None
    if not path.is_file():
        raise APIError(404, f"the file of artefact {artefact_id} is gone from the artefacts directory")
    return FileResponse(path, media_type=MEDIA.get(path.suffix, "application/octet-stream"))


@api.get("/v1/artefacts/{artefact_id}/manifest")
def get_manifest_file(artefact_id: str, request: Request) -> FileResponse:
    """The signed sidecar exactly as written (its bytes are what the signature covers), for `genchain verify`."""
    from genchain.provenance.manifest import sidecar_path

    server = _server(request)
    record = _artefact(server, artefact_id)
    try:
        path = sidecar_path(server.files.resolve(record["path"]))
        server.files.resolve(server.files.relative(path))
    except (GenchainError, ValueError) as err:
        raise APIError(404, str(err)) from None
    if not path.is_file():
        raise APIError(404, f"artefact {artefact_id} is not signed (yet, or the server runs with --no-sign)")
    return FileResponse(path, media_type="application/json")


@api.post("/v1/verify")
async def verify(request: Request, file: Annotated[UploadFile, File()],
                 manifest: Annotated[UploadFile | None, File()] = None):
    """Every provenance check on an uploaded file (and optionally its sidecar manifest)."""
    server = _server(request)
    suffix = Path(file.filename or "").suffix.lower()
    suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin"
    content = await file.read()
    sidecar = await manifest.read() if manifest is not None else None

    def run() -> dict[str, Any]:
        from genchain.provenance.verify import OK, verify_artefact

        with tempfile.TemporaryDirectory(prefix="genchain-verify-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(content)
            manifest_path = None
            if sidecar is not None:
                manifest_path = Path(tmp) / "upload.manifest.json"
                manifest_path.write_bytes(sidecar)
            report = verify_artefact(path, manifest=manifest_path, ledger=server.ledger_url)
        return {"ok": report.ok, "checks": [{"name": c.name, "ok": c.status == OK, "status": c.status,
                                             "detail": c.detail} for c in report.checks]}

    return await asyncio.to_thread(run)


# ---------------------------------------------------------------------------------------------------- feedback
@api.post("/v1/feedback")
def feedback(body: FeedbackRequest, request: Request) -> dict[str, Any]:
    if body.thumbs is None and body.rating is None and not body.comment:
        raise APIError(400, "send at least one of thumbs, rating and comment", param="thumbs")
    server = _server(request)
    principal = getattr(request.state, "principal", None)
    row = (server.store.add_feedback(body.artefact_id, body.thumbs, body.rating, body.comment,
                                     principal.id if principal else None)
           if valid_id(body.artefact_id) else None)
    if row is None:
        raise APIError(404, f"no artefact {body.artefact_id[:40]!r} to give feedback on", param="artefact_id",
                       code="not_found")
    return {"id": row}


@api.get("/v1/leaderboard")
def leaderboard(request: Request) -> dict[str, Any]:
    """Bradley-Terry scores from every stored comparison (arena votes and terminal ratings alike)."""
    from genchain.eval.bradley_terry import rank

    ratings = _server(request).store.ratings
    comparisons = ratings.comparisons()
    outcome = {"a": 1.0, "b": 0.0, "tie": 0.5}
    results = [(c.generator_a, c.generator_b, outcome[c.choice]) for c in comparisons]
    names = sorted({n for a, b, _ in results for n in (a, b)})
    if not names:
        return {"generators": [], "comparisons": 0}
    board = rank(names, results, rounds=200, seed=0)
    return {"comparisons": board.comparisons,
            "generators": [{"name": r.name, "score": r.score, "low": r.score_ci[0] if r.score_ci else None,
                            "high": r.score_ci[1] if r.score_ci else None, "win_probability": r.win_prob,
                            "n": r.comparisons, "wins": r.wins, "losses": r.losses, "ties": r.ties}
                           for r in board.ratings]}


# ---------------------------------------------------------------------------------------------------- public
@public.get("/healthz")
def healthz(request: Request) -> dict[str, Any]:
    return {"status": "ok", "models": len(_server(request).registry.entries)}


@public.get("/metrics")
def metrics(request: Request) -> Response:
    server = _server(request)
    depths = {name: s.queue_depth for name, (s, _, _) in server.schedulers.items()}
    return Response(server.metrics.render(depths), media_type=CONTENT_TYPE_LATEST)


def mount_web(app: FastAPI, web_dir: Path) -> None:
    """``/`` and ``/arena`` from the web directory, each handing out a session cookie; 503 while it is absent."""
    if web_dir.is_dir():
        app.mount("/static", StaticFiles(directory=web_dir), name="static")

    def page(name: str):
        def serve(request: Request) -> Response:
            path = web_dir / name
            if not path.is_file():
                return JSONResponse(APIError(503, f"the web page is not installed ({path} is missing); the API "
                                                  "under /v1 works without it").body(), status_code=503)
            server = _server(request)
            response = FileResponse(path, media_type="text/html; charset=utf-8")
            token = request.cookies.get(SESSION_COOKIE)
            if not server.sessions.valid(token):
                response.set_cookie(SESSION_COOKIE, server.sessions.new(), httponly=True, samesite="strict")
            return response

        return serve

    app.add_api_route("/", page("index.html"), methods=["GET"], include_in_schema=False)
    app.add_api_route("/arena", page("arena.html"), methods=["GET"], include_in_schema=False)
