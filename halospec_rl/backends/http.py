"""The http backend: an OpenAI-compatible chat-completions server (Lemonade, llama.cpp's llama-server,
or ``halospec-rl serve``), driven the way HaloSpec drove Lemonade.

Each request is one POST of a chat completion with the draft length in a server-specific field
(``DRAFT_FIELDS``), HaloSpec's retry policy (3 attempts, 400 ms backoff doubling, 60 s timeout), and
every failure turned into ``RequestResult(success=False, error=...)``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from halospec_rl.backends.base import Prompt, RequestResult, check_draft_length
from halospec_rl.load import DEFAULT_BURNERS, BurnerPool, pool_for_level

DRAFT_FIELDS: dict[str, Callable[[int], dict[str, int]]] = {
    # Lemonade, as HaloSpec used it.
    "lemonade": lambda k: {"speculative_draft_length": k},
    # llama-server's per-request limits; n_min 0 lets it stop a draft early (its own p_min cut-off).
    "llama-server": lambda k: {"speculative.n_max": k, "speculative.n_min": 0},
}
"""Body fields that carry the draft length, by preset name."""

DEFAULT_BASE_URL = "http://localhost:8000"
DEFAULT_PATH = "/api/v1/chat/completions"


class ServerUnavailableError(ConnectionError):
    """The server cannot be reached or does not answer like an OpenAI-compatible one."""


class _RequestFailed(Exception):
    """One failed attempt; ``retry`` says whether another attempt could succeed."""

    def __init__(self, reason: str, retry: bool = True):
        super().__init__(reason)
        self.retry = retry


def _count(value: Any, where: str) -> int:
    """A non-negative integer count from a JSON response, or _RequestFailed naming the field."""
    valid = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not valid or value < 0:
        raise _RequestFailed(f"malformed response: {where} is {value!r}, not a count")
    return int(value)


def _parse_completion(data: Any) -> tuple[str, int, int, int, int]:
    """Read ``(text, completion_tokens, draft_n, draft_n_accepted, rounds)`` from a chat completion.

    The text is ``message.content``, else ``message.reasoning_content``, else ``choices[0].text``
    (HaloSpec's order). Draft counts come from llama.cpp-style ``timings`` and are -1 when absent;
    ``timings.rounds`` (target verify passes) is only sent by ``halospec-rl serve``.
    """
    if not isinstance(data, dict):
        raise _RequestFailed(f"malformed response: expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _RequestFailed("malformed response: no choices[0]")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    text = message.get("content") or message.get("reasoning_content") or choice.get("text") or ""
    usage = data.get("usage")
    if not isinstance(usage, dict) or "completion_tokens" not in usage:
        raise _RequestFailed("malformed response: no usage.completion_tokens")
    tokens = _count(usage["completion_tokens"], "usage.completion_tokens")
    timings = data.get("timings") if isinstance(data.get("timings"), dict) else {}
    drafted, accepted, rounds = (
        _count(timings[key], f"timings.{key}") if key in timings else -1
        for key in ("draft_n", "draft_n_accepted", "rounds")
    )
    return str(text), tokens, drafted, accepted, rounds


class HttpBackend:
    """Serves requests through an OpenAI-compatible chat-completions endpoint.

    Args:
        base_url: scheme, host and port of the server (HaloSpec's default ``http://localhost:8000``).
        path: chat-completions path (HaloSpec/Lemonade's ``/api/v1/chat/completions``; llama-server
            and ``halospec-rl serve`` also answer ``/v1/chat/completions``).
        draft_field: preset naming the body field of the draft length, a key of ``DRAFT_FIELDS``.
        model: ``model`` sent in the body; None asks the server (first of ``/models``) in
            ``health_check`` and omits the field until then.
        max_draft_length: largest draft length the caller may ask for.
        temperature: sampling temperature sent with every request (0 = greedy, as HaloSpec).
        stop: stop strings sent with every request (omitted when empty).
        attempts: tries per request before it counts as failed.
        backoff_s: sleep before the second attempt, doubling before each later one (seconds).
        timeout_s: per-attempt timeout for connecting, sending and reading (seconds).
        load_processes: CPU burners ``set_load`` runs on this machine at level 1 (right for a local
            server, as HaloSpec's ``HALOSPEC_LOAD``); 0 only records the level and phase.

    ``latency_ms`` is the wall-clock time of the successful attempt alone (send to last byte read):
    what the server cost, not the client's retry waits; ``attempts`` counts the tries. A failed
    request has the latency of its last attempt and the reason of its last failure in ``error``.
    """

    name = "http"

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        path: str = DEFAULT_PATH,
        draft_field: str = "lemonade",
        model: str | None = None,
        max_draft_length: int = 8,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        attempts: int = 3,
        backoff_s: float = 0.4,
        timeout_s: float = 60.0,
        load_processes: int = DEFAULT_BURNERS,
    ):
        if draft_field not in DRAFT_FIELDS:
            raise ValueError(f"unknown draft_field {draft_field!r}; known: {', '.join(DRAFT_FIELDS)}")
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        if backoff_s < 0 or timeout_s <= 0:
            raise ValueError(f"need backoff_s >= 0 and timeout_s > 0, got {backoff_s}, {timeout_s}")
        self.base_url = base_url.rstrip("/")
        self.path = "/" + path.lstrip("/")
        self.url = self.base_url + self.path
        self.draft_field = draft_field
        self.model = model
        self.max_draft_length = int(max_draft_length)
        self.temperature = float(temperature)
        self.stop = list(stop)
        self.attempts = int(attempts)
        self.backoff_s = float(backoff_s)
        self.timeout_s = float(timeout_s)
        self.load_processes = int(load_processes)
        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout_s))
        self._load = 0.0
        self._phase = "steady"
        self._burners = BurnerPool(0)

    # --------------------------------------------------------------------------------- protocol
    def reset(self, seed: int | None = None) -> None:
        """Nothing to reset: the server holds no episode state (prompts carry their own seeds)."""

    def set_load(self, level: float, phase: str = "steady") -> None:
        """Run ``ceil(level * load_processes)`` CPU burners from now on and label results with it."""
        self._burners = pool_for_level(self._burners, level, self.load_processes)
        self._load, self._phase = float(level), phase

    def generate(self, prompt: Prompt, draft_length: int) -> RequestResult:
        """POST one chat completion with up to ``attempts`` tries; never raises for a failed request."""
        k = check_draft_length(draft_length, self.max_draft_length)
        body = self.request_body(prompt, k)
        reason, latency_ms = "", 0.0
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                time.sleep(self.backoff_s * 2 ** (attempt - 2))
            start = time.perf_counter()
            try:
                text, tokens, drafted, accepted, rounds = self._attempt(body)
            except _RequestFailed as failure:
                latency_ms = (time.perf_counter() - start) * 1000.0
                reason = str(failure)
                if not failure.retry:
                    break
                continue
            return RequestResult(
                success=True,
                latency_ms=(time.perf_counter() - start) * 1000.0,
                tokens=tokens,
                draft_length=k,
                drafted=drafted,
                accepted=accepted,
                rounds=rounds,
                text=text,
                attempts=attempt,
                load=self._load,
                phase=self._phase,
            )
        return RequestResult(
            success=False,
            latency_ms=latency_ms,
            tokens=0,
            draft_length=k,
            error=reason,
            attempts=attempt,
            load=self._load,
            phase=self._phase,
        )

    def close(self) -> None:
        """Close the connection pool and stop any CPU burners."""
        self._client.close()
        self._burners.stop()

    # ----------------------------------------------------------------------------------- helpers
    def request_body(self, prompt: Prompt, draft_length: int) -> dict[str, Any]:
        """The JSON body of one request (OpenAI chat completion plus the draft-length field)."""
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": prompt.text or _corpus_text(prompt)}],
            "max_tokens": prompt.max_tokens,
            "temperature": self.temperature,
            "stream": False,
            **DRAFT_FIELDS[self.draft_field](draft_length),
        }
        if self.model is not None:
            body["model"] = self.model
        if self.stop:
            body["stop"] = self.stop
        return body

    def _attempt(self, body: dict[str, Any]) -> tuple[str, int, int, int, int]:
        try:
            response = self._client.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise _RequestFailed(
                f"timeout after {self.timeout_s:g} s ({type(exc).__name__}) at {self.url}"
            ) from None
        except httpx.HTTPError as exc:
            raise _RequestFailed(f"{type(exc).__name__} at {self.url}: {exc}") from None
        if response.status_code != 200:
            # A client error other than timeout/rate limit will not change on a retry.
            retry = response.status_code >= 500 or response.status_code in (408, 429)
            raise _RequestFailed(f"HTTP {response.status_code}: {response.text[:200]}", retry=retry)
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _RequestFailed(f"malformed JSON in the response: {response.text[:80]!r}") from None
        return _parse_completion(data)

    def health_check(self) -> list[str]:
        """Check that an OpenAI-compatible server answers at ``base_url``; return its model ids.

        Asks ``<chat path prefix>/models`` (``/api/v1/models`` for the default path). Picks the
        first model when none was given. Raises ServerUnavailableError naming the URL otherwise.
        """
        url = self.base_url + self.path.rsplit("/chat/completions", 1)[0] + "/models"
        try:
            response = self._client.get(url, timeout=min(self.timeout_s, 10.0))
        except httpx.ConnectError:
            raise ServerUnavailableError(
                f"nothing is listening at {self.base_url} (connection refused for {url}); "
                "start the server first, e.g. `halospec-rl serve`, or pass the right --base-url"
            ) from None
        except httpx.HTTPError as exc:
            raise ServerUnavailableError(
                f"the server at {url} did not answer: {type(exc).__name__}: {exc}"
            ) from None
        if response.status_code != 200:
            raise ServerUnavailableError(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            models = [m["id"] for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise ServerUnavailableError(
                f"{url} did not return an OpenAI model list: {response.text[:200]!r}"
            ) from None
        if self.model is None and models:
            self.model = models[0]
        return models


def _corpus_text(prompt: Prompt) -> str:
    """The project's prompt text for a Prompt without text (same text the embedded decoder uses)."""
    from halospec_rl.decoder.corpus import prompt_text

    return prompt_text(prompt.domain, prompt.seed)
