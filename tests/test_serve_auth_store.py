"""Auth, rate limits, back-pressure, path traversal, the store (SQLite and PostgreSQL), migrations, restarts."""

from __future__ import annotations

import sqlite3
import threading
import time

import httpx
import pytest
from sqlalchemy import inspect

from genchain.eval.human_store import RatingStore
from genchain.serve.app import ServeConfig
from genchain.serve.auth import hash_key, new_key, parse_rate
from genchain.serve.files import ArtefactFiles
from genchain.serve.store import Store, current_revision
from serve_harness import LiveServer, make_runs


def config(tmp_path, tiny_run, **kw) -> ServeConfig:
    runs = make_runs(tmp_path, tiny_run)
    base = dict(runs_dir=runs, db=str(tmp_path / "serve.db"), artefacts_dir=tmp_path / "artefacts", dtype="fp32",
                home=tmp_path / "home", sign=False)
    return ServeConfig(**{**base, **kw})


def add_key(db: str, rate: str = "60/min") -> tuple[str, str]:
    store = Store(db)
    key, key_id, digest = new_key()
    store.add_key(key_id, "test", digest, rate)
    store.close()
    return key, key_id


def test_keys_are_required_hashed_at_rest_and_revocable(tmp_path, tiny_run):
    cfg = config(tmp_path, tiny_run)
    key, key_id = add_key(cfg.db)
    with LiveServer(cfg) as live:
        live.server.keys.ttl = 0  # see revocations at once
        with live.client() as anonymous:
            response = anonymous.get("/v1/models")
            assert response.status_code == 401 and response.json()["error"]["code"] == "missing_api_key"
            assert anonymous.get("/healthz").status_code == 200  # public
        with live.client("gc-wrong") as wrong:
            assert wrong.get("/v1/models").status_code == 401
        with live.client(key) as client:
            assert client.get("/v1/models").status_code == 200
            store = live.server.store
            assert store.key_by_hash(hash_key(key))["id"] == key_id
            assert store.revoke_key(key_id)
            assert client.get("/v1/models").status_code == 401
    raw = (tmp_path / "serve.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("serve.db-*"))
    assert key.encode() not in raw and hash_key(key).encode() in raw


def test_rate_limit_gives_429_with_retry_after(tmp_path, tiny_run):
    cfg = config(tmp_path, tiny_run)
    key, _ = add_key(cfg.db, rate="2/min")
    with LiveServer(cfg) as live, live.client(key) as client:
        assert [client.get("/v1/models").status_code for _ in range(2)] == [200, 200]
        limited = client.get("/v1/models")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["type"] == "rate_limit_error"


def test_rate_parsing():
    assert parse_rate("60/min") == (60, 60.0) and parse_rate("5/s") == (5, 1.0)
    with pytest.raises(Exception, match="COUNT/UNIT"):
        parse_rate("fast")


@pytest.mark.slow
def test_full_queue_answers_429(tmp_path, tiny_run):
    cfg = config(tmp_path, tiny_run, auth=False, max_batch=1, queue=1)
    with LiveServer(cfg) as live:
        results: list[httpx.Response] = []

        def long_call():
            with live.client() as c:
                results.append(c.post("/v1/completions", json={"model": "tiny", "prompt": "a", "max_tokens": 1000}))

        first = threading.Thread(target=long_call)
        first.start()
        deadline = time.monotonic() + 30
        while "tiny" not in live.server.schedulers or live.server.schedulers["tiny"][0].active_rows == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second = threading.Thread(target=long_call)  # waits in the queue (one row)
        second.start()
        while live.server.schedulers["tiny"][0].queue_depth == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with live.client() as c:
            full = c.post("/v1/completions", json={"model": "tiny", "prompt": "a", "max_tokens": 5})
        assert full.status_code == 429 and int(full.headers["retry-after"]) >= 1
        assert full.json()["error"]["code"] == "queue_full"
        first.join()
        second.join()
        assert [r.status_code for r in results] == [200, 200]


def test_no_path_leaves_the_artefacts_directory(tmp_path, tiny_run):
    files = ArtefactFiles(tmp_path / "art")
    for bad in ("../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(Exception, match="outside"):
            files.resolve(bad)
    with pytest.raises(Exception, match="invalid"):
        files.new_path("../../etc", ".txt")
    cfg = config(tmp_path, tiny_run, auth=False)
    (tmp_path / "secret.txt").write_text("secret")
    with LiveServer(cfg) as live, live.client() as client:
        live.server.store.add_artefacts([{"id": "f" * 32, "kind": "text", "model": "tiny",
                                          "path": "../secret.txt", "sha256": "0" * 64}])
        for path in ("/v1/artefacts/..%2F..%2Fsecret.txt/content", "/v1/artefacts/%2Fetc%2Fpasswd/content",
                     "/v1/artefacts/../../secret.txt/content", "/v1/artefacts/..%252Fsecret.txt",
                     "/v1/artefacts/" + "f" * 32 + "/content", "/v1/artefacts/" + "f" * 32 + "/manifest"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert b"secret" != response.content and b"root:" not in response.content


def test_feedback_survives_a_restart(tmp_path, tiny_run):
    cfg = config(tmp_path, tiny_run, auth=False)
    with LiveServer(cfg) as live, live.client() as client:
        artefact = client.post("/v1/completions", json={"model": "tiny", "prompt": "a", "max_tokens": 4}).json()
        artefact = artefact["genchain"]["artefact_ids"][0]
        ids = [client.post("/v1/feedback", json={"artefact_id": artefact, "rating": r}).json()["id"] for r in (1, 5)]
    with LiveServer(cfg) as live:
        rows = live.server.store.feedback_rows()
        assert [(r["id"], r["rating"]) for r in rows] == [(ids[0], 1), (ids[1], 5)]
        assert live.server.store.count_requests() >= 3  # the request log was flushed on shutdown
    with sqlite3.connect(tmp_path / "serve.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_alembic_creates_an_empty_database_and_upgrades_an_existing_ratings_store(tmp_path):
    store = Store(tmp_path / "new.db")
    assert current_revision(store.engine) == "0001"
    tables = set(inspect(store.engine).get_table_names())
    assert {"api_keys", "requests", "artefacts", "feedback", "samples", "comparisons", "alembic_version"} <= tables
    store.close()
    # a ratings store made from the terminal before the server existed: its data stays, our tables join it
    with RatingStore.open(tmp_path / "old.db") as ratings:
        ids = ratings.add_samples("base", [("p", "one"), ("p", "two")]).sample_ids
        ratings.add_comparison(ids[0], ids[1], "ana", "a", "left")
    store = Store(tmp_path / "old.db")
    assert current_revision(store.engine) == "0001"
    assert store.ratings.count_comparisons() == 1
    store.close()
    again = Store(tmp_path / "old.db")  # already at head: nothing to do, nothing lost
    assert again.ratings.count_comparisons() == 1
    again.close()


def test_store_on_postgresql(postgres_url):
    store = Store(postgres_url)
    try:
        assert current_revision(store.engine) == "0001"
        store.add_artefacts([{"id": "a" * 32, "kind": "text", "model": "m", "path": "aa/x.txt", "sha256": "0" * 64}])
        assert store.add_feedback("a" * 32, "up", 5, "ok", None) == 1
        assert store.add_feedback("b" * 32, "up", None, None, None) is None
        manifest = {"artefact": {"sha256": "1" * 64}}  # signing embedded C2PA: the file's hash changed
        store.set_manifest("a" * 32, manifest)
        assert store.artefact("a" * 32)["manifest"] == manifest
        assert store.artefact("a" * 32)["sha256"] == "1" * 64
        key, key_id, digest = new_key()
        store.add_key(key_id, "pg", digest, "1/s")
        assert store.key_by_hash(digest)["name"] == "pg" and store.revoke_key(key_id)
        ids = store.ratings.add_samples("g", [("p", "x"), ("p", "y")]).sample_ids
        store.ratings.add_comparison(ids[0], ids[1], "web", "tie", "left", source="web")
        assert store.ratings.count_comparisons() == 1
    finally:
        store.close()
    Store(postgres_url).close()  # a second start finds the schema at head
