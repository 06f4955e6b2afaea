"""HaloSpec-v0 (envs): API checks, exact reward decomposition, determinism, common random numbers,
window rewards, warmup, failure penalty and clear errors for bad input."""

from __future__ import annotations

import dataclasses
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs import HaloSpecEnv
from halospec_rl.backends import BACKEND_NAMES, Prompt, RequestResult
from halospec_rl.backends.simulated import SimulatedBackend
from halospec_rl.metrics import slo_score
from halospec_rl.scenarios import SCENARIO_NAMES


def rollout(env: gym.Env, seed: int, actions):
    obs, info = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], [info]
    for t, action in enumerate(actions):
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs), (t, obs)
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        assert not truncated
        assert terminated == (t == len(actions) - 1)
    return observations, rewards, infos


def random_actions(n: int, seed: int, high: int = 8) -> list[int]:
    return np.random.default_rng(seed).integers(0, high, size=n).tolist()


def scored_latencies(infos, penalty_ms: float = 60_000.0) -> list[float]:
    return [i["latency_ms"] if i["success"] else penalty_ms for i in infos[1:] if i["phase"] != "warmup"]


# ----------------------------------------------------------------------------------------- API checks
def test_registered_and_made_by_gymnasium():
    assert envs.ENV_ID == "HaloSpec-v0" and "HaloSpec-v0" in gym.registry
    env = gym.make("HaloSpec-v0", scenario="load_spike", episode_length=12)
    assert isinstance(env.unwrapped, HaloSpecEnv)
    assert env.action_space == gym.spaces.Discrete(8)
    assert env.observation_space.dtype == np.float32
    assert np.isfinite(env.observation_space.low).all() and np.isfinite(env.observation_space.high).all()
    _, _, infos = rollout(env, 0, [3] * 12)
    assert [i["draft_length"] for i in infos[1:]] == [4] * 12  # action a = draft length a + 1
    env.close()


@pytest.mark.parametrize("scenario", ["steady", "load_spike"])
def test_gymnasium_check_env(scenario):
    made = gym.make("HaloSpec-v0", scenario=scenario, episode_length=20, backend_kwargs={"preset": "gpu-7b"})
    gym_check_env(made.unwrapped, skip_render_check=True)
    gym_check_env(HaloSpecEnv(scenario=scenario, episode_length=20, warmup_steps=2), skip_render_check=True)


