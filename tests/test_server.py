"""`halospec-rl serve`: the embedded decoder (tiny config) behind the OpenAI-compatible API."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from agents import HaloSpecAdaptive, make_policy, save_policy
from agents.serving import ServingPolicy, load_serving_policy
from envs import OBSERVATION_FEATURES
from halospec_rl.backends import Prompt, RequestResult
from halospec_rl.backends.http import HttpBackend, ServerUnavailableError
from halospec_rl.server import create_app, serve_in_thread

MESSAGES = [
    {"role": "system", "content": "Complete the code."},
    {"role": "user", "content": "def add(a, b):\n"},
]


@pytest.fixture(scope="module")
def embedded(tiny_model_cache):
    from halospec_rl.backends.embedded import EmbeddedBackend

    backend = EmbeddedBackend(config="tiny", cache_dir=tiny_model_cache)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def url(embedded):
    with serve_in_thread(create_app(embedded, max_tokens_limit=64)) as base_url:
        yield base_url


def chat(base_url: str, path: str = "/v1/chat/completions", **body) -> httpx.Response:
    return httpx.post(base_url + path, json={"messages": MESSAGES, "max_tokens": 12, **body}, timeout=60)


@pytest.mark.parametrize(
    ("path", "field", "k"),
    [
        ("/v1/chat/completions", "speculative_draft_length", 3),
        ("/api/v1/chat/completions", "speculative.n_max", 5),
        ("/v1/chat/completions", "speculative.n_max", 0),
    ],
)
def test_completion_honours_either_draft_field(url, path, field, k):
    extra = {"speculative.n_min": 0} if field == "speculative.n_max" else {}
    response = chat(url, path, **{field: k}, **extra, temperature=0, stop=["@@never@@"])
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "chat.completion" and data["model"] == "halospec-rl"
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    usage, timings = data["usage"], data["timings"]
    assert 0 < usage["completion_tokens"] <= 12 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert timings["draft_length"] == k and timings["predicted_n"] == usage["completion_tokens"]
    assert 0 <= timings["draft_n_accepted"] <= timings["draft_n"] <= k * timings["rounds"]
    assert (timings["draft_n"] > 0) == (k > 0)


def test_greedy_replies_are_identical_whatever_the_draft_length(url):
    """Exact speculative sampling at temperature 0 reproduces the target's greedy text."""
    texts = {
        chat(url, speculative_draft_length=k).json()["choices"][0]["message"]["content"] for k in (0, 2, 6)
    }
    assert len(texts) == 1


def test_models_and_health(url):
    for path in ("/v1/models", "/api/v1/models"):
        assert httpx.get(url + path).json()["data"][0]["id"] == "halospec-rl"
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["backend"] == "embedded" and health["policy"] is None
    assert health["max_draft_length"] == 8


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        ({"max_tokens": 8}, "messages must be a non-empty list"),
        ({"messages": []}, "messages must be a non-empty list"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages contain no text"),
        ({"messages": [{"role": "user"}]}, "messages[0] must be an object with a string content"),
        (
            {"messages": MESSAGES, "speculative_draft_length": 9},
            "speculative_draft_length must be an integer in 0..8, got 9",
        ),
        (
            {"messages": MESSAGES, "speculative.n_max": -1},
            "speculative.n_max must be an integer in 0..8, got -1",
        ),
        ({"messages": MESSAGES, "speculative_draft_length": "3"}, "got '3'"),
        ({"messages": MESSAGES, "speculative_draft_length": 2, "speculative.n_max": 3}, "disagree"),
        ({"messages": MESSAGES, "max_tokens": 0}, "max_tokens must be an integer in 1..64, got 0"),
        ({"messages": MESSAGES, "max_tokens": 65}, "max_tokens must be an integer in 1..64, got 65"),
        ({"messages": MESSAGES, "max_tokens": 1.5}, "max_tokens must be an integer"),
        ({"messages": MESSAGES, "stream": True}, "streaming is not supported"),
        ({"messages": MESSAGES, "stop": [""]}, "stop must be"),
    ],
)
def test_bad_input_is_rejected_with_400_and_a_message(url, body, message):
    if isinstance(body, bytes):
        response = httpx.post(
            url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
    else:
        response = httpx.post(url + "/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"


def test_eight_concurrent_clients_all_get_answers(url):
    def one(i: int) -> httpx.Response:
        return chat(url, speculative_draft_length=i % 4, seed=i, max_tokens=8)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(one, i) for i in range(8)]
        assert httpx.get(url + "/health", timeout=30).status_code == 200  # the loop answers meanwhile
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200] * 8
    assert sorted(r.json()["timings"]["draft_length"] for r in responses) == [0, 0, 1, 1, 2, 2, 3, 3]


class RecordingAdaptive(HaloSpecAdaptive):
    """HaloSpec's controller (a real agent), recording what the server feeds it."""

    def __init__(self):
        super().__init__(8)
        self.observations: list[np.ndarray] = []
        self.updates: list[tuple[int, RequestResult]] = []

    def act(self, observation: np.ndarray) -> int:
        self.observations.append(observation)
        return super().act(observation)

    def update(self, draft_length: int, result: RequestResult, observation: np.ndarray) -> None:
        self.updates.append((draft_length, result))
        super().update(draft_length, result, observation)


