"""The http backend: against `halospec-rl serve` (the real embedded decoder, tiny config) for the happy
path, and against small purpose-built loopback servers for every fault HaloSpec counts as a failure."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from halospec_rl.backends import Prompt, make_backend
from halospec_rl.backends.http import DRAFT_FIELDS, HttpBackend, ServerUnavailableError
from halospec_rl.decoder.corpus import prompt_text
from halospec_rl.report import RequestRecord, summarise
from halospec_rl.server import create_app, serve_in_thread

FAST_RETRY = {"backoff_s": 0.01, "timeout_s": 10.0}
GOOD_REPLY = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "length"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 16, "total_tokens": 19},
    "timings": {"draft_n": 12, "draft_n_accepted": 9},
}
HANG_S = 1.5


# ------------------------------------------------------------------------------ the real server
@pytest.fixture(scope="module")
def served(tiny_model_cache):
    """`halospec-rl serve`'s app on the tiny embedded decoder, on a free loopback port."""
    from halospec_rl.backends.embedded import EmbeddedBackend

    backend = EmbeddedBackend(config="tiny", cache_dir=tiny_model_cache)
    try:
        with serve_in_thread(create_app(backend, max_tokens_limit=64)) as url:
            yield url
    finally:
        backend.close()


@pytest.mark.parametrize("draft_field", list(DRAFT_FIELDS))
def test_each_draft_field_is_honoured_by_the_server(served, draft_field):
    backend = make_backend("http", base_url=served, draft_field=draft_field, **FAST_RETRY)
    try:
        assert backend.health_check() == ["halospec-rl"] and backend.model == "halospec-rl"
        for k in (0, 3):
            result = backend.generate(Prompt(domain="code", seed=1, max_tokens=24), k)
            assert result.success, result.error
            assert result.draft_length == k and result.attempts == 1 and result.latency_ms > 0
            assert 0 < result.tokens <= 24 and result.text
            assert 0 <= result.accepted <= result.drafted <= k * result.rounds
            if k == 0:
                assert result.drafted == 0
            else:
                assert result.drafted > 0
    finally:
        backend.close()


def test_a_short_benchmark_through_http_summarises(served):
    """Fixed modes over the same prompts, as evaluate.py runs them, through the http backend."""
    backend = HttpBackend(served, path="/v1/chat/completions", draft_field="llama-server", **FAST_RETRY)
    records = []
    try:
        for k in (1, 4):
            for step in range(1, 4):
                r = backend.generate(Prompt(domain="prose", seed=step, max_tokens=16), k)
                records.append(
                    RequestRecord(
                        len(records) + 1, step, f"fixed_{k}", "measured", k, r.success, r.latency_ms, r.tokens
                    )
                )
    finally:
        backend.close()
    stats = summarise(records)
    assert [s.mode for s in stats] == ["fixed_1", "fixed_4"]
    assert all(s.success_rate == 1.0 and s.score > 0 for s in stats)


# ------------------------------------------------------------------------------- fault servers
def scripted_app(script: list) -> FastAPI:
    """A chat endpoint whose n-th call follows script[n] (the last entry repeats): an HTTP status,
    "hang" (answer after HANG_S), "garbage" (200 with broken JSON), "nan-draft" (a NaN count) or a
    dict to return as JSON."""
    app = FastAPI()
    app.state.bodies = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        app.state.bodies.append(await request.json())
        action = script[min(len(app.state.bodies), len(script)) - 1]
        if action == "hang":
            await asyncio.sleep(HANG_S)
        elif action == "garbage":
            return Response('{"choices": [', media_type="application/json")
        elif action == "nan-draft":  # valid to Python's json module, not to a count
            return Response(
                json.dumps({**GOOD_REPLY, "timings": {"draft_n": math.nan}}), media_type="application/json"
            )
        elif isinstance(action, dict):
            return JSONResponse(action)
        elif action != 200:
            return JSONResponse({"error": {"message": "injected"}}, status_code=action)
        return JSONResponse(GOOD_REPLY)

    return app


def _client(url: str, **kwargs) -> HttpBackend:
    return HttpBackend(url, path="/v1/chat/completions", **{**FAST_RETRY, **kwargs})


