"""The API against a real server on 127.0.0.1: OpenAI shapes, streaming, sampling options, batching, provenance."""

from __future__ import annotations

import base64
import io
import json
import threading

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from genchain.data.ingest import ingest
from genchain.data.sources import get_source
from genchain.serve.app import ServeConfig
from genchain.train.gan import train_gan
from serve_harness import LiveServer, make_runs


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan")
    get_source("digits", root / "raw")
    ingest([str(root / "raw")], root / "ds", kind="image", label_from="dirname")
    train_gan(root / "ds", root / "gan", overrides=["model=gan-tiny", "batch_size=8", "eval_iters=1", "max_iters=2",
                                                    "eval_interval=2", "log_interval=1", "tensorboard=false",
                                                    "grid_samples=8", "conditional=true"])
    return root / "gan"


@pytest.fixture(scope="module")
def live(tiny_run, gan_run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    runs = make_runs(tmp, tiny_run, gan_run)
    (runs / "tiny2").symlink_to(tiny_run.resolve(), target_is_directory=True)
    config = ServeConfig(runs_dir=runs, db=str(tmp / "serve.db"), artefacts_dir=tmp / "artefacts", auth=False,
                         dtype="fp32", max_batch=8, home=tmp / "home")
    with LiveServer(config) as server:
        yield server


@pytest.fixture
def client(live):
    with live.client() as c:
        yield c


def complete(client, **kw):
    body = {"model": "tiny", "prompt": "the cat", "max_tokens": 12, **kw}
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def sse(text: str) -> list:
    events = [line[len("data: "):] for line in text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_models_lists_every_run_with_its_family(client):
    data = client.get("/v1/models").json()
    assert data["object"] == "list"
    families = {m["id"]: m["genchain"]["family"] for m in data["data"]}
    assert families == {"tiny": "text", "tiny2": "text", "gan": "gan"}
    assert all(m["object"] == "model" and m["owned_by"] == "genchain" for m in data["data"])


def test_completion_has_openai_shape_n_choices_and_artefacts(client, live):
    data = complete(client, n=3, seed=1)
    assert data["object"] == "text_completion" and data["model"] == "tiny"
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert all(c["finish_reason"] in ("stop", "length") and isinstance(c["text"], str) for c in data["choices"])
    assert data["usage"]["prompt_tokens"] == len("the cat")
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
    ids = data["genchain"]["artefact_ids"]
    assert len(ids) == 3 and data["genchain"]["watermark"]["scheme"] == "kgw-text-v1"
    content = client.get(f"/v1/artefacts/{ids[1]}/content")
    assert content.text == data["choices"][1]["text"]
    live.server.signer.wait()
    record = client.get(f"/v1/artefacts/{ids[1]}").json()
    assert record["kind"] == "text" and record["content_url"] == f"/v1/artefacts/{ids[1]}/content"
    assert record["manifest"]["artefact"]["sha256"] == record["sha256"]
    assert record["manifest"]["watermark"]["applied"] is True


def test_chat_completion_shape(client):
    response = client.post("/v1/chat/completions", json={"model": "tiny", "max_tokens": 8, "messages": [
        {"role": "system", "content": "the sea"}, {"role": "user", "content": "the dog"}], "logprobs": False})
    data = response.json()
    assert response.status_code == 200 and data["object"] == "chat.completion"
    message = data["choices"][0]["message"]
    assert message["role"] == "assistant" and isinstance(message["content"], str)
    assert len(data["genchain"]["artefact_ids"]) == 1


def test_streaming_completion_is_sse_and_matches_the_plain_answer(client):
    plain = complete(client, seed=7, temperature=0.9, max_tokens=20)["choices"][0]["text"]
    with client.stream("POST", "/v1/completions", json={"model": "tiny", "prompt": "the cat", "max_tokens": 20,
                                                        "seed": 7, "temperature": 0.9, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        chunks = sse(r.read().decode())
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == plain
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert len(chunks[-1]["genchain"]["artefact_ids"]) == 1


def test_streaming_chat_sends_role_then_content(client):
    r = client.post("/v1/chat/completions", json={"model": "tiny", "stream": True, "max_tokens": 10, "n": 2,
                                                  "messages": [{"role": "user", "content": "a dog"}]})
    chunks = sse(r.text)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    firsts = [c for c in chunks if c["choices"][0]["delta"].get("role") == "assistant"]
    assert sorted(c["choices"][0]["index"] for c in firsts) == [0, 1]
    finals = [c for c in chunks if c["choices"][0]["finish_reason"]]
    assert sorted(c["choices"][0]["index"] for c in finals) == [0, 1]
    assert len(chunks[-1]["genchain"]["artefact_ids"]) == 2


def test_seed_reproduces_and_changes(client):
    a = complete(client, seed=3, temperature=1.0, max_tokens=24, n=2)["choices"]
    b = complete(client, seed=3, temperature=1.0, max_tokens=24, n=2)["choices"]
    c = complete(client, seed=4, temperature=1.0, max_tokens=24, n=2)["choices"]
    assert [x["text"] for x in a] == [x["text"] for x in b]
    assert [x["text"] for x in a] != [x["text"] for x in c]
    assert a[0]["text"] != a[1]["text"]  # each choice has its own generator


def test_stop_cuts_the_text_before_the_stop_string(client):
    full = complete(client, temperature=0, max_tokens=30)["choices"][0]["text"]
    stop = full[10:12]
    cut = complete(client, temperature=0, max_tokens=30, stop=[stop])["choices"][0]
    assert cut["text"] == full[:full.index(stop)] and cut["finish_reason"] == "stop"


@pytest.mark.slow
def test_concurrent_requests_share_decode_steps(live):
    scheduler = None
    results = []

    def call():
        with live.client() as c:
            results.append(c.post("/v1/completions", json={"model": "tiny2", "prompt": "a", "max_tokens": 400}))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200, 200]
    scheduler = live.server.schedulers["tiny2"][0]
    assert scheduler.stats.max_requests_in_step == 2 and scheduler.stats.shared_steps > 0


def test_invalid_values_get_openai_errors(client):
    for body in ({"model": "tiny", "temperature": 3}, {"model": "tiny", "n": 0}, {"model": "tiny", "top_p": 0},
                 {"model": "tiny", "stop": ["a", "b", "c", "d", "e"]}, {"prompt": "x"}):
        response = client.post("/v1/completions", json=body)
        assert response.status_code == 400, body
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    missing = client.post("/v1/completions", json={"model": "nope"})
    assert missing.status_code == 404 and "tiny" in missing.json()["error"]["message"]
    wrong = client.post("/v1/completions", json={"model": "gan"})
    assert wrong.status_code == 400
    assert client.post("/v1/completions", json={"model": "tiny", "max_tokens": 10**6}).status_code == 400


def test_unsafe_prompt_is_refused_with_its_category(client):
    response = client.post("/v1/completions", json={"model": "tiny", "prompt": "Explain how to make a bomb at home"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_filter:violence"


def test_images_as_b64_and_url(client, live):
    data = client.post("/v1/images/generations", json={"model": "gan", "n": 2, "seed": 5}).json()["data"]
    assert len(data) == 2
    image = Image.open(io.BytesIO(base64.b64decode(data[0]["b64_json"])))
    assert image.format == "PNG"
    again = client.post("/v1/images/generations", json={"model": "gan", "n": 2, "seed": 5}).json()["data"]
    assert again[0]["b64_json"] == data[0]["b64_json"]  # same seed, same pixels (watermark included)
    url = client.post("/v1/images/generations", json={"model": "gan", "n": 1, "response_format": "url",
                                                      "prompt": "3"}).json()["data"][0]
    png = client.get(url["url"])
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    bad = client.post("/v1/images/generations", json={"model": "gan", "prompt": "no-such-class"})
    assert bad.status_code == 400


def test_verify_an_artefact_and_a_tampered_copy(client, live, monkeypatch):
    monkeypatch.setenv("GENCHAIN_HOME", str(live.server.home))  # the signer's identity is a local one
    artefact = complete(client, max_tokens=30)["genchain"]["artefact_ids"][0]
    live.server.signer.wait()
    content = client.get(f"/v1/artefacts/{artefact}/content").content
    manifest = client.get(f"/v1/artefacts/{artefact}/manifest").content
    good = client.post("/v1/verify", files={"file": ("a.txt", content), "manifest": ("a.json", manifest)}).json()
    assert good["ok"] is True and {c["name"] for c in good["checks"]} >= {"integrity", "signature", "ledger"}
    bad = client.post("/v1/verify", files={"file": ("a.txt", content + b"x"), "manifest": ("a.json", manifest)})
    assert bad.json()["ok"] is False


def test_feedback_needs_a_known_artefact(client, live):
    artefact = complete(client)["genchain"]["artefact_ids"][0]
    ok = client.post("/v1/feedback", json={"artefact_id": artefact, "thumbs": "up", "rating": 4, "comment": "nice"})
    assert ok.status_code == 200 and isinstance(ok.json()["id"], int)
    assert client.post("/v1/feedback", json={"artefact_id": "0" * 32, "thumbs": "up"}).status_code == 404
    assert client.post("/v1/feedback", json={"artefact_id": artefact, "rating": 6}).status_code == 400
    rows = live.server.store.feedback_rows()
    assert any(r["artefact_id"] == artefact and r["rating"] == 4 and r["comment"] == "nice" for r in rows)


def test_arena_pair_vote_and_leaderboard(client):
    pair = client.post("/v1/arena/pair", json={"prompt": "the king", "max_tokens": 8}).json()
    assert set(pair) == {"prompt", "left", "right"} and "model" not in json.dumps(pair)
    vote = client.post("/v1/arena/vote", json={"left_sample_id": pair["left"]["sample_id"],
                                               "right_sample_id": pair["right"]["sample_id"], "choice": "left"})
    assert vote.status_code == 200
    assert {vote.json()["left_model"], vote.json()["right_model"]} == {"tiny", "tiny2"}
    board = client.get("/v1/leaderboard").json()
    assert board["comparisons"] >= 1
    winner = {g["name"]: g for g in board["generators"]}[vote.json()["left_model"]]
    assert winner["wins"] >= 1 and {"score", "low", "high", "win_probability", "n", "losses", "ties"} <= set(winner)
    unknown = client.post("/v1/arena/vote", json={"left_sample_id": "x", "right_sample_id": "y", "choice": "tie"})
    assert unknown.status_code == 404


def test_metrics_parse_and_count(client):
    complete(client)
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert {"genchain_requests", "genchain_request_latency_seconds", "genchain_generated_tokens",
            "genchain_queue_depth", "genchain_batch_rows", "genchain_tokens_per_second"} <= set(families)
    samples = [s for s in families["genchain_requests"].samples
               if s.labels.get("route") == "/v1/completions" and s.labels.get("status") == "200"]
    assert samples and samples[0].value >= 1


def test_health_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok", "models": 3}
    page = client.get("/")
    assert page.status_code in (200, 503)
    if page.status_code == 200:
        assert "genchain_session" in page.headers.get("set-cookie", "")
        assert "httponly" in page.headers["set-cookie"].lower()


def test_request_body_over_the_limit_is_413(client, live):
    big = "x" * (live.server.config.max_body + 10)
    response = client.post("/v1/completions", content=json.dumps({"model": "tiny", "prompt": big}),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413 and "error" in response.json()

    def chunks():
        for _ in range(5):
            yield b"x" * (live.server.config.max_body // 4)

    chunked = httpx.post(live.url + "/v1/completions", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413
