"""``halospec-rl serve``: a backend (the embedded decoder by default) behind an OpenAI-compatible API.

Endpoints: ``POST /v1/chat/completions`` (alias ``/api/v1/chat/completions``, HaloSpec's path),
``GET /v1/models`` (alias ``/api/v1/models``) and ``GET /health`` (alias ``/api/v1/health``).

The draft length of a request comes from Lemonade's ``speculative_draft_length`` or llama-server's
``speculative.n_max`` (both honoured; ``speculative.n_min`` is accepted and ignored because the
embedded decoder drafts k tokens every round, fewer only where the output ends), else from the
serving policy (``--policy``), else from ``default_draft_length``. Replies carry ``usage`` and llama.cpp-style
``timings`` (``draft_n``, ``draft_n_accepted``, plus our ``rounds`` and ``draft_length``).
Sampling settings (temperature) are the backend's, fixed at startup; a request's ``temperature`` is
accepted and ignored so HaloSpec-style clients work unchanged.

One request at a time runs on the model (an asyncio lock; the decoder runs in a worker thread so the
event loop keeps accepting and queueing connections).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from halospec_rl.backends import Backend, Prompt, RequestResult, check_draft_length, make_backend

DRAFT_LENGTH_FIELDS = ("speculative_draft_length", "speculative.n_max")
"""Request fields that set the draft length (Lemonade's, llama-server's)."""

API_PREFIXES = ("/v1", "/api/v1")


class DraftLengthChooser(Protocol):
    """What picks the draft length of requests that set none: ``agents.serving.ServingPolicy``
    adapts a trained agent to it. ``observe`` sees every served request; ``chosen`` says whether
    this chooser picked its draft length."""

    name: str
    max_draft_length: int

    def choose(self) -> int: ...

    def observe(self, result: RequestResult, chosen: bool) -> None: ...


class RequestError(ValueError):
    """A request the server rejects with HTTP 400; the message says what is wrong."""


def _error(status: int, message: str, kind: str) -> JSONResponse:
    """An OpenAI-shaped error reply."""
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def _message_text(messages: Any) -> str:
    """The prompt: the text of every message, joined by newlines (content strings or text parts)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list of {role, content} objects")
    texts = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = "".join(
                p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
            )
        if not isinstance(content, str):
            raise RequestError(f"messages[{i}] must be an object with a string content")
        texts.append(content)
    text = "\n".join(t for t in texts if t)
    if not text:
        raise RequestError("messages contain no text")
    return text


