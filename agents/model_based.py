"""A structured bandit that learns how speculative decoding costs, and picks the cheapest draft length.

Every request, whatever its draft length, tells something about every other draft length: how
predictable the content is (tokens per target pass reveal the acceptance rate ``alpha``) and what
a target pass and a drafted token cost. The independent-arm bandits in ``agents.bandits`` cannot
share that; this learner does, through the model the simulator is built on (Leviathan et al. 2023):

    latency(k) ~ w0 + w1 * R_k(alpha) / N + w2 * D_k(alpha) / N       (in units of a reference latency)

where ``R_k`` and ``D_k`` are the expected target passes and drafted tokens of an ``N``-token request
(``halospec_rl.backends.simulated.expected_rounds_drafted``). The weights are fitted by recursive
least squares with forgetting, separately for the idle and the loaded regime (the load level of the
observation interpolates between the two); ``alpha`` is an exponential average of each request's
acceptance rate, recovered by inverting ``N / R_k(alpha)`` from its tokens per pass. The choice is
the draft length with the lowest lower confidence bound of predicted latency (optimism in the face
of uncertainty, as LinUCB), so it explores only while the cost weights are unknown.

It minimises expected latency per request; for HaloSpec's score that is also what lowers p95 and
stddev, since a draft length's tail follows its mean on the same content. Failed requests carry no
cost information and are skipped.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from envs.observation import OBSERVATION_FEATURES
from halospec_rl.backends.base import RequestResult
from halospec_rl.backends.simulated import expected_rounds_drafted

_LOAD_INDEX = OBSERVATION_FEATURES.index("load")
_ALPHA_GRID = np.linspace(0.0, 0.98, 50)
_N_WEIGHTS = 6  # (1, R/N, D/N) for the idle regime, the same again scaled by the load level


@functools.lru_cache(maxsize=8)
def _speculation_table(max_draft_length: int, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Expected (R/N, D/N) per (alpha on ``_ALPHA_GRID``, draft length 1..max): two (50, max) arrays."""
    rounds = np.empty((len(_ALPHA_GRID), max_draft_length))
    drafted = np.empty_like(rounds)
    for i, alpha in enumerate(_ALPHA_GRID):
        for k in range(1, max_draft_length + 1):
            rounds[i, k - 1], drafted[i, k - 1] = expected_rounds_drafted(k, float(alpha), max_tokens)
    return rounds / max_tokens, drafted / max_tokens