def test_500_then_200_is_retried_and_succeeds():
    app = scripted_app([500, 200])
    with serve_in_thread(app) as url:
        backend = _client(url, model="m", stop=["\n\n"])
        result = backend.generate(Prompt(text="hello", max_tokens=16), 5)
        backend.close()
    assert result.success and result.attempts == 2
    assert (result.tokens, result.drafted, result.accepted, result.rounds, result.text) == (
        16,
        12,
        9,
        -1,
        "ok",
    )
    assert len(app.state.bodies) == 2
    assert app.state.bodies[0] == {
        "model": "m",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 16,
        "temperature": 0.0,
        "stream": False,
        "speculative_draft_length": 5,
        "stop": ["\n\n"],
    }


@pytest.mark.parametrize(
    ("script", "attempts", "reason"),
    [
        ([500], 3, "HTTP 500"),
        ([503, 503, 502], 3, "HTTP 502"),
        ([400], 1, "HTTP 400"),  # a client error does not change on a retry
        (["garbage"], 3, "malformed JSON"),
        ([{"choices": []}], 3, "no choices[0]"),
        ([{"choices": [{"message": {"content": "x"}}]}], 3, "no usage.completion_tokens"),
        ([{**GOOD_REPLY, "usage": {"completion_tokens": "many"}}], 3, "usage.completion_tokens is 'many'"),
        (["nan-draft"], 3, "timings.draft_n is nan"),
    ],
)
def test_each_failure_is_a_counted_failed_request(script, attempts, reason):
    app = scripted_app(script)
    with serve_in_thread(app) as url:
        backend = _client(url)
        result = backend.generate(Prompt(text="hello"), 2)
        backend.close()
    assert not result.success and reason in result.error
    assert result.attempts == attempts == len(app.state.bodies)
    assert result.tokens == 0 and result.draft_length == 2


def test_a_hung_server_times_out_and_counts_as_failed():
    with serve_in_thread(scripted_app(["hang"])) as url:
        backend = _client(url, timeout_s=0.2, attempts=2)
        start = time.monotonic()
        result = backend.generate(Prompt(text="hello"), 4)
        elapsed = time.monotonic() - start
        backend.close()
    assert not result.success and "timeout after 0.2 s" in result.error and result.attempts == 2
    assert elapsed < 2 * HANG_S  # it gave up before the server answered


def test_set_load_burns_cpu_here_and_labels_results():
    with serve_in_thread(scripted_app([200])) as url:
        backend = _client(url, load_processes=2)
        backend.set_load(0.5, "load")
        assert len(backend._burners.pids) == 1  # ceil(0.5 * 2)
        result = backend.generate(Prompt(text="hello"), 1)
        backend.set_load(0.0, "recovery")
        assert not backend._burners.running
        backend.close()
    assert result.success and (result.load, result.phase) == (0.5, "load")


def test_nothing_listening_fails_clearly():
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    backend = HttpBackend(url, **FAST_RETRY)
    with pytest.raises(ServerUnavailableError, match=f"nothing is listening at {url}"):
        backend.health_check()
    result = backend.generate(Prompt(text="hello"), 4)
    backend.close()
    assert (
        not result.success and result.attempts == 3 and "ConnectError" in result.error and url in result.error
    )


def test_request_body_per_preset_and_corpus_text_for_empty_prompts():
    lemonade = HttpBackend(draft_field="lemonade")
    llama = HttpBackend(draft_field="llama-server", model="qwen")
    body = lemonade.request_body(Prompt(domain="code", seed=3), 6)
    assert body["speculative_draft_length"] == 6 and "model" not in body and "stop" not in body
    assert body["messages"][0]["content"] == prompt_text("code", 3)
    body = llama.request_body(Prompt(text="hi", max_tokens=8), 6)
    assert body["speculative.n_max"] == 6 and body["speculative.n_min"] == 0 and body["model"] == "qwen"
    assert "speculative_draft_length" not in body and body["max_tokens"] == 8
    assert lemonade.url == "http://localhost:8000/api/v1/chat/completions"
    with pytest.raises(ValueError, match="unknown draft_field 'vllm'"):
        HttpBackend(draft_field="vllm")
    with pytest.raises(ValueError, match=r"0\.\.8"):
        lemonade.generate(Prompt(text="hi"), 9)
    lemonade.close()
    llama.close()
