"""The observation of HaloSpec-v0: what a controller can know before choosing a draft length.

A float32 vector, feature ``i`` named ``OBSERVATION_FEATURES[i]``, bounded by ``OBSERVATION_LOW`` and
``OBSERVATION_HIGH``. Latencies are ratios to the episode's reference latency (the mean of its first
``REFERENCE_REQUESTS`` successful requests), so the features mean the same on a 3.5 s HTTP server,
a 200 ms embedded decoder and the simulator, and a policy trained on one runs on another.

=====  =========================  =======  ==================================================
index  name                       range    meaning
=====  =========================  =======  ==================================================
0      latency_last_ratio         0..10    last request latency / reference
1      latency_ema_ratio          0..10    EMA (alpha 0.4) of latency / reference
2      latency_p95_ratio          0..10    nearest-rank p95 of the last 10 latencies / reference
3      acceptance_last            0..1     accepted / drafted draft tokens of the last request
4      acceptance_ema             0..1     EMA (alpha 0.4) of the acceptance rate
5      tokens_per_round_norm      0..1     tokens per target pass / (max_draft_length + 1)
6      draft_length_last_norm     0..1     last draft length / max_draft_length
7      load                       0..1     contention level in force (scenario or measured)
8      progress                   0..1     measured requests / episode length (0 in warmup)
9      failed_last                0..1     1 if the last request failed
=====  =========================  =======  ==================================================
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from halospec_rl.backends.base import RequestResult

OBSERVATION_FEATURES = (
    "latency_last_ratio",
    "latency_ema_ratio",
    "latency_p95_ratio",
    "acceptance_last",
    "acceptance_ema",
    "tokens_per_round_norm",
    "draft_length_last_norm",
    "load",
    "progress",
    "failed_last",
)
MAX_LATENCY_RATIO = 10.0
OBSERVATION_LOW = np.zeros(len(OBSERVATION_FEATURES), dtype=np.float32)
OBSERVATION_HIGH = np.array([MAX_LATENCY_RATIO] * 3 + [1.0] * 7, dtype=np.float32)
EMA_ALPHA = 0.4
P95_WINDOW = 10
REFERENCE_REQUESTS = 5


class ObservationTracker:
    """Turns the stream of request results into the observation vector (see module docstring)."""

    def __init__(self, max_draft_length: int, episode_length: int):
        self.max_draft_length = max_draft_length
        self.episode_length = episode_length
        self.reset()

    def reset(self, load: float = 0.0) -> None:
        self._reference_sum = 0.0
        self._reference_n = 0
        self._latency_last = 0.0
        self._latency_ema = 0.0
        self._window: deque[float] = deque(maxlen=P95_WINDOW)
        self._acceptance_last = 0.5
        self._acceptance_ema = 0.5
        self._tokens_per_round = 1.0
        self._draft_length_last = 0
        self._load = load
        self._served = 0
        self._failed_last = 0.0

    def update(self, result: RequestResult, next_load: float, scored: bool = True) -> None:
        """Account for one served request; ``next_load`` is the level the next request will see.

        ``scored=False`` (a warmup request) feeds the latency features but not ``progress``, which
        counts the episode's measured requests only, so it means the same with and without warmup.
        """
        if scored:
            self._served += 1
        self._draft_length_last = result.draft_length
        self._load = next_load
        self._failed_last = 0.0 if result.success else 1.0
        if not result.success:
            return
        latency = result.latency_ms
        if self._reference_n < REFERENCE_REQUESTS:
            self._reference_sum += latency
            self._reference_n += 1
        self._latency_ema = latency if len(self._window) == 0 else (
            EMA_ALPHA * latency + (1.0 - EMA_ALPHA) * self._latency_ema
        )
        self._latency_last = latency
        self._window.append(latency)
        acceptance = result.acceptance_rate
        if acceptance is not None:
            self._acceptance_last = acceptance
            self._acceptance_ema = EMA_ALPHA * acceptance + (1.0 - EMA_ALPHA) * self._acceptance_ema
        tokens_per_round = result.tokens_per_round
        if tokens_per_round is not None:
            self._tokens_per_round = tokens_per_round

    def observation(self) -> np.ndarray:
        """The current observation, float32, shape ``(len(OBSERVATION_FEATURES),)``."""
        if self._window:
            reference = self._reference_sum / self._reference_n
            ordered = sorted(self._window)
            p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]
            last, ema = self._latency_last / reference, self._latency_ema / reference
            p95 = p95 / reference
        else:
            last = ema = p95 = 1.0
        values = (
            min(last, MAX_LATENCY_RATIO),
            min(ema, MAX_LATENCY_RATIO),
            min(p95, MAX_LATENCY_RATIO),
            self._acceptance_last,
            self._acceptance_ema,
            min(self._tokens_per_round / (self.max_draft_length + 1), 1.0),
            self._draft_length_last / self.max_draft_length,
            min(max(self._load, 0.0), 1.0),
            min(self._served / self.episode_length, 1.0),
            self._failed_last,
        )
        return np.array(values, dtype=np.float32)