class SpeculationModelBandit:
    """Structured bandit over draft lengths 1..max_draft_length (see module docstring).

    Args:
        forgetting: RLS forgetting factor per request (0.99: about 100 requests of memory), so the
            cost weights follow drift.
        acceptance_smoothing: weight of the newest request in the acceptance-rate average.
        confidence: width of the lower confidence bound, in residual standard deviations.
        initial_draft_length: the draft length of the first request.
        initial_acceptance: acceptance rate assumed before any request.
    """

    name = "model_based"

    def __init__(
        self,
        max_draft_length: int = 8,
        forgetting: float = 0.99,
        acceptance_smoothing: float = 0.3,
        confidence: float = 0.5,
        initial_draft_length: int = 4,
        initial_acceptance: float = 0.6,
    ):
        if max_draft_length < 1:
            raise ValueError(f"max_draft_length must be >= 1, got {max_draft_length}")
        if not 0.5 <= forgetting <= 1.0:
            raise ValueError(f"forgetting must be in [0.5, 1], got {forgetting}")
        if not 0.0 < acceptance_smoothing <= 1.0:
            raise ValueError(f"acceptance_smoothing must be in (0, 1], got {acceptance_smoothing}")
        if confidence < 0:
            raise ValueError(f"confidence must be >= 0, got {confidence}")
        if not 1 <= initial_draft_length <= max_draft_length:
            raise ValueError(f"initial_draft_length must be in 1..{max_draft_length}, got {initial_draft_length}")
        if not 0.0 <= initial_acceptance < 1.0:
            raise ValueError(f"initial_acceptance must be in [0, 1), got {initial_acceptance}")
        self.max_draft_length = max_draft_length
        self.forgetting = forgetting
        self.acceptance_smoothing = acceptance_smoothing
        self.confidence = confidence
        self.initial_draft_length = initial_draft_length
        self.initial_acceptance = initial_acceptance
        self._loaded_state: dict[str, Any] | None = None
        self.reset()

    def config(self) -> dict[str, Any]:
        return {
            "forgetting": self.forgetting,
            "acceptance_smoothing": self.acceptance_smoothing,
            "confidence": self.confidence,
            "initial_draft_length": self.initial_draft_length,
            "initial_acceptance": self.initial_acceptance,
        }

    def reset(self, seed: int | None = None) -> None:
        """A fresh learner, or the loaded state after ``load_state_dict`` (a warm start); the choice
        is deterministic, so ``seed`` is unused."""
        if self._loaded_state is not None:
            self._restore(self._loaded_state)
            return
        self._weights = np.zeros(_N_WEIGHTS)
        self._weights[:3] = (0.1, 1.0, 0.1)  # a target pass dominates: a vague but sane start
        self._precision_inv = np.eye(_N_WEIGHTS) * 10.0
        self._residual_var = 0.05**2
        self._alpha = self.initial_acceptance
        self._scale_ms: float | None = None
        self._max_tokens = 64
        self._served = 0

    # ---------------------------------------------------------------------------------- model
    def _features(self, load: float) -> np.ndarray:
        """(max_draft_length, 6) features of every draft length at the current acceptance estimate."""
        rounds, drafted = _speculation_table(self.max_draft_length, self._max_tokens)
        i = np.interp(self._alpha, _ALPHA_GRID, np.arange(len(_ALPHA_GRID)))
        lo, frac = int(i), i - int(i)
        hi = min(lo + 1, len(_ALPHA_GRID) - 1)
        r = (1 - frac) * rounds[lo] + frac * rounds[hi]
        d = (1 - frac) * drafted[lo] + frac * drafted[hi]
        base = np.stack([np.ones_like(r), r, d], axis=1)
        return np.concatenate([base, load * base], axis=1)

    def predicted_latency_ms(self, load: float = 0.0) -> np.ndarray:
        """Predicted mean latency (ms) of draft lengths 1..max at this load, shape ``(max,)``."""
        return self._features(load) @ self._weights * (self._scale_ms or 1.0)

    def _acceptance_from(self, result: RequestResult) -> float | None:
        """The acceptance rate that explains this request's tokens per target pass."""
        if result.rounds <= 0 or result.draft_length < 1 or result.tokens <= 0:
            return None
        rounds, _ = _speculation_table(self.max_draft_length, self._max_tokens)
        column = rounds[:, min(result.draft_length, self.max_draft_length) - 1]  # decreasing in alpha
        observed = result.rounds / result.tokens
        return float(np.interp(-observed, -column, _ALPHA_GRID))

    # ---------------------------------------------------------------------------- protocol
    def act(self, observation: np.ndarray) -> int:
        if self._served == 0:
            return self.initial_draft_length
        x = self._features(float(observation[_LOAD_INDEX]))
        mean = x @ self._weights
        spread = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", x, self._precision_inv, x), 0.0))
        lower = mean - self.confidence * math.sqrt(self._residual_var) * spread
        return int(np.argmin(lower)) + 1

    def update(self, draft_length: int, result: RequestResult, observation: np.ndarray) -> None:
        self._served += 1
        if not result.success:
            return
        if result.tokens > 0 and result.tokens != self._max_tokens:
            self._max_tokens = int(result.tokens)
        if self._scale_ms is None:
            self._scale_ms = max(result.latency_ms, 1e-6)
        # Fit the costs with the acceptance estimate the request was chosen under, then update it.
        x = self._features(result.load)[draft_length - 1]
        y = result.latency_ms / self._scale_ms
        residual = y - x @ self._weights
        px = self._precision_inv @ x
        gain = px / (self.forgetting + x @ px)
        self._weights += gain * residual
        self._precision_inv = (self._precision_inv - np.outer(gain, px)) / self.forgetting
        self._residual_var += 0.05 * (residual * residual - self._residual_var)
        alpha = self._acceptance_from(result)
        if alpha is not None:
            self._alpha += self.acceptance_smoothing * (alpha - self._alpha)

    def state_dict(self) -> dict[str, Any]:
        return {
            "weights": self._weights.tolist(),
            "precision_inv": self._precision_inv.tolist(),
            "residual_var": self._residual_var,
            "alpha": self._alpha,
            "scale_ms": self._scale_ms,
            "max_tokens": self._max_tokens,
            "served": self._served,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restore(state)
        self._loaded_state = state

    def _restore(self, state: dict[str, Any]) -> None:
        self._weights = np.array(state["weights"], dtype=float)
        self._precision_inv = np.array(state["precision_inv"], dtype=float)
        if self._weights.shape != (_N_WEIGHTS,) or self._precision_inv.shape != (_N_WEIGHTS, _N_WEIGHTS):
            raise ValueError(f"model_based state has weights of shape {self._weights.shape}, expected ({_N_WEIGHTS},)")
        self._residual_var = float(state["residual_var"])
        self._alpha = float(state["alpha"])
        self._scale_ms = state["scale_ms"]
        self._max_tokens = int(state["max_tokens"])
        self._served = int(state["served"])