def test_a_policy_picks_the_draft_length_of_requests_without_one(embedded):
    agent = RecordingAdaptive()
    with serve_in_thread(create_app(embedded, ServingPolicy(agent))) as base_url:
        chosen = [chat(base_url).json()["timings"]["draft_length"] for _ in range(3)]
        pinned = chat(base_url, speculative_draft_length=7).json()["timings"]["draft_length"]
        chosen.append(chat(base_url).json()["timings"]["draft_length"])
        assert httpx.get(base_url + "/health").json()["policy"] == "adaptive"
    assert chosen[0] == 4 and all(1 <= k <= 8 for k in chosen) and pinned == 7  # HaloSpec starts at 4
    # It learns from its own choices only, but sees every request in its observation.
    assert [k for k, _ in agent.updates] == chosen
    assert len(agent.observations) == 4 and agent.observations[0].shape == (len(OBSERVATION_FEATURES),)
    last_k = agent.observations[3][OBSERVATION_FEATURES.index("draft_length_last_norm")]
    assert last_k == pytest.approx(7 / 8)


def test_serves_a_saved_agent_file(embedded, tmp_path):
    path = save_policy(make_policy("ucb1"), tmp_path / "ucb1.json")
    with serve_in_thread(create_app(embedded, load_serving_policy(path))) as base_url:
        ks = [chat(base_url, max_tokens=4).json()["timings"]["draft_length"] for _ in range(3)]
    assert all(1 <= k <= 8 for k in ks)
    with pytest.raises(ValueError, match="up to 8, above the backend's 4"):
        create_app(BrokenBackend(max_draft_length=4), ServingPolicy(make_policy("ucb1")))


class BrokenBackend:
    """Fails every other request: a failed RequestResult, then an exception."""

    name = "broken"

    def __init__(self, max_draft_length: int = 8):
        self.max_draft_length = max_draft_length
        self.calls = 0

    def generate(self, prompt: Prompt, draft_length: int) -> RequestResult:
        self.calls += 1
        if self.calls % 2:
            return RequestResult(False, 1.0, 0, draft_length, error="out of memory")
        raise RuntimeError("decoder crashed")


def test_backend_failures_are_500s_and_the_server_stays_up():
    with serve_in_thread(create_app(BrokenBackend())) as base_url:
        first, second = chat(base_url), chat(base_url)
        assert httpx.get(base_url + "/health").status_code == 200
    assert first.status_code == 500 and "out of memory" in first.json()["error"]["message"]
    assert second.status_code == 500 and "RuntimeError: decoder crashed" in second.json()["error"]["message"]


def test_a_failing_policy_is_a_500():
    agent = make_policy("fixed_3")
    agent.act = lambda observation: 9  # beyond the backend's 0..8
    with serve_in_thread(create_app(BrokenBackend(), ServingPolicy(agent))) as base_url:
        response = chat(base_url)
    assert response.status_code == 500
    assert (
        "serving policy failed: ValueError: draft_length must be in 0..8, got 9"
        in response.json()["error"]["message"]
    )


def test_halospec_rl_serve_command(embedded, tiny_model_cache, tmp_path):
    """The real command in a subprocess: tiny models from the session cache, a saved agent."""
    agent = save_policy(make_policy("ucb1"), tmp_path / "ucb1.json")
    with socket.socket() as sock:  # a free port (the server binds it a moment later)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cache = tiny_model_cache
    command = [
        sys.executable,
        "-m",
        "halospec_rl.cli",
        "serve",
        "--config",
        "tiny",
        "--cache-dir",
        str(cache),
    ]
    command += ["--port", str(port), "--policy", str(agent), "--model-name", "tiny"]
    repo = Path(__file__).resolve().parents[1]  # so `-m halospec_rl.cli` works uninstalled too
    server = subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = HttpBackend(f"http://127.0.0.1:{port}", path="/v1/chat/completions", backoff_s=0.01)
    try:
        deadline = time.monotonic() + 120  # generous: torch import and model load on a busy machine
        while True:
            try:
                assert client.health_check() == ["tiny"]
                break
            except ServerUnavailableError:
                assert server.poll() is None, server.communicate()[0]
                assert time.monotonic() < deadline, "halospec-rl serve did not start within 120 s"
                time.sleep(0.2)
        result = client.generate(Prompt(text="def f(x):\n", max_tokens=8), 2)
        assert result.success and result.draft_length == 2 and result.drafted > 0, result.error
        adaptive = chat(client.base_url, max_tokens=8).json()  # no draft length: the agent picks
        assert 1 <= adaptive["timings"]["draft_length"] <= 8
        assert httpx.get(client.base_url + "/health").json()["policy"] == "ucb1"
    finally:
        client.close()
        server.terminate()
        output = server.communicate(timeout=30)[0]
    # A graceful shutdown; uvicorn then re-raises SIGTERM, so the exit status may say "terminated".
    assert server.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in output, output
