"""The one policy protocol every evaluated controller follows (baselines, bandits, SB3 models)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from halospec_rl.backends.base import RequestResult


@runtime_checkable
class Policy(Protocol):
    """Chooses a draft length (1..max_draft_length) before each request.

    The runner calls, per request: ``draft_length = act(observation)``, serves the request, then
    ``update(draft_length, result, next_observation)``. ``observation`` is the env's float32 vector
    (``envs.observation.OBSERVATION_FEATURES``, shape ``(len(OBSERVATION_FEATURES),)``); policies
    that do not use it may ignore it. ``result.phase == "warmup"`` marks HaloSpec's warmup
    requests, which controllers may use to calibrate.
    """

    name: str
    max_draft_length: int

    def reset(self, seed: int | None = None) -> None:
        """Forget the episode (online learners keep nothing unless documented otherwise)."""

    def act(self, observation: np.ndarray) -> int:
        """The draft length for the next request, in 1..max_draft_length."""

    def update(self, draft_length: int, result: RequestResult, observation: np.ndarray) -> None:
        """Learn from the request just served with ``draft_length``; ``observation`` is the new one."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable learned state (empty for stateless baselines)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
