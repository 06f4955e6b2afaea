"""What serves one request: the backend protocol, its input (Prompt) and output (RequestResult)."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

DOMAINS = ("code", "prose", "random")
"""Content domains every backend understands; they differ in how predictable text is (acceptance)."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """One request to serve.

    ``text`` may be empty: a backend that needs text draws it from the project's corpus for
    ``domain`` with ``seed`` (so every mode of an evaluation sees the same prompts).
    """

    domain: str = "prose"
    seed: int = 0
    max_tokens: int = 64
    text: str = ""


@dataclass(frozen=True, slots=True)
class RequestResult:
    """What one request cost and produced.

    ``latency_ms`` is wall-clock (or virtual-clock for the simulator) milliseconds for the whole
    request; ``tokens`` the completion tokens; ``drafted``/``accepted`` draft tokens and ``rounds``
    (target verify passes) are -1 when the backend does not know them. ``load`` is the contention
    level (0..1) in force while the request ran, ``phase`` the scenario phase it ran in.
    """

    success: bool
    latency_ms: float
    tokens: int
    draft_length: int
    drafted: int = -1
    accepted: int = -1
    rounds: int = -1
    text: str = ""
    error: str = ""
    attempts: int = 1
    load: float = 0.0
    phase: str = "steady"

    @property
    def acceptance_rate(self) -> float | None:
        """accepted / drafted, or None when unknown or nothing was drafted."""
        if self.drafted is None or self.drafted <= 0 or self.accepted < 0:
            return None
        return self.accepted / self.drafted

    @property
    def tokens_per_round(self) -> float | None:
        """Completion tokens per target forward pass, or None when unknown."""
        if self.rounds is None or self.rounds <= 0:
            return None
        return self.tokens / self.rounds


@runtime_checkable
class Backend(Protocol):
    """Serves requests with a given draft length. Never raises for a failed request: it returns
    ``RequestResult(success=False, error=...)``; it raises ValueError only for bad arguments."""

    name: str
    max_draft_length: int

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode; a seeded backend replays the same content and noise stream."""

    def set_load(self, level: float, phase: str = "steady") -> None:
        """Apply the scenario's CPU contention level (0 = none, 1 = full) from the next request on."""

    def generate(self, prompt: Prompt, draft_length: int) -> RequestResult:
        """Serve one request; ``draft_length`` 0 means no speculation."""

    def close(self) -> None:
        """Release processes, sockets and threads."""


def check_draft_length(draft_length: int, max_draft_length: int) -> int:
    """Validate a draft length, raising ValueError that names the value and the allowed range."""
    try:
        k = operator.index(draft_length)
    except TypeError:
        raise ValueError(
            f"draft_length must be an integer in 0..{max_draft_length}, got {draft_length!r}"
        ) from None
    if isinstance(draft_length, bool) or not 0 <= k <= max_draft_length:
        raise ValueError(f"draft_length must be in 0..{max_draft_length}, got {draft_length!r}")
    return k
