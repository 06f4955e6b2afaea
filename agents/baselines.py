"""Non-learning baselines: fixed draft lengths, HaloSpec's adaptive controller, transformers' heuristic.

All follow ``agents.base.Policy``; none reads the observation vector.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from halospec_rl.backends.base import RequestResult
from halospec_rl.metrics import nearest_rank

HALOSPEC_MAX_DRAFT_LENGTH = 8
"""HaloSpec clamps its draft length to 1..8."""


def _check_max_draft_length(max_draft_length: int) -> int:
    if isinstance(max_draft_length, bool) or not isinstance(max_draft_length, int) or max_draft_length < 1:
        raise ValueError(f"max_draft_length must be an integer >= 1, got {max_draft_length!r}")
    return max_draft_length


class FixedPolicy:
    """Always the same draft length (HaloSpec's ``fixed_k`` modes)."""

    def __init__(self, draft_length: int, max_draft_length: int = 8):
        self.max_draft_length = _check_max_draft_length(max_draft_length)
        if (
            isinstance(draft_length, bool)
            or not isinstance(draft_length, int)
            or not (1 <= draft_length <= max_draft_length)
        ):
            raise ValueError(
                f"draft_length must be an integer in 1..{max_draft_length}, got {draft_length!r}"
            )
        self.draft_length = draft_length
        self.name = f"fixed_{draft_length}"

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (what ``agents.save_policy`` records)."""
        return {}

    def reset(self, seed: int | None = None) -> None:
        """Nothing to forget."""

    def act(self, observation: np.ndarray) -> int:
        return self.draft_length

    def update(self, draft_length: int, result: RequestResult, observation: np.ndarray) -> None:
        """Fixed: learns nothing."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Stateless."""


class HaloSpecAdaptive:
    """HaloSpec's latency-feedback controller, ported rule for rule from its Rust source.

    Latencies are integer milliseconds (HaloSpec truncates). Warmup requests (``result.phase ==
    "warmup"``) are served with draft length 4 and their successful latencies calibrate two
    thresholds: ``low = int(0.85 * p50)`` and ``high = int(1.05 * p95)`` (nearest rank); with no
    successful warmup request HaloSpec's defaults ``low = 9000``, ``high = 22000`` apply. Then, per
    measured request, from the EMA (alpha 0.4) of latency seen so far (``last_latency``):

    * first measured request: keep the current draft length (4);
    * ``last_latency < low``: +1; ``last_latency > high``: -2; otherwise +1 while below 6;
    * always clamped to 1..8 (or 1..max_draft_length when that is smaller);
    * a failed request sets the draft length to 1 and leaves the EMA untouched.

    Environments without a warmup phase (the gym env's plain episodes): when the first result is
    not a warmup result, the first ``warmup_steps`` requests act as the warmup instead (served with 4,
    not adapted). ``reset`` forgets everything, including the calibration, as HaloSpec recalibrates
    per run. After calibration every result counts as measured, whatever its phase.
    """

    name = "adaptive"
    START_DRAFT_LENGTH = 4
    GENTLE_INCREASE_BELOW = 6
    EMA_ALPHA = 0.4
    DEFAULT_LOW_MS = 9000
    DEFAULT_HIGH_MS = 22000

    def __init__(self, max_draft_length: int = 8, warmup_steps: int = 5):
        self.max_draft_length = _check_max_draft_length(max_draft_length)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
        self.warmup_steps = warmup_steps
        self._cap = min(HALOSPEC_MAX_DRAFT_LENGTH, self.max_draft_length)
        self.reset()

    def config(self) -> dict[str, Any]:
        return {"warmup_steps": self.warmup_steps}

    def reset(self, seed: int | None = None) -> None:
        """Forget the run: back to warmup, draft length 4, no thresholds (deterministic: seed unused)."""
        self.warmup_latencies_ms: list[int] = []
        self.implicit_warmup_seen = 0
        self.saw_warmup_phase = False
        self.low_ms: int | None = None
        self.high_ms: int | None = None
        self.last_latency_ms: int | None = None
        self.ema_ms: float | None = None
        self.draft_len = min(self.START_DRAFT_LENGTH, self._cap)

    @property
    def calibrated(self) -> bool:
        """True once the thresholds are set (the measured phase has started)."""
        return self.low_ms is not None

    def act(self, observation: np.ndarray) -> int:
        if not self.calibrated or self.last_latency_ms is None:
            return self.draft_len
        if self.last_latency_ms < self.low_ms:
            chosen = self.draft_len + 1
        elif self.last_latency_ms > self.high_ms:
            chosen = self.draft_len - 2
        elif self.draft_len < self.GENTLE_INCREASE_BELOW:
            chosen = self.draft_len + 1
        else:
            chosen = self.draft_len
        return min(max(chosen, 1), self._cap)

    def update(self, draft_length: int, result: RequestResult, observation: np.ndarray) -> None:
        if not self.calibrated:
            if result.phase == "warmup":
                self.saw_warmup_phase = True
                self._record_warmup(result)
                return
            if not self.saw_warmup_phase and self.implicit_warmup_seen < self.warmup_steps:
                self.implicit_warmup_seen += 1
                self._record_warmup(result)
                if self.implicit_warmup_seen == self.warmup_steps:
                    self._calibrate()
                return
            self._calibrate()
        if result.success:
            latency = int(result.latency_ms)
            self.ema_ms = (
                latency
                if self.ema_ms is None
                else (self.EMA_ALPHA * latency + (1.0 - self.EMA_ALPHA) * self.ema_ms)
            )
            self.last_latency_ms = int(self.ema_ms)
            self.draft_len = draft_length
        else:
            self.draft_len = 1

    def _record_warmup(self, result: RequestResult) -> None:
        if result.success:
            self.warmup_latencies_ms.append(int(result.latency_ms))

    def _calibrate(self) -> None:
        if self.warmup_latencies_ms:
            ordered = sorted(self.warmup_latencies_ms)
            self.low_ms = int(0.85 * nearest_rank(ordered, 50))
            self.high_ms = int(1.05 * nearest_rank(ordered, 95))
        else:
            self.low_ms, self.high_ms = self.DEFAULT_LOW_MS, self.DEFAULT_HIGH_MS

    _STATE_KEYS = (
        "warmup_latencies_ms",
        "implicit_warmup_seen",
        "saw_warmup_phase",
        "low_ms",
        "high_ms",
        "last_latency_ms",
        "ema_ms",
        "draft_len",
    )

    def state_dict(self) -> dict[str, Any]:
        """The controller's current run state (thresholds, EMA, draft length); JSON-serialisable."""
        return {key: getattr(self, key) for key in self._STATE_KEYS} | {
            "warmup_latencies_ms": list(self.warmup_latencies_ms)
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [key for key in self._STATE_KEYS if key not in state]
        if missing:
            raise ValueError(f"adaptive state is missing {missing}")
        for key in self._STATE_KEYS:
            setattr(self, key, state[key])
        self.warmup_latencies_ms = list(self.warmup_latencies_ms)


class HFHeuristic:
    """transformers' assisted-generation ``num_assistant_tokens_schedule="heuristic"``.

    Starts at 5 (transformers' default ``num_assistant_tokens``); after each request, +2 when every
    drafted token was accepted (``accepted == drafted > 0``), else -1, floored at 1 and capped at
    ``max_draft_length``. transformers applies the rule after every draft/verify round inside one
    generation; this controller acts once per request, so it applies it once per request on the
    request's totals. Results with unknown counts (``drafted``/``accepted`` == -1, e.g. failures or
    a backend that cannot count) leave the draft length unchanged.
    """

    name = "hf_heuristic"
    START_DRAFT_LENGTH = 5

    def __init__(self, max_draft_length: int = 8):
        self.max_draft_length = _check_max_draft_length(max_draft_length)
        self.reset()

    def config(self) -> dict[str, Any]:
        return {}

    def reset(self, seed: int | None = None) -> None:
        """Back to the start value (deterministic: seed unused)."""
        self.draft_len = min(self.START_DRAFT_LENGTH, self.max_draft_length)

    def act(self, observation: np.ndarray) -> int:
        return self.draft_len

    def update(self, draft_length: int, result: RequestResult, observation: np.ndarray) -> None:
        if result.drafted < 0 or result.accepted < 0:
            return
        if result.drafted > 0 and result.accepted == result.drafted:
            self.draft_len = min(self.draft_len + 2, self.max_draft_length)
        else:
            self.draft_len = max(self.draft_len - 1, 1)

    def state_dict(self) -> dict[str, Any]:
        return {"draft_len": self.draft_len}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "draft_len" not in state:
            raise ValueError("hf_heuristic state is missing 'draft_len'")
        self.draft_len = int(state["draft_len"])
