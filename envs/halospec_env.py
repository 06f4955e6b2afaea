"""HaloSpec-v0: choose the draft length of each request; reward is the negative SLO score.

* Action: ``Discrete(max_draft_length)``; action ``a`` serves the next request with draft length
  ``a + 1``.
* Observation: ``Box(OBSERVATION_LOW, OBSERVATION_HIGH, (10,), float32)``, see
  ``envs.observation`` for the meaning of each feature.
* Reward (``reward_mode="episode"``, the default): the episode's SLO score in seconds, spread over
  its steps so that the undiscounted return equals ``-score(episode latencies) / 1000`` exactly:
  step ``t`` gives ``-latency_ms / (T * 1000)`` and the last step also gives
  ``-(0.5 * p95 + 0.2 * stddev) / 1000``. A failed request counts as ``failure_penalty_ms``.
  ``reward_mode="window"`` gives ``-score(last window latencies) / 1000`` at every step, for
  continuing control.
* Episode: ``warmup_steps`` unscored requests (phase "warmup", draft length from the action,
  reward 0) then ``episode_length`` measured requests scheduled by the scenario; it terminates after
  the last one.
* ``info`` carries the raw request result: ``latency_ms``, ``success``, ``tokens``, ``drafted``,
  ``accepted``, ``rounds``, ``draft_length``, ``phase``, ``domain``, ``load``, ``error``, ``step``
  (1-based measured step, 0 during warmup), ``result`` (the ``RequestResult`` itself) and, at the
  end, ``episode_score``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.observation import OBSERVATION_HIGH, OBSERVATION_LOW, ObservationTracker
from halospec_rl.backends import BACKEND_NAMES, Backend, Prompt, make_backend
from halospec_rl.metrics import slo_score, tail_penalty_ms
from halospec_rl.scenarios import SCENARIO_NAMES, make_plan

REWARD_MODES = ("episode", "window")


class HaloSpecEnv(gym.Env):
    """Speculative-decoding draft-length control as a gymnasium environment (see module docstring).

    Args:
        backend: a backend name (``halospec_rl.backends.BACKEND_NAMES``) or an instance.
        scenario: a scenario name (``halospec_rl.scenarios.SCENARIO_NAMES``).
        episode_length: measured requests per episode (T).
        max_draft_length: the largest draft length an action can choose.
        reward_mode: "episode" or "window".
        window: requests in the window score (``reward_mode="window"``).
        failure_penalty_ms: latency charged for a failed request (HaloSpec's 60 s timeout).
        warmup_steps: unscored requests before the measured ones (HaloSpec: 5).
        max_tokens: completion tokens per request (HaloSpec: 64).
        backend_kwargs: passed to the backend factory when ``backend`` is a name.
        scenario_kwargs: scenario parameters (e.g. ``{"start_step": 6}``).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        backend: str | Backend = "simulated",
        scenario: str = "steady",
        episode_length: int = 100,
        max_draft_length: int = 8,
        reward_mode: str = "episode",
        window: int = 20,
        failure_penalty_ms: float = 60_000.0,
        warmup_steps: int = 0,
        max_tokens: int = 64,
        backend_kwargs: dict[str, Any] | None = None,
        scenario_kwargs: dict[str, Any] | None = None,
    ):
        if not isinstance(episode_length, (int, np.integer)) or episode_length < 1:
            raise ValueError(f"episode_length must be a positive integer, got {episode_length!r}")
        if not isinstance(max_draft_length, (int, np.integer)) or max_draft_length < 1:
            raise ValueError(f"max_draft_length must be a positive integer, got {max_draft_length!r}")
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"unknown reward_mode {reward_mode!r}; known: {', '.join(REWARD_MODES)}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window!r}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
        if failure_penalty_ms <= 0:
            raise ValueError(f"failure_penalty_ms must be > 0, got {failure_penalty_ms!r}")
        if scenario not in SCENARIO_NAMES:
            raise ValueError(f"unknown scenario {scenario!r}; known scenarios: {', '.join(SCENARIO_NAMES)}")
        self.scenario = scenario
        self.scenario_kwargs = dict(scenario_kwargs or {})
        make_plan(scenario, episode_length, seed=0, **self.scenario_kwargs)  # fail fast on bad params
        if isinstance(backend, str):
            if backend not in BACKEND_NAMES:
                raise ValueError(f"unknown backend {backend!r}; known backends: {', '.join(BACKEND_NAMES)}")
            backend = make_backend(backend, max_draft_length=max_draft_length, **(backend_kwargs or {}))
        if backend.max_draft_length < max_draft_length:
            raise ValueError(
                f"backend {backend.name!r} serves draft lengths up to {backend.max_draft_length}, "
                f"below max_draft_length={max_draft_length}"
            )
        self.backend = backend
        self.episode_length = int(episode_length)
        self.max_draft_length = int(max_draft_length)
        self.reward_mode = reward_mode
        self.window = int(window)
        self.failure_penalty_ms = float(failure_penalty_ms)
        self.warmup_steps = int(warmup_steps)
        self.max_tokens = int(max_tokens)

        self.action_space = gym.spaces.Discrete(self.max_draft_length)
        self.observation_space = gym.spaces.Box(OBSERVATION_LOW, OBSERVATION_HIGH, dtype=np.float32)
        self._tracker = ObservationTracker(self.max_draft_length, self.episode_length)
        self._plan = None
        self._t = 0

    # ------------------------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        plan_seed, backend_seed = (int(s) for s in self.np_random.integers(0, 2**31 - 1, size=2))
        self._plan = make_plan(self.scenario, self.episode_length, seed=plan_seed, **self.scenario_kwargs)
        self.backend.reset(backend_seed)
        self._t = 0
        self._scored_ms: list[float] = []
        self._applied_load: tuple[float, str] | None = None
        first_load = float(self._plan.load[0]) if self.warmup_steps == 0 else 0.0
        self._tracker.reset(load=first_load)
        return self._tracker.observation(), {"step": 0, "phase": self._phase_at(0)}

    def step(self, action):
        if self._plan is None:
            raise RuntimeError("call reset() before step()")
        if self._t >= self.warmup_steps + self.episode_length:
            raise RuntimeError("the episode has terminated; call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(
                f"action {action!r} is outside the action space Discrete({self.max_draft_length}) "
                f"(allowed: 0..{self.max_draft_length - 1}, meaning draft lengths 1..{self.max_draft_length})"
            )
        t = self._t
        measured = t - self.warmup_steps  # 0-based measured index, negative during warmup
        plan = self._plan
        if measured < 0:
            domain, prompt_seed, load, phase = plan.domains[0], int(plan.prompt_seeds[0]) + 1 + t, 0.0, "warmup"
        else:
            domain, prompt_seed = plan.domains[measured], int(plan.prompt_seeds[measured])
            load, phase = float(plan.load[measured]), plan.phases[measured]
        if (load, phase) != self._applied_load:  # real backends start/stop burners here: only on change
            self.backend.set_load(load, phase)
            self._applied_load = (load, phase)
        result = self.backend.generate(
            Prompt(domain=domain, seed=prompt_seed, max_tokens=self.max_tokens), int(action) + 1
        )
        self._t = t + 1
        terminated = self._t == self.warmup_steps + self.episode_length
        next_measured = measured + 1
        next_load = float(plan.load[next_measured]) if 0 <= next_measured < len(plan) else load
        self._tracker.update(result, next_load, scored=measured >= 0)

        reward = 0.0
        info = {
            "step": measured + 1 if measured >= 0 else 0,
            "latency_ms": result.latency_ms,
            "success": result.success,
            "tokens": result.tokens,
            "drafted": result.drafted,
            "accepted": result.accepted,
            "rounds": result.rounds,
            "draft_length": result.draft_length,
            "phase": phase,
            "domain": domain,
            "load": load,
            "error": result.error,
            "attempts": result.attempts,
            "result": result,
        }
        if measured >= 0:
            latency = result.latency_ms if result.success else self.failure_penalty_ms
            self._scored_ms.append(latency)
            if self.reward_mode == "episode":
                reward = -latency / (self.episode_length * 1000.0)
                if terminated:
                    reward -= tail_penalty_ms(self._scored_ms) / 1000.0
            else:
                reward = -slo_score(self._scored_ms[-self.window :]) / 1000.0
            if terminated:
                info["episode_score"] = slo_score(self._scored_ms)
        return self._tracker.observation(), reward, terminated, False, info

    def close(self) -> None:
        self.backend.close()

    # ------------------------------------------------------------------------------------ helpers
    def _phase_at(self, t: int) -> str:
        if t < self.warmup_steps:
            return "warmup"
        if self._plan is None:
            return "steady"
        return self._plan.phases[min(t - self.warmup_steps, len(self._plan) - 1)]