def _int_field(body: dict[str, Any], field: str, lo: int, hi: int) -> int | None:
    """An optional integer field in lo..hi, or RequestError naming the field and the range."""
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RequestError(f"{field} must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _stop_strings(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(f"stop must be a non-empty string or a list of them, got {stop!r}")
    return stops


def requested_draft_length(body: dict[str, Any], max_draft_length: int) -> int | None:
    """The draft length a request sets through either field, None when it sets none."""
    values = {f: _int_field(body, f, 0, max_draft_length) for f in DRAFT_LENGTH_FIELDS}
    given = {f: v for f, v in values.items() if v is not None}
    if len(set(given.values())) > 1:
        raise RequestError(f"draft-length fields disagree: {given}")
    return next(iter(given.values()), None)


def create_app(
    backend: Backend,
    policy: DraftLengthChooser | None = None,
    *,
    model_name: str = "halospec-rl",
    default_draft_length: int = 4,
    max_tokens_limit: int = 256,
    close_backend: bool = False,
) -> FastAPI:
    """The FastAPI app serving ``backend``.

    Args:
        backend: serves each request (any Backend; the CLI uses the embedded decoder).
        policy: chooses the draft length of requests that set none (a trained agent wrapped in
            ``agents.serving.ServingPolicy``); None uses ``default_draft_length``.
        model_name: the single model id listed by ``/v1/models`` (any requested ``model`` is accepted).
        default_draft_length: draft length when neither the request nor a policy sets one.
        max_tokens_limit: largest ``max_tokens`` accepted (default when absent: 64, HaloSpec's).
        close_backend: close ``backend`` when the app shuts down (the app owns it).
    """
    check_draft_length(default_draft_length, backend.max_draft_length)
    serving = policy
    if serving is not None and serving.max_draft_length > backend.max_draft_length:
        raise ValueError(
            f"policy {serving.name!r} chooses draft lengths up to {serving.max_draft_length}, "
            f"above the backend's {backend.max_draft_length}"
        )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn re-raises SIGTERM after its graceful shutdown, so code after uvicorn.run may never
        # run: the app's shutdown is the last sure moment to stop the backend's burner processes.
        if close_backend:
            backend.close()

    app = FastAPI(title="halospec-rl", description=__doc__, lifespan=lifespan)
    lock = asyncio.Lock()

    def prompt_tokens(prompt: Prompt) -> int:
        # The embedded decoder reads bytes and cuts the prompt to fit its context; it says how.
        if hasattr(backend, "prompt_bytes"):
            return len(backend.prompt_bytes(prompt))
        return len(prompt.text.encode("utf-8"))

    def serve_one(prompt: Prompt, draft_length: int | None) -> RequestResult:
        # Runs in a worker thread while the lock is held, so the policy state is never shared.
        chosen = draft_length is None and serving is not None
        if chosen:
            with _policy_fault():
                draft_length = check_draft_length(serving.choose(), backend.max_draft_length)
        elif draft_length is None:
            draft_length = default_draft_length
        result = backend.generate(prompt, draft_length)
        if serving is not None:
            with _policy_fault():
                serving.observe(result, chosen)
        return result

    async def chat_completions(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"request body is not valid JSON: {exc}", "invalid_request_error")
        try:
            if not isinstance(body, dict):
                raise RequestError("request body must be a JSON object")
            if body.get("stream"):
                raise RequestError("streaming is not supported; send stream=false")
            text = _message_text(body.get("messages"))
            max_tokens = _int_field(body, "max_tokens", 1, max_tokens_limit) or 64
            seed = _int_field(body, "seed", 0, 2**63 - 1) or 0
            stops = _stop_strings(body)
            draft_length = requested_draft_length(body, backend.max_draft_length)
        except RequestError as exc:
            return _error(400, str(exc), "invalid_request_error")
        prompt = Prompt(seed=seed, max_tokens=max_tokens, text=text)
        async with lock:
            try:
                result = await run_in_threadpool(serve_one, prompt, draft_length)
            except ValueError as exc:  # the backend rejects an argument (e.g. a prompt too long)
                return _error(400, str(exc), "invalid_request_error")
            except Exception as exc:  # the server stays up whatever one request does
                return _error(500, f"{type(exc).__name__}: {exc}", "server_error")
        if not result.success:
            return _error(500, f"generation failed: {result.error}", "server_error")
        reply = _completion(result, prompt, prompt_tokens(prompt), stops, body.get("model") or model_name)
        return JSONResponse(reply)

    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "halospec-rl"}]}

    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "backend": backend.name,
            "model": model_name,
            "max_draft_length": backend.max_draft_length,
            "policy": None if serving is None else serving.name,
        }

    for prefix in API_PREFIXES:
        app.add_api_route(prefix + "/chat/completions", chat_completions, methods=["POST"])
        app.add_api_route(prefix + "/models", models, methods=["GET"])
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/api/v1/health", health, methods=["GET"])
    return app


@contextlib.contextmanager
def _policy_fault() -> Iterator[None]:
    """Any error of the serving policy is the server's fault: a RuntimeError (HTTP 500), even a
    ValueError (which from the backend means a bad request, HTTP 400)."""
    try:
        yield
    except Exception as exc:
        raise RuntimeError(f"the serving policy failed: {type(exc).__name__}: {exc}") from exc


