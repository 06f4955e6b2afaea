"""Multi-armed bandits whose arms are the draft lengths 1..max_draft_length.

They minimise HaloSpec's SLO score ``avg + 0.5 * p95 + 0.2 * stddev`` (design.md section 3), not
only the mean latency. With a Gaussian model of an arm's latencies, ``p95 ~ mean + Z95 * std``, so
an arm's score estimate is::

    score = mean + 0.5 * (mean + Z95 * std) + 0.2 * std = MEAN_WEIGHT * mean + STD_WEIGHT * std

The index-based bandits (epsilon-greedy, the UCB family, Thompson sampling) compute it from each
arm's running mean and standard deviation (``ArmStatistics``). EXP3 learns from one number per
request, so it uses a per-request loss whose expectation is that score for a Gaussian arm:
``MEAN_WEIGHT * latency + ABS_DEVIATION_WEIGHT * |latency - arm mean|`` with
``ABS_DEVIATION_WEIGHT = STD_WEIGHT * sqrt(pi/2)`` (because ``E|X - mean| = std * sqrt(2/pi)``).
LinUCB regresses both parts on the context (see its docstring).

Scale: every score is divided by a latency scale learned online, the mean latency of the first
``scale_requests`` successful requests, so indices and exploration constants mean the same on a
3.5 s HTTP server and a 200 ms embedded decoder (a score of 1.5 is "like the reference latency").

Failures count as a penalty latency: ``failure_penalty_ms`` when given, else twice the worst
successful latency seen so far; failures before any success wait until the first success prices them.

Exploration start: by default every arm is tried once before the indices decide, in the order
``initial_draft_length``, +1, -1, +2, ... (HaloSpec's 4 first). That sweep costs ``max_draft_length``
requests, most of a 10-request HaloSpec mode; ``prior_count > 0`` replaces it with a prior centred on
``initial_draft_length``: every arm starts with ``prior_count`` pseudo-requests of latency
``scale * (1 + prior_slope * |k - initial_draft_length|)`` and std ``prior_std * scale``, so the
learner starts on the default arm and leaves it only when data says so.

``reset(seed)`` starts a fresh learner (evaluation runs one per episode); after ``load_state_dict``
it restarts from the loaded state instead (a warm start), with a freshly seeded random stream.
Arrays are float64 of shape ``(n_arms,)``; arm ``i`` is draft length ``i + 1``.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections import deque
from typing import Any, ClassVar

import numpy as np

from envs.observation import OBSERVATION_FEATURES
from halospec_rl.backends.base import RequestResult
from halospec_rl.metrics import P95_WEIGHT, STDDEV_WEIGHT

Z95 = 1.6448536269514722
"""Standard normal 95% quantile: a Gaussian's p95 is ``mean + Z95 * std``."""
MEAN_WEIGHT = 1.0 + P95_WEIGHT
STD_WEIGHT = P95_WEIGHT * Z95 + STDDEV_WEIGHT
ABS_DEVIATION_WEIGHT = STD_WEIGHT * math.sqrt(math.pi / 2.0)
MIN_NOISE = 0.01
"""Floor of the pooled latency std (scale units) used for confidence widths: 1% of the scale."""


