"""The structured model_based bandit on the simulator: it follows content and load changes."""

from __future__ import annotations

import numpy as np
import pytest

from agents import load_policy, make_policy, save_policy
from agents.rollout import run_episode
from envs import HaloSpecEnv
from halospec_rl.backends.simulated import SimulatedBackend, load_preset
from halospec_rl.metrics import slo_score


def mean_latency(k: int, domain: str, load: float = 0.0) -> float:
    params = load_preset("gpu-7b")
    return params.mean_latency_ms(k, params.domain_alpha[domain], load=load)


def best_k(domain: str, load: float = 0.0) -> int:
    return min(range(1, 9), key=lambda k: mean_latency(k, domain, load))


def near_best(k: float, domain: str, load: float = 0.0, tolerance: float = 0.03) -> bool:
    """Whether draft length k costs within ``tolerance`` of the best one (the curves are flat near it)."""
    return mean_latency(round(k), domain, load) <= (1 + tolerance) * mean_latency(best_k(domain, load), domain, load)


def chosen_by_phase(records, phase):
    return [r.draft_length for r in records if r.phase == phase]


def test_follows_domain_shift_to_each_domains_best_draft_length():
    env = HaloSpecEnv(backend=SimulatedBackend(preset="gpu-7b"), scenario="domain_shift", episode_length=300,
                      scenario_kwargs={"regime_length": 50})
    records = run_episode(env, make_policy("model_based"), seed=1)
    for domain in ("code", "prose", "random"):
        tail = chosen_by_phase(records, domain)[-20:]  # late in the episode, after learning
        assert near_best(np.median(tail), domain), (domain, tail, best_k(domain))
    assert best_k("code") - best_k("random") >= 3  # the test means something only if they differ


def test_lowers_draft_length_under_load_and_returns_after():
    env = HaloSpecEnv(backend=SimulatedBackend(preset="gpu-7b"), scenario="load_spike", episode_length=200,
                      scenario_kwargs={"start_step": 60, "load_fraction": 0.4})
    records = run_episode(env, make_policy("model_based"), seed=2)
    steady = np.median(chosen_by_phase(records, "steady")[-20:])
    loaded = np.median(chosen_by_phase(records, "load")[-20:])
    assert loaded < steady
    assert near_best(loaded, "prose", load=1.0, tolerance=0.08), loaded


def test_beats_the_middle_fixed_draft_length_on_domain_shift():
    env = HaloSpecEnv(backend=SimulatedBackend(preset="gpu-7b"), scenario="domain_shift", episode_length=300)
    learned = slo_score([r.latency_ms for r in run_episode(env, make_policy("model_based"), seed=3)])
    fixed = slo_score([r.latency_ms for r in run_episode(env, make_policy("fixed_4"), seed=3)])
    assert learned < fixed


def test_state_round_trip_and_warm_reset(tmp_path):
    env = HaloSpecEnv(backend=SimulatedBackend(preset="gpu-7b"), episode_length=50)
    policy = make_policy("model_based", forgetting=0.95)
    run_episode(env, policy, seed=0)
    clone = load_policy(save_policy(policy, tmp_path / "m.json"))
    assert clone.config() == policy.config() and clone.state_dict() == policy.state_dict()
    observation = np.zeros(10, dtype=np.float32)
    assert clone.act(observation) == policy.act(observation)
    clone.reset(seed=1)  # a warm start returns to the loaded state
    assert clone.state_dict() == policy.state_dict()


@pytest.mark.parametrize(
    "kwargs", [{"forgetting": 0.1}, {"acceptance_smoothing": 0.0}, {"confidence": -1}, {"initial_draft_length": 9}]
)
def test_bad_hyperparameters_name_the_value(kwargs):
    (name, value), = kwargs.items()
    with pytest.raises(ValueError, match=f"{name} must be .*got {value}"):
        make_policy("model_based", **kwargs)