@pytest.mark.parametrize("scenario", ["steady", "domain_shift"])
def test_stable_baselines3_check_env(scenario):
    made = gym.make("HaloSpec-v0", scenario=scenario, episode_length=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no complaint at all, not only no exception
        sb3_check_env(made.unwrapped, warn=True)
        sb3_check_env(HaloSpecEnv(scenario=scenario, episode_length=20, max_draft_length=6), warn=True)


def test_info_carries_the_raw_request_result():
    env = HaloSpecEnv(scenario="load_spike", episode_length=10)
    _, _, infos = rollout(env, 1, [1] * 10)
    for step, info in enumerate(infos[1:], start=1):
        assert info["step"] == step
        for key in ("latency_ms", "tokens", "drafted", "accepted", "rounds", "phase", "success", "domain", "load"):
            assert key in info
        assert info["latency_ms"] > 0 and info["tokens"] == 64 and info["success"] is True
        assert 0 <= info["accepted"] <= info["drafted"]
        result = info["result"]
        assert isinstance(result, RequestResult)
        assert (result.latency_ms, result.draft_length) == (info["latency_ms"], 2)
    assert infos[-1]["episode_score"] == pytest.approx(slo_score(scored_latencies(infos)))


# ------------------------------------------------------------------------------------------- rewards
@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_return_equals_minus_score_over_1000(scenario, seed):
    env = HaloSpecEnv(scenario=scenario, episode_length=37, backend_kwargs={"preset": "halospec-lemonade"})
    _, rewards, infos = rollout(env, seed, random_actions(37, seed))
    latencies = scored_latencies(infos)
    assert len(latencies) == 37
    assert sum(rewards) == pytest.approx(-slo_score(latencies) / 1000, abs=1e-9, rel=0)


@pytest.mark.parametrize("episode_length", [1, 2, 20])
def test_return_identity_for_short_and_long_episodes(episode_length):
    env = HaloSpecEnv(episode_length=episode_length, backend_kwargs={"preset": "gpu-7b"})
    _, rewards, infos = rollout(env, 4, random_actions(episode_length, 4))
    assert sum(rewards) == pytest.approx(-slo_score(scored_latencies(infos)) / 1000, abs=1e-9, rel=0)
    # every step pays its latency, the last also the tail part of the score
    assert all(r < 0 for r in rewards)


def test_warmup_steps_give_zero_reward_and_are_not_scored():
    env = HaloSpecEnv(scenario="load_spike", episode_length=15, warmup_steps=5)
    obs, info = env.reset(seed=2)
    assert info["phase"] == "warmup"
    _, rewards, infos = rollout(env, 2, random_actions(20, 2))
    warm = infos[1:6]
    assert [i["phase"] for i in warm] == ["warmup"] * 5
    assert [i["step"] for i in warm] == [0] * 5
    assert rewards[:5] == [0.0] * 5
    assert [i["load"] for i in warm] == [0.0] * 5
    assert [i["step"] for i in infos[6:]] == list(range(1, 16))
    # the measured part follows the scenario: load from measured step 6
    assert [i["phase"] for i in infos[6:]] == ["steady"] * 5 + ["load"] * 6 + ["recovery"] * 4
    latencies = scored_latencies(infos)
    assert len(latencies) == 15
    assert sum(rewards) == pytest.approx(-slo_score(latencies) / 1000, abs=1e-9, rel=0)


def test_window_reward_mode():
    env = HaloSpecEnv(scenario="bursty", episode_length=30, reward_mode="window", window=5)
    _, rewards, infos = rollout(env, 3, random_actions(30, 3))
    latencies = scored_latencies(infos)
    for t, reward in enumerate(rewards):
        expected = -slo_score(latencies[max(0, t - 4) : t + 1]) / 1000
        assert reward == pytest.approx(expected, abs=1e-12), t


@dataclasses.dataclass
class FlakyBackend:
    """The simulator, failing every ``every``-th request like an HTTP server that timed out."""

    inner: SimulatedBackend
    every: int = 4
    name: str = "flaky"

    def __post_init__(self):
        self.max_draft_length = self.inner.max_draft_length
        self.calls = 0

    def reset(self, seed=None):
        self.calls = 0
        self.inner.reset(seed)

    def set_load(self, level, phase="steady"):
        self.inner.set_load(level, phase)

    def generate(self, prompt: Prompt, draft_length: int) -> RequestResult:
        self.calls += 1
        result = self.inner.generate(prompt, draft_length)
        if self.calls % self.every == 0:
            return dataclasses.replace(result, success=False, tokens=0, latency_ms=1.0, error="timed out")
        return result

    def close(self):
        pass


def test_failed_requests_cost_the_penalty_latency():
    env = HaloSpecEnv(backend=FlakyBackend(SimulatedBackend(preset="gpu-7b")), episode_length=12,
                      failure_penalty_ms=5_000.0)
    observations, rewards, infos = rollout(env, 0, random_actions(12, 0))
    failed = [i for i in infos[1:] if not i["success"]]
    assert len(failed) == 3 and all(i["error"] == "timed out" for i in failed)
    latencies = scored_latencies(infos, penalty_ms=5_000.0)
    assert sum(rewards) == pytest.approx(-slo_score(latencies) / 1000, abs=1e-9, rel=0)
    assert rewards[3] == pytest.approx(-5_000.0 / (12 * 1000))
    assert observations[4][9] == 1.0  # failed_last
    assert observations[5][9] == 0.0


# --------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("scenario", ["mixed", "load_spike"])
def test_same_seed_same_actions_same_trajectory(scenario):
    actions = random_actions(25, 7)
    a = rollout(HaloSpecEnv(scenario=scenario, episode_length=25, warmup_steps=2), 11, actions[:2] + actions)
    b = rollout(HaloSpecEnv(scenario=scenario, episode_length=25, warmup_steps=2), 11, actions[:2] + actions)
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    assert a[1] == b[1]
    assert a[2] == b[2]
    # and the same env reset with the same seed replays it too
    env = HaloSpecEnv(scenario=scenario, episode_length=25, warmup_steps=2)
    rollout(env, 99, actions[:2] + actions)
    c = rollout(env, 11, actions[:2] + actions)
    assert a[1] == c[1] and a[2] == c[2]


def workload(infos):
    return [(i["domain"], i["phase"], i["load"]) for i in infos[1:]]


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_same_seed_different_actions_same_workload(scenario):
    env = HaloSpecEnv(scenario=scenario, episode_length=60)
    _, _, infos_a = rollout(env, 5, [0] * 60)
    _, _, infos_b = rollout(env, 5, random_actions(60, 1))
    _, _, infos_c = rollout(HaloSpecEnv(scenario=scenario, episode_length=60), 5, [7] * 60)
    assert workload(infos_a) == workload(infos_b) == workload(infos_c)
    assert [i["draft_length"] for i in infos_a[1:]] != [i["draft_length"] for i in infos_b[1:]]


def test_other_seed_other_workload():
    env = HaloSpecEnv(scenario="mixed", episode_length=40)
    _, _, a = rollout(env, 0, [3] * 40)
    _, _, b = rollout(env, 1, [3] * 40)
    assert workload(a) != workload(b)
    assert [i["latency_ms"] for i in a[1:]] != [i["latency_ms"] for i in b[1:]]


# ---------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("action", [8, -1, 2.5, "3", None])
def test_action_outside_the_space(action):
    env = HaloSpecEnv(episode_length=5)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action") as info:
        env.step(action)
    assert repr(action) in str(info.value) and "0..7" in str(info.value)


def test_numpy_integer_actions_are_accepted():
    env = HaloSpecEnv(episode_length=3)
    env.reset(seed=0)
    assert env.step(np.int64(7))[4]["draft_length"] == 8
    assert env.step(np.array(0))[4]["draft_length"] == 1


@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        ({"backend": "gpu"}, ["'gpu'", *BACKEND_NAMES]),
        ({"scenario": "rush_hour"}, ["'rush_hour'", *SCENARIO_NAMES]),
        ({"episode_length": 0}, ["episode_length", "0"]),
        ({"episode_length": -4}, ["episode_length", "-4"]),
        ({"reward_mode": "return"}, ["'return'", "episode", "window"]),
        ({"scenario": "load_spike", "scenario_kwargs": {"start_step": 0}}, ["start_step"]),
    ],
)
def test_bad_constructor_arguments(kwargs, needles):
    for make in (lambda: HaloSpecEnv(**kwargs), lambda: gym.make("HaloSpec-v0", **kwargs)):
        with pytest.raises(ValueError) as info:
            make()
        for needle in needles:
            assert needle in str(info.value), (needle, str(info.value))


def test_step_before_reset():
    with pytest.raises(RuntimeError, match="reset"):
        HaloSpecEnv(episode_length=3).step(0)


def test_progress_counts_measured_requests_only():
    # with HaloSpec's 5 warmup requests the progress feature must mean what it means without them
    T = 10
    with_warmup = rollout(HaloSpecEnv(episode_length=T, warmup_steps=5), 0, [3] * (T + 5))[0]
    without = rollout(HaloSpecEnv(episode_length=T), 0, [3] * T)[0]
    progress_index = envs.OBSERVATION_FEATURES.index("progress")
    assert [o[progress_index] for o in with_warmup[:6]] == [0.0] * 6
    expected = [np.float32(i / T) for i in range(T + 1)]
    assert [o[progress_index] for o in with_warmup[5:]] == expected
    assert [o[progress_index] for o in without] == expected


def test_step_after_the_end_asks_for_reset():
    env = HaloSpecEnv(episode_length=2)
    env.reset(seed=0)
    env.step(0)
    assert env.step(0)[2] is True
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    env.step(0)  # usable again
