"""``genchain serve`` and ``genchain apikey new|list|revoke``: the API server and its keys.

The functions parse nothing and decide little: they build a :class:`genchain.serve.app.ServeConfig` and run it
with uvicorn, or call :mod:`genchain.serve.store` and :mod:`genchain.serve.auth`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from genchain.errors import InputError


def cmd_serve(args: argparse.Namespace) -> None:
    """Serve every run under --runs: an OpenAI-compatible API, images, provenance, feedback, and a web page.

    Text runs (GPT, text-vae) answer /v1/completions and /v1/chat/completions (streaming, n, stop, seed),
    GAN/VAE runs /v1/images/generations; every result is written under --artefacts, watermarked and signed (a
    manifest and a ledger entry; --no-sign turns signing off). Concurrent requests to one GPT are decoded
    together (continuous batching, up to --max-batch rows; --no-batching for one at a time); when --queue rows
    wait already, new requests get 429 with Retry-After. /v1 needs an API key (`genchain apikey new`) unless
    --no-auth; the page at / gets a session cookie. API docs at /docs, Prometheus metrics at /metrics.

    examples:
      genchain serve --runs runs/
      genchain serve --runs runs/ --port 8080 --db postgresql://me@dbhost/genchain
      genchain serve --runs runs/ --no-auth --no-sign        # a local experiment
      curl -H "Authorization: Bearer $KEY" localhost:8000/v1/models
    """
    import uvicorn

    from genchain.serve.app import ServeConfig, create_app

    config = ServeConfig(runs_dir=Path(args.runs), db=args.db, artefacts_dir=Path(args.artefacts) if args.artefacts
                         else None, auth=args.auth, max_batch=args.max_batch, queue=args.queue,
                         batching=args.batching, sign=args.sign, watermark=args.watermark, safety=args.safety,
                         key=args.key, ledger=args.ledger, max_body=args.max_body, device=args.device,
                         dtype=args.dtype)
    if args.max_batch < 1 or args.queue < 1:
        raise InputError("--max-batch and --queue must be at least 1")
    app = create_app(config)
    server = app.state.server
    names = ", ".join(f"{n} ({e.family})" for n, e in server.registry.entries.items()) or "none"
    print(f"serving {len(server.registry.entries)} model(s) from {args.runs}: {names}")
    for name, why in server.registry.skipped.items():
        print(f"  not served: {name}: {why}")
    print(f"store {server.store.name}; artefacts in {server.files.root}; auth {'on' if args.auth else 'OFF'}")
    print(f"open http://{args.host}:{args.port}/  (API docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5)


def cmd_apikey_new(args: argparse.Namespace) -> None:
    """Make an API key and print it once; only its SHA-256 is stored, so keep it now.

    examples:
      genchain apikey new --name alice
      genchain apikey new --name batch-job --rate 600/min --db postgresql://me@dbhost/genchain
    """
    from genchain.serve.auth import new_key, parse_rate

    parse_rate(args.rate)
    if not args.name.strip() or len(args.name) > 200:
        raise InputError("--name must be 1 to 200 characters")
    store = _store(args)
    try:
        key, key_id, digest = new_key()
        store.add_key(key_id, args.name, digest, args.rate)
    finally:
        store.close()
    print(key)
    print(f"key id {key_id} for {args.name!r}, {args.rate}; this is the only time the key is shown", flush=True)


def cmd_apikey_list(args: argparse.Namespace) -> None:
    """List API keys: id, name, rate, created, revoked (never the keys themselves).

    examples:
      genchain apikey list
    """
    store = _store(args)
    try:
        keys = store.list_keys()
    finally:
        store.close()
    for row in keys:
        revoked = f"revoked {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "active"
        print(f"{row['id']}  {row['name']:<24} {row['rate']:<10} {row['created_at']:%Y-%m-%d %H:%M}  {revoked}")
    print(f"{len(keys)} key(s)")


def cmd_apikey_revoke(args: argparse.Namespace) -> None:
    """Revoke an API key by its id (from `genchain apikey list`); servers refuse it within seconds.

    examples:
      genchain apikey revoke 1a2b3c4d
    """
    store = _store(args)
    try:
        if not store.revoke_key(args.key_id):
            raise InputError(f"no active key with id {args.key_id!r}; `genchain apikey list` shows the ids")
    finally:
        store.close()
    print(f"revoked {args.key_id}")


def _store(args: argparse.Namespace):
    from genchain.provenance.keys import genchain_home
    from genchain.serve.store import Store

    return Store(args.db if args.db else genchain_home() / "serve.db")


def add_serve_commands(groups: argparse._SubParsersAction, command: Callable) -> None:
    """Register ``genchain serve`` and ``genchain apikey <new|list|revoke>``."""
    db_help = "store: a path, sqlite:///PATH or postgresql://... (default $GENCHAIN_HOME/serve.db)"
    p = command(groups, "serve", cmd_serve, "the API server and web page")
    p.add_argument("--runs", default="runs", metavar="RUNS_DIR", help="folder of run dirs to serve (default runs)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--db", metavar="URL", help=db_help)
    p.add_argument("--artefacts", metavar="DIR", help="where results are written (default $GENCHAIN_HOME/artefacts)")
    p.add_argument("--no-auth", dest="auth", action="store_false", help="no API keys needed (local experiments)")
    p.add_argument("--max-batch", type=int, default=32, help="most sequences decoded together per model (32)")
    p.add_argument("--queue", type=int, default=256, help="most sequences waiting before 429 (256)")
    p.add_argument("--no-batching", dest="batching", action="store_false", help="decode one request at a time")
    p.add_argument("--no-sign", dest="sign", action="store_false", help="write no manifests or ledger entries")
    p.add_argument("--no-watermark", dest="watermark", action="store_false", help="do not watermark outputs")
    p.add_argument("--no-safety", dest="safety", action="store_false", help="no prompt/output safety filter")
    p.add_argument("--key", default="default", metavar="NAME", help="signing identity (default: default)")
    p.add_argument("--ledger", metavar="URL", help="ledger path or URL (default $GENCHAIN_HOME/ledger.db)")
    p.add_argument("--max-body", type=int, default=4 * 2**20, metavar="BYTES", help="request size limit (4 MiB)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", help="auto, fp32, bf16")
    p.add_argument("--log-level", default="warning", help="uvicorn's log level (default warning)")

    apikey = groups.add_parser("apikey", help="API keys of the server")
    sub = apikey.add_subparsers(dest="cmd", metavar="ACTION", required=True)
    p = command(sub, "new", cmd_apikey_new, "make a key (printed once)")
    p.add_argument("--name", required=True)
    p.add_argument("--rate", default="60/min", help="requests per second/min/hour (default 60/min)")
    p.add_argument("--db", metavar="URL", help=db_help)
    p = command(sub, "list", cmd_apikey_list, "list keys")
    p.add_argument("--db", metavar="URL", help=db_help)
    p = command(sub, "revoke", cmd_apikey_revoke, "revoke a key")
    p.add_argument("key_id", metavar="KEY_ID")
    p.add_argument("--db", metavar="URL", help=db_help)
