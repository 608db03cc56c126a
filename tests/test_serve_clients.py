"""Third-party clients against a real server: the `openai` package, and schemathesis fuzzing the OpenAPI spec."""

from __future__ import annotations

import pytest

from genchain.serve.app import ServeConfig
from genchain.serve.store import Store
from serve_harness import LiveServer, make_runs


@pytest.fixture(scope="module")
def live_with_key(tiny_run, tmp_path_factory):
    from genchain.serve.auth import new_key

    tmp = tmp_path_factory.mktemp("serve-clients")
    db = str(tmp / "serve.db")
    store = Store(db)
    key, key_id, digest = new_key()
    store.add_key(key_id, "openai", digest, "1000/s")
    store.close()
    config = ServeConfig(runs_dir=make_runs(tmp, tiny_run), db=db, artefacts_dir=tmp / "art", dtype="fp32",
                         home=tmp / "home", sign=False)
    with LiveServer(config) as live:
        yield live, key


def test_openai_client_completions_chat_and_stream(live_with_key):
    openai = pytest.importorskip("openai")
    live, key = live_with_key
    client = openai.OpenAI(base_url=live.url + "/v1", api_key=key)
    assert [m.id for m in client.models.list()] == ["tiny"]
    completion = client.completions.create(model="tiny", prompt="the cat", max_tokens=8, n=2, seed=1)
    assert len(completion.choices) == 2 and completion.usage.completion_tokens > 0
    assert len(completion.model_extra["genchain"]["artefact_ids"]) == 2
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "the dog"}],
                                          max_tokens=8, temperature=0)
    assert chat.choices[0].message.role == "assistant" and isinstance(chat.choices[0].message.content, str)
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "the dog"}], max_tokens=8, temperature=0, stream=True)]
    assert "".join(pieces) == chat.choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=live.url + "/v1", api_key="gc-nope").models.list()
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny", prompt="x", temperature=9)


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors(live_with_key):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    live, key = live_with_key
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    failures, calls = [], []
    for operation in schema.get_all_operations():
        op = operation.ok()
        if op.path in ("/v1/verify",):
            continue  # multipart uploads: verified by the API tests

        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def run(case):
            if isinstance(case.body, dict) and "max_tokens" in case.body:
                case.body["max_tokens"] = min(abs(case.body["max_tokens"] or 1), 4) or 1
            response = case.call(base_url=live.url, headers={"Authorization": f"Bearer {key}"})
            calls.append(response.status_code)
            if response.status_code >= 500:
                failures.append((case.method, case.path, case.body, response.status_code, response.text[:200]))

        run()
    assert len(calls) > 20 and failures == []