def _completion(
    result: RequestResult, prompt: Prompt, prompt_tokens: int, stops: list[str], model: str
) -> dict[str, Any]:
    """An OpenAI chat completion for one served request, with llama.cpp-style ``timings``."""
    text = result.text
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    if cut >= 0:
        # The stop string is applied to the text only; the tokens were generated (and paid for).
        text, finish = text[:cut], "stop"
    else:
        finish = "length" if result.tokens >= prompt.max_tokens else "stop"
    seconds = result.latency_ms / 1000.0
    timings = {
        "prompt_n": prompt_tokens,
        "predicted_n": result.tokens,
        "predicted_ms": result.latency_ms,
        "predicted_per_second": result.tokens / seconds if seconds > 0 else 0.0,
        "draft_length": result.draft_length,
    }
    # Counts the backend does not know (-1) are left out, as llama.cpp leaves them out without a draft.
    counts = {"draft_n": result.drafted, "draft_n_accepted": result.accepted, "rounds": result.rounds}
    timings.update({key: n for key, n in counts.items() if n >= 0})
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": result.tokens,
            "total_tokens": prompt_tokens + result.tokens,
        },
        "timings": timings,
    }


@contextlib.contextmanager
def serve_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 30.0
) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yields its base URL (port 0 = a free port).

    For tests and in-process benchmarks; the socket is bound before the thread starts, so the URL
    is valid at once and there is no race for the port.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # A short graceful-shutdown limit so a hung request cannot keep the server (and a test) alive.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"uvicorn did not start on {host}:{sock.getsockname()[1]}")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve(
    backend: str = "embedded",
    host: str = "127.0.0.1",
    port: int = 8000,
    policy: str | Path | None = None,
    model_name: str = "halospec-rl",
    default_draft_length: int = 4,
    max_tokens_limit: int = 256,
    log_level: str = "info",
    **backend_kwargs: Any,
) -> None:
    """Build the backend (``make_backend(backend, **backend_kwargs)``) and serve it until interrupted."""
    served = make_backend(backend, **backend_kwargs)
    try:
        chooser = None
        if policy:
            # The serve command is the composition root of adaptive serving: the only place where
            # halospec_rl reaches into agents (and, through it, envs/gymnasium).
            from agents.serving import load_serving_policy

            chooser = load_serving_policy(policy)
        app = create_app(
            served,
            chooser,
            model_name=model_name,
            default_draft_length=default_draft_length,
            max_tokens_limit=max_tokens_limit,
            close_backend=True,
        )
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:  # also when the app never started (a bad policy file, a port in use); close is idempotent
        served.close()


# ------------------------------------------------------------------------------------------- CLI
def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``halospec-rl serve`` options (it serves the embedded decoder)."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s, HaloSpec's)")
    from halospec_rl.decoder.train import CONFIGS

    parser.add_argument(
        "--config", default="full", choices=sorted(CONFIGS), help="embedded decoder model sizes"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="model cache (default: $HALOSPEC_CACHE_DIR or the user cache dir)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the embedded decoder")
    parser.add_argument(
        "--policy", type=Path, default=None, help="trained agent choosing k when a request sets none"
    )
    parser.add_argument(
        "--default-draft-length", type=int, default=4, help="k when neither request nor policy sets one"
    )
    parser.add_argument("--max-tokens-limit", type=int, default=256, help="largest max_tokens accepted")
    parser.add_argument("--model-name", default="halospec-rl", help="model id listed by /v1/models")


def run_serve(args: argparse.Namespace) -> int:
    """Run ``halospec-rl serve`` from parsed arguments."""
    serve(
        "embedded",
        host=args.host,
        port=args.port,
        policy=args.policy,
        model_name=args.model_name,
        default_draft_length=args.default_draft_length,
        max_tokens_limit=args.max_tokens_limit,
        config=args.config,
        cache_dir=args.cache_dir,
        num_threads=args.threads,
    )
    return 0