def gaussian_score(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """HaloSpec's score of Gaussian latencies, ``avg + 0.5 * p95 + 0.2 * stddev``, elementwise."""
    return MEAN_WEIGHT * mean + STD_WEIGHT * std


class ArmStatistics:
    """Weighted count, sum and sum of squares of latencies (ms) per arm, vectorised over arms.

    ``discount < 1`` multiplies every arm's weights by ``discount`` before each new observation
    (discounted UCB, Kocsis & Szepesvari 2006); ``window`` keeps only the last ``window``
    observations of all arms (sliding-window UCB, Garivier & Moulines 2011). Both forget old data so
    the learner can follow drift; the defaults keep everything (stationary).
    """

    def __init__(self, n_arms: int, discount: float = 1.0, window: int | None = None):
        self.n_arms = n_arms
        self.discount = discount
        self.window = window
        self.count = np.zeros(n_arms)
        self.total = np.zeros(n_arms)
        self.total_sq = np.zeros(n_arms)
        self._recent: deque[tuple[int, float]] = deque()

    def add(self, arm: int, value: float) -> None:
        if self.discount < 1.0:
            self.count *= self.discount
            self.total *= self.discount
            self.total_sq *= self.discount
        self.count[arm] += 1.0
        self.total[arm] += value
        self.total_sq[arm] += value * value
        if self.window is not None:
            self._recent.append((arm, value))
            if len(self._recent) > self.window:
                old_arm, old = self._recent.popleft()
                self.count[old_arm] -= 1.0
                if self.count[old_arm] <= 0.0:
                    # Reset exactly so float residues of the subtraction cannot look like data.
                    self.count[old_arm] = self.total[old_arm] = self.total_sq[old_arm] = 0.0
                else:
                    self.total[old_arm] -= old
                    self.total_sq[old_arm] -= old * old

    def moments(
        self, prior_count: float, prior_mean: np.ndarray, prior_var: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(n, mean, std)`` per arm, data pooled with ``prior_count`` pseudo-observations of mean
        ``prior_mean`` and variance ``prior_var``; mean and std are 0 where ``n == 0``."""
        n = self.count + prior_count
        safe = np.where(n > 0.0, n, 1.0)
        mean = (self.total + prior_count * prior_mean) / safe
        second = (self.total_sq + prior_count * (prior_var + prior_mean * prior_mean)) / safe
        std = np.sqrt(np.maximum(second - mean * mean, 0.0))
        return n, mean, std

    def state_dict(self) -> dict[str, Any]:
        return {
            "count": self.count.tolist(),
            "total": self.total.tolist(),
            "total_sq": self.total_sq.tolist(),
            "recent": [[arm, value] for arm, value in self._recent],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = np.array(state["count"], dtype=float)
        self.total = np.array(state["total"], dtype=float)
        self.total_sq = np.array(state["total_sq"], dtype=float)
        self._recent = deque((int(arm), float(value)) for arm, value in state["recent"])
        if self.count.shape != (self.n_arms,):
            raise ValueError(f"arm statistics for {self.count.shape[0]} arms, expected {self.n_arms}")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


class Bandit(ABC):
    """Shared machinery: latency pricing, scale, arm statistics, exploration start, state.

    Subclasses choose an arm (``_choose``) and may learn more from each request (``_learn``).
    """

    name: ClassVar[str]
    sweep_first: ClassVar[bool] = True
    """Try every arm once before ``_choose`` decides (not needed by learners that explore by design)."""

    def __init__(
        self,
        max_draft_length: int = 8,
        *,
        initial_draft_length: int = 4,
        prior_count: float = 0.0,
        prior_slope: float = 0.05,
        prior_std: float = 0.1,
        failure_penalty_ms: float | None = None,
        scale_requests: int = 5,
    ):
        _check(
            isinstance(max_draft_length, int)
            and not isinstance(max_draft_length, bool)
            and max_draft_length >= 1,
            f"max_draft_length must be an integer >= 1, got {max_draft_length!r}",
        )
        _check(
            isinstance(initial_draft_length, int) and 1 <= initial_draft_length <= max_draft_length,
            f"initial_draft_length must be in 1..{max_draft_length}, got {initial_draft_length!r}",
        )
        _check(prior_count >= 0, f"prior_count must be >= 0, got {prior_count!r}")
        _check(prior_slope >= 0, f"prior_slope must be >= 0, got {prior_slope!r}")
        _check(prior_std >= 0, f"prior_std must be >= 0, got {prior_std!r}")
        _check(
            failure_penalty_ms is None or failure_penalty_ms > 0,
            f"failure_penalty_ms must be > 0 or None, got {failure_penalty_ms!r}",
        )
        _check(
            isinstance(scale_requests, int) and scale_requests >= 1,
            f"scale_requests must be an integer >= 1, got {scale_requests!r}",
        )
        self.max_draft_length = max_draft_length
        self.initial_draft_length = initial_draft_length
        self.prior_count = float(prior_count)
        self.prior_slope = float(prior_slope)
        self.prior_std = float(prior_std)
        self.failure_penalty_ms = failure_penalty_ms
        self.scale_requests = scale_requests
        arms = np.arange(max_draft_length)
        distance = np.abs(arms - (initial_draft_length - 1))
        # The prior's latency ratio per arm and the sweep order (nearest the default first, +1 before -1).
        self._prior_ratio = 1.0 + self.prior_slope * distance
        self._sweep_order = np.lexsort((arms < initial_draft_length - 1, distance))
        self._warm_state: dict[str, Any] | None = None
        self.reset()

    @property
    def n_arms(self) -> int:
        return self.max_draft_length

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments except ``max_draft_length`` (what ``save_policy`` records)."""
        return {
            "initial_draft_length": self.initial_draft_length,
            "prior_count": self.prior_count,
            "prior_slope": self.prior_slope,
            "prior_std": self.prior_std,
            "failure_penalty_ms": self.failure_penalty_ms,
            "scale_requests": self.scale_requests,
        }

    # -- protocol ---------------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Start a fresh learner (or the warm-start state given to ``load_state_dict``), seeded."""
        self.stats = self._new_statistics()
        self._scale_sum = 0.0
        self._scale_n = 0
        self._worst_ms: float | None = None
        self._pending: list[tuple[int, list[float] | None]] = []
        self._context: np.ndarray | None = None
        self._reset_learner()
        if self._warm_state is not None:
            self._load(self._warm_state)
        self._rng = np.random.default_rng(seed)

    def act(self, observation: np.ndarray) -> int:
        # A copy: the context must still be the one acted on when update() arrives.
        self._context = None if observation is None else np.array(observation, dtype=float)
        # The prior is in units of the scale, so until the first success it sweeps too (the default
        # arm first, then the next one if that failed).
        if self.sweep_first and (self.prior_count == 0.0 or self.scale is None):
            tried = self.stats.count > 0.0
            for arm, _ in self._pending:
                tried[arm] = True
            untried = self._sweep_order[~tried[self._sweep_order]]
            if untried.size:
                return int(untried[0]) + 1
        return self._choose(observation) + 1

    def update(self, draft_length: int, result: RequestResult, observation: np.ndarray) -> None:
        arm = draft_length - 1
        _check(0 <= arm < self.n_arms, f"draft_length must be in 1..{self.n_arms}, got {draft_length!r}")
        context = self._context
        if result.success:
            latency = float(result.latency_ms)
            if self._scale_n < self.scale_requests:
                self._scale_sum += latency
                self._scale_n += 1
            self._worst_ms = latency if self._worst_ms is None else max(self._worst_ms, latency)
            pending, self._pending = self._pending, []
            for pending_arm, pending_context in pending:
                ctx = None if pending_context is None else np.asarray(pending_context)
                self._observe(pending_arm, self._failure_latency(), ctx)
            self._observe(arm, latency, context)
        elif self._worst_ms is None:
            # No success yet: no scale (and maybe no worst latency) to price the failure with.
            self._pending.append((arm, None if context is None else context.tolist()))
        else:
            self._observe(arm, self._failure_latency(), context)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable learner state (lists and numbers)."""
        return {
            "stats": self.stats.state_dict(),
            "scale_sum": self._scale_sum,
            "scale_n": self._scale_n,
            "worst_ms": self._worst_ms,
            "pending": [[arm, ctx] for arm, ctx in self._pending],
            "rng": self._rng.bit_generator.state,
            "learner": self._learner_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state`` and make it the warm start that ``reset`` returns to."""
        try:
            self._load(state)
            self._rng.bit_generator.state = state["rng"]
        except (KeyError, TypeError) as error:
            raise ValueError(f"{self.name} state is malformed: {error!r}") from error
        self._warm_state = copy.deepcopy(state)

    # -- shared estimates -------------------------------------------------------------------------

    @property
    def scale(self) -> float | None:
        """Latency scale (ms): mean of the first ``scale_requests`` successes; None before any."""
        # Floored so that a backend reporting 0 ms cannot divide by zero.
        return max(self._scale_sum / self._scale_n, 1e-6) if self._scale_n else None

    def moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(n, mean, std)`` per arm in units of the scale, the prior pooled in."""
        scale = self.scale or 1.0
        n, mean, std = self.stats.moments(
            self.prior_count, self._prior_ratio * scale, np.full(self.n_arms, (self.prior_std * scale) ** 2)
        )
        return n, mean / scale, std / scale

    def score_estimates(self) -> np.ndarray:
        """Estimated SLO score per arm in units of the scale (lower is better), shape ``(n_arms,)``."""
        _, mean, std = self.moments()
        return gaussian_score(mean, std)

    # -- internals --------------------------------------------------------------------------------

    def _failure_latency(self) -> float:
        if self.failure_penalty_ms is not None:
            return float(self.failure_penalty_ms)
        return 2.0 * self._worst_ms

    def _observe(self, arm: int, latency_ms: float, context: np.ndarray | None) -> None:
        self._learn(arm, latency_ms, context)
        self.stats.add(arm, latency_ms)

    def _load(self, state: dict[str, Any]) -> None:
        self.stats.load_state_dict(state["stats"])
        self._scale_sum = float(state["scale_sum"])
        self._scale_n = int(state["scale_n"])
        self._worst_ms = state["worst_ms"]
        self._pending = [(int(arm), ctx) for arm, ctx in state["pending"]]
        self._load_learner(state["learner"])

    def _new_statistics(self) -> ArmStatistics:
        """Empty arm statistics; the drift-following bandits forget old data."""
        return ArmStatistics(self.n_arms)

    @abstractmethod
    def _choose(self, observation: np.ndarray) -> int:
        """The arm index (0-based) to pull next."""

    def _learn(self, arm: int, latency_ms: float, context: np.ndarray | None) -> None:  # noqa: B027 - optional hook
        """Extra learning from one priced request, called before the arm statistics include it."""

    def _reset_learner(self) -> None:  # noqa: B027 - optional hook
        """Reset subclass state beyond the arm statistics."""

    def _learner_state(self) -> dict[str, Any]:
        return {}

    def _load_learner(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what ``_learner_state`` returned."""


class EpsilonGreedy(Bandit):
    """With probability ``epsilon`` a uniformly random arm, else the lowest estimated score."""

    name = "epsilon_greedy"

    def __init__(self, max_draft_length: int = 8, *, epsilon: float = 0.1, **common: Any):
        _check(0.0 <= epsilon <= 1.0, f"epsilon must be in [0, 1], got {epsilon!r}")
        self.epsilon = float(epsilon)
        super().__init__(max_draft_length, **common)

    def config(self) -> dict[str, Any]:
        return super().config() | {"epsilon": self.epsilon}

    def _choose(self, observation: np.ndarray) -> int:
        if self._rng.random() < self.epsilon:
            return int(self._rng.integers(self.n_arms))
        return int(np.argmin(self.score_estimates()))


class UCB1(Bandit):
    """UCB1 on the negated score: ``-score + c * noise * sqrt(2 ln t / n)``, highest index wins.

    Rewards are not in [0, 1] as textbook UCB1 assumes, so the width is scaled by the measured
    noise, ``MEAN_WEIGHT`` times the latency std pooled over arms (as UCB1-Normal scales by the
    std), making ``c`` dimensionless and adaptive to how noisy the backend is; ``c = 1`` is the
    sub-Gaussian textbook width. Unexplored arms (``n == 0``) have an infinite index; ``t`` is the total
    (weighted) count, which the drift-following subclasses keep bounded.
    """

    name = "ucb1"

    def __init__(self, max_draft_length: int = 8, *, c: float = 1.0, **common: Any):
        _check(c >= 0.0, f"c must be >= 0, got {c!r}")
        self.c = float(c)
        super().__init__(max_draft_length, **common)

    def config(self) -> dict[str, Any]:
        return super().config() | {"c": self.c}

    def _choose(self, observation: np.ndarray) -> int:
        n, mean, std = self.moments()
        score = gaussian_score(mean, std)
        total = float(n.sum())
        # Noise of a score estimate: MEAN_WEIGHT times the latency std pooled over arms, floored.
        pooled_std = math.sqrt(float(n @ (std * std)) / total) if total > 0.0 else 0.0
        noise = MEAN_WEIGHT * max(pooled_std, MIN_NOISE)
        bonus = np.full(self.n_arms, np.inf)
        seen = n > 0.0
        bonus[seen] = self.c * noise * np.sqrt(2.0 * math.log(max(total, 1.0)) / n[seen])
        return int(np.argmax(-score + bonus))


class SlidingWindowUCB(UCB1):
    """UCB1 over the last ``window`` requests only, so it re-finds the best arm after drift."""

    name = "sw_ucb"

    def __init__(self, max_draft_length: int = 8, *, window: int = 50, **kwargs: Any):
        _check(
            isinstance(window, int) and not isinstance(window, bool) and window >= 1,
            f"window must be an integer >= 1, got {window!r}",
        )
        self.window = window
        super().__init__(max_draft_length, **kwargs)

    def config(self) -> dict[str, Any]:
        return super().config() | {"window": self.window}

    def _new_statistics(self) -> ArmStatistics:
        return ArmStatistics(self.n_arms, window=self.window)


class DiscountedUCB(UCB1):
    """UCB1 with every past request's weight multiplied by ``gamma`` per new request (drift)."""

    name = "discounted_ucb"

    def __init__(self, max_draft_length: int = 8, *, gamma: float = 0.98, **kwargs: Any):
        _check(0.0 < gamma <= 1.0, f"gamma must be in (0, 1], got {gamma!r}")
        self.gamma = float(gamma)
        super().__init__(max_draft_length, **kwargs)

    def config(self) -> dict[str, Any]:
        return super().config() | {"gamma": self.gamma}

    def _new_statistics(self) -> ArmStatistics:
        return ArmStatistics(self.n_arms, discount=self.gamma)


class GaussianThompson(Bandit):
    """Gaussian Thompson sampling: sample each arm's mean from ``N(mean, (std^2 + prior_std^2) / n)``
    (scale units), add the arm's tail term ``STD_WEIGHT * std`` and pull the lowest sampled score.

    ``prior_std`` (of the shared constructor) also keeps an arm seen once from looking certain.
    """

    name = "thompson"

    def _choose(self, observation: np.ndarray) -> int:
        n, mean, std = self.moments()
        spread = np.sqrt((std * std + self.prior_std**2) / np.maximum(n, 1e-9))
        sampled_mean = mean + spread * self._rng.standard_normal(self.n_arms)
        return int(np.argmin(gaussian_score(sampled_mean, std)))


class EXP3(Bandit):
    """EXP3 (Auer et al. 2002) for adversarial, e.g. drifting, latencies.

    Arm probabilities ``(1 - gamma) * softmax(log_weights) + gamma / K``; after a pull the arm's log
    weight shrinks by ``learning_rate * l / p_arm`` with ``l = clip((loss - loss_low) / (loss_high -
    loss_low), 0, 1)`` from the per-request loss (scale units; the reference latency's loss is 1.5).
    This is EXP3 on losses ``l = 1 - reward``: the same algorithm in expectation, but an improbable
    arm's lucky pull cannot make its weight explode as a gain estimate ``reward / p`` does. It needs
    no initial sweep. The textbook ``learning_rate = gamma / K`` learns far too slowly for arms whose
    scores differ by a few percent; 0.05 is the default.
    """

    name = "exp3"
    sweep_first = False

    def __init__(
        self,
        max_draft_length: int = 8,
        *,
        gamma: float = 0.1,
        learning_rate: float = 0.05,
        loss_low: float = 1.0,
        loss_high: float = 2.5,
        **common: Any,
    ):
        _check(0.0 < gamma <= 1.0, f"gamma must be in (0, 1], got {gamma!r}")
        _check(learning_rate > 0, f"learning_rate must be > 0, got {learning_rate!r}")
        _check(loss_low < loss_high, f"loss_low must be < loss_high, got {loss_low!r} >= {loss_high!r}")
        self.gamma = float(gamma)
        self.learning_rate = float(learning_rate)
        self.loss_low = float(loss_low)
        self.loss_high = float(loss_high)
        super().__init__(max_draft_length, **common)

    def config(self) -> dict[str, Any]:
        return super().config() | {
            "gamma": self.gamma,
            "learning_rate": self.learning_rate,
            "loss_low": self.loss_low,
            "loss_high": self.loss_high,
        }

    def probabilities(self) -> np.ndarray:
        """The current arm probabilities, shape ``(n_arms,)``."""
        weights = np.exp(self._log_weights - self._log_weights.max())
        return (1.0 - self.gamma) * weights / weights.sum() + self.gamma / self.n_arms

    def _choose(self, observation: np.ndarray) -> int:
        return int(self._rng.choice(self.n_arms, p=self.probabilities()))

    def _request_loss(self, arm: int, latency_ms: float) -> float:
        """Per-request loss (scale units) whose expectation is the arm's Gaussian SLO score."""
        n, mean, _ = self.moments()
        ratio = latency_ms / (self.scale or latency_ms)
        # An arm's first request has no mean to deviate from: it is charged its mean part only.
        deviation = abs(ratio - mean[arm]) if n[arm] > 0.0 else 0.0
        return MEAN_WEIGHT * ratio + ABS_DEVIATION_WEIGHT * deviation

    def _learn(self, arm: int, latency_ms: float, context: np.ndarray | None) -> None:
        loss = self._request_loss(arm, latency_ms)
        unit_loss = min(max((loss - self.loss_low) / (self.loss_high - self.loss_low), 0.0), 1.0)
        self._log_weights[arm] -= self.learning_rate * unit_loss / self.probabilities()[arm]

    def _reset_learner(self) -> None:
        self._log_weights = np.zeros(self.n_arms)

    def _learner_state(self) -> dict[str, Any]:
        return {"log_weights": self._log_weights.tolist()}

    def _load_learner(self, state: dict[str, Any]) -> None:
        self._log_weights = np.array(state["log_weights"], dtype=float)


class LinUCB(Bandit):
    """Disjoint LinUCB (Li et al. 2010) with a risk-aware, context-dependent score.

    Per arm, two ridge regressions on the context ``x = [observation, 1]`` (shape ``(n_features +
    1,)``) sharing ``A_k = ridge * I + sum x x'``: the latency ratio (minus 1, so the prior ``theta =
    0`` means "the reference latency") and the absolute deviation of the latency ratio from the
    mean prediction for that context. The score in context ``x`` is ``MEAN_WEIGHT * mean(x) +
    ABS_DEVIATION_WEIGHT * deviation(x)`` (the Gaussian SLO score, with ``E|X - mean| = std *
    sqrt(2/pi)``), and the pulled arm is ``argmax -score + alpha * sqrt(x' A_k^-1 x)``.

    Deviations are measured from the context's prediction, not the arm's overall mean, so a latency
    swing that the context explains (load) is not mistaken for risk. ``alpha`` is in scale units and
    not multiplied by the measured noise as in ``UCB1``: LinUCB's width must also cover the bias of
    the ridge prior (an arm seen once, in another context), which does not shrink with the noise.
    ``A_k^-1`` is kept directly (Sherman-Morrison updates).
    """

    name = "linucb"

    def __init__(
        self,
        max_draft_length: int = 8,
        *,
        alpha: float = 0.5,
        ridge: float = 1.0,
        n_features: int = len(OBSERVATION_FEATURES),
        **common: Any,
    ):
        _check(alpha >= 0.0, f"alpha must be >= 0, got {alpha!r}")
        _check(ridge > 0.0, f"ridge must be > 0, got {ridge!r}")
        _check(
            isinstance(n_features, int) and n_features >= 0, f"n_features must be >= 0, got {n_features!r}"
        )
        self.alpha = float(alpha)
        self.ridge = float(ridge)
        self.n_features = n_features
        super().__init__(max_draft_length, **common)

    def config(self) -> dict[str, Any]:
        return super().config() | {"alpha": self.alpha, "ridge": self.ridge, "n_features": self.n_features}

    def _features(self, observation: np.ndarray) -> np.ndarray:
        x = np.asarray(observation, dtype=float).reshape(-1)
        _check(
            x.shape == (self.n_features,),
            f"linucb expects an observation of shape ({self.n_features},), got {x.shape}",
        )
        return np.append(x, 1.0)

    def _choose(self, observation: np.ndarray) -> int:
        x = self._features(observation)
        a_inv_x = self._a_inv @ x  # (K, d); A_k^-1 is symmetric, so theta_k . x = b_k . (A_k^-1 x)
        mean_offset, deviation = np.einsum("kcd,kd->ck", self._b, a_inv_x)
        score = MEAN_WEIGHT * (1.0 + mean_offset) + ABS_DEVIATION_WEIGHT * deviation
        width = np.sqrt(np.maximum(a_inv_x @ x, 0.0))
        return int(np.argmax(-score + self.alpha * width))

    def _learn(self, arm: int, latency_ms: float, context: np.ndarray | None) -> None:
        _check(context is not None, "linucb needs act(observation) before update")
        x = self._features(context)
        a_inv_x = self._a_inv[arm] @ x
        ratio = latency_ms / self.scale
        residual = abs(ratio - 1.0 - self._b[arm, 0] @ a_inv_x)
        self._a_inv[arm] -= np.outer(a_inv_x, a_inv_x) / (1.0 + x @ a_inv_x)
        self._b[arm, 0] += (ratio - 1.0) * x
        self._b[arm, 1] += residual * x

    def _reset_learner(self) -> None:
        d = self.n_features + 1
        # The prior: prior_count pseudo-requests per arm in the bias-only context, with the latency
        # ratio and spread of the shared prior (``Bandit`` docstring); none when prior_count is 0.
        a = np.eye(d) * self.ridge
        a[-1, -1] += self.prior_count
        self._a_inv = np.tile(np.linalg.inv(a), (self.n_arms, 1, 1))
        self._b = np.zeros((self.n_arms, 2, d))  # [:, 0] latency ratio - 1, [:, 1] absolute deviation
        self._b[:, 0, -1] = self.prior_count * (self._prior_ratio - 1.0)
        self._b[:, 1, -1] = self.prior_count * self.prior_std * math.sqrt(2.0 / math.pi)

    def _learner_state(self) -> dict[str, Any]:
        return {"a_inv": self._a_inv.tolist(), "b": self._b.tolist()}

    def _load_learner(self, state: dict[str, Any]) -> None:
        self._a_inv = np.array(state["a_inv"], dtype=float)
        self._b = np.array(state["b"], dtype=float)


BANDITS: dict[str, type[Bandit]] = {
    cls.name: cls
    for cls in (EpsilonGreedy, UCB1, SlidingWindowUCB, DiscountedUCB, GaussianThompson, EXP3, LinUCB)
}
"""Bandit classes by policy name."""
