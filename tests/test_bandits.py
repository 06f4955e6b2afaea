"""Bandits over draft lengths: they find the lowest-SLO-score arm, follow drift, and round-trip state."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

from agents import BANDIT_NAMES, load_policy, make_policy, save_policy
from agents.bandits import BANDITS, MEAN_WEIGHT, STD_WEIGHT
from halospec_rl.backends.base import RequestResult
from halospec_rl.metrics import slo_score

# The structured model_based bandit assumes speculative decoding's cost model, which these toy
# Gaussian arms do not follow; tests/test_model_based.py covers it on the simulator.
ARM_BANDITS = tuple(BANDITS)
assert set(ARM_BANDITS) < set(BANDIT_NAMES)

N_FEATURES = 10

# Arm (draft length) -> (mean ms, std ms). Draft length 3 has the lowest mean but a huge spread, so a
# mean-minimiser would pick it; draft length 5 has the lowest SLO score.
TOY_ARMS = {k: (1000.0 + 80.0 * abs(k - 5), 30.0) for k in range(1, 9)} | {
    5: (1000.0, 20.0),
    3: (900.0, 250.0),
}


def gaussian_world(
    arms: dict[int, tuple[float, float]],
) -> Callable[[int, np.ndarray, np.random.Generator], float]:
    def latency(k: int, observation: np.ndarray, rng: np.random.Generator) -> float:
        mean, std = arms[k]
        return max(rng.normal(mean, std), 1.0)

    return latency


def run(policy, world, steps: int, seed: int = 0, context=None) -> list[int]:
    """A toy request loop building RequestResults directly; returns the chosen draft lengths."""
    rng = np.random.default_rng(seed)
    chosen = []
    observation = np.zeros(N_FEATURES, dtype=np.float32)
    for t in range(steps):
        if context is not None:
            observation = context(t, rng)
        k = policy.act(observation)
        chosen.append(k)
        latency = world(k, observation, rng) if not callable(world[0]) else world[t](k, observation, rng)
        policy.update(k, RequestResult(True, latency, 64, k), observation)
    return chosen


def most_common(values: list[int]) -> int:
    return Counter(values).most_common(1)[0][0]


def test_toy_problem_rewards_score_not_mean():
    # The premise of the next test: k=3 wins on mean, k=5 on HaloSpec's score.
    rng = np.random.default_rng(1)
    samples = {k: rng.normal(m, s, 2000) for k, (m, s) in TOY_ARMS.items()}
    assert min(samples, key=lambda k: samples[k].mean()) == 3
    assert min(samples, key=lambda k: slo_score(list(samples[k]))) == 5
    assert (MEAN_WEIGHT, round(STD_WEIGHT, 4)) == (1.5, 1.0224)


@pytest.mark.parametrize("name", ARM_BANDITS)
def test_each_bandit_finds_lowest_score_arm(name):
    policy = make_policy(name)
    policy.reset(seed=0)
    steps = 2500 if name == "exp3" else 800
    chosen = run(policy, [gaussian_world(TOY_ARMS)] * steps, steps)
    assert most_common(chosen[-200:]) == 5, Counter(chosen[-200:])


@pytest.mark.parametrize("name", ["sw_ucb", "discounted_ucb"])
def test_drift_followers_refind_best_arm_after_change(name):
    before = {k: (1000.0 + 60.0 * abs(k - 5), 20.0) for k in range(1, 9)}
    after = {k: (1000.0 + 60.0 * abs(k - 2), 20.0) for k in range(1, 9)}
    world = [gaussian_world(before)] * 500 + [gaussian_world(after)] * 500
    policy = make_policy(name)
    policy.reset(seed=0)
    chosen = run(policy, world, len(world))
    assert most_common(chosen[400:500]) == 5
    assert most_common(chosen[-150:]) == 2, Counter(chosen[-150:])


def test_linucb_uses_the_context():
    # Under load (feature 7 = 1) short drafts win; idle, long drafts win.
    def world(k: int, observation: np.ndarray, rng: np.random.Generator) -> float:
        best = 2 if observation[7] > 0.5 else 7
        return rng.normal(1000.0 + 80.0 * abs(k - best), 20.0)

    def context(t: int, rng: np.random.Generator) -> np.ndarray:
        observation = np.zeros(N_FEATURES, dtype=np.float32)
        observation[7] = float(rng.random() < 0.5)
        return observation

    policy = make_policy("linucb")
    policy.reset(seed=0)
    run(policy, [world] * 1500, 1500, context=context)
    loaded, idle = np.zeros(N_FEATURES, dtype=np.float32), np.zeros(N_FEATURES, dtype=np.float32)
    loaded[7] = 1.0
    assert (policy.act(loaded), policy.act(idle)) == (2, 7)


def test_sweep_starts_at_default_and_prior_skips_it():
    policy = make_policy("ucb1")
    policy.reset(seed=0)
    assert run(policy, [gaussian_world(TOY_ARMS)] * 8, 8) == [4, 5, 3, 6, 2, 7, 1, 8]
    flat = {k: (1000.0, 10.0) for k in range(1, 9)}
    for name in ARM_BANDITS:
        policy = make_policy(name, prior_count=3.0)
        policy.reset(seed=0)
        chosen = run(policy, [gaussian_world(flat)] * 10, 10)
        if name != "exp3":  # EXP3 samples from its (uniform) distribution from the start
            assert chosen[0] == 4 and most_common(chosen) == 4 and len(set(chosen)) < 8, (name, chosen)


def test_failures_are_priced_at_twice_the_worst_latency():
    policy = make_policy("ucb1")
    policy.reset(seed=0)
    policy.update(
        4, RequestResult(False, 0.0, 0, 4, error="x"), np.zeros(N_FEATURES)
    )  # no scale yet: pending
    policy.update(5, RequestResult(True, 1000.0, 64, 5), np.zeros(N_FEATURES))
    policy.update(6, RequestResult(True, 1500.0, 64, 6), np.zeros(N_FEATURES))
    policy.update(6, RequestResult(False, 0.0, 0, 6, error="x"), np.zeros(N_FEATURES))
    assert policy.stats.total.tolist() == [0, 0, 0, 2000, 1000, 4500, 0, 0]
    fixed_penalty = make_policy("ucb1", failure_penalty_ms=9000.0)
    fixed_penalty.update(5, RequestResult(True, 1000.0, 64, 5), np.zeros(N_FEATURES))
    fixed_penalty.update(2, RequestResult(False, 0.0, 0, 2, error="x"), np.zeros(N_FEATURES))
    assert fixed_penalty.stats.total[1] == 9000.0


def test_prior_mode_moves_off_a_failing_default_arm():
    policy = make_policy("thompson", prior_count=2.0)
    policy.reset(seed=0)
    observation = np.zeros(N_FEATURES)
    assert policy.act(observation) == 4
    policy.update(4, RequestResult(False, 0.0, 0, 4, error="oom"), observation)
    assert policy.act(observation) == 5  # the next arm of the sweep order, not 4 again


def test_always_failing_arm_is_avoided():
    arms = {k: (1000.0 + 30.0 * abs(k - 8), 20.0) for k in range(1, 9)}
    policy = make_policy("ucb1")
    policy.reset(seed=0)
    rng = np.random.default_rng(0)
    chosen = []
    for _ in range(300):
        k = policy.act(np.zeros(N_FEATURES))
        chosen.append(k)
        result = (
            RequestResult(False, 0.0, 0, k, error="oom")
            if k == 8
            else RequestResult(True, rng.normal(*arms[k]), 64, k)
        )
        policy.update(k, result, np.zeros(N_FEATURES))
    assert chosen.count(8) <= 3 and most_common(chosen[-100:]) == 7


@pytest.mark.parametrize("name", ARM_BANDITS)
def test_state_round_trip_continues_identically(name, tmp_path):
    policy = make_policy(name, max_draft_length=6)
    policy.reset(seed=3)
    arms = {k: TOY_ARMS[k] for k in range(1, 7)}
    run(policy, [gaussian_world(arms)] * 60, 60)
    path = save_policy(policy, tmp_path / f"{name}.json")
    clone = load_policy(path)
    assert clone.name == name and clone.max_draft_length == 6 and clone.config() == policy.config()
    assert json.loads(json.dumps(clone.state_dict())) == json.loads(json.dumps(policy.state_dict()))
    world = [gaussian_world(arms)] * 40
    assert run(clone, world, 40, seed=9) == run(policy, world, 40, seed=9)
    # reset() after a load restarts from the loaded (warm) state, not from scratch.
    clone.reset(seed=1)
    assert clone.stats.count.sum() == pytest.approx(load_policy(path).stats.count.sum())
    fresh = make_policy(name, max_draft_length=6)
    fresh.reset(seed=1)
    assert fresh.stats.count.sum() == 0


def test_reset_starts_a_fresh_learner():
    policy = make_policy("thompson")
    policy.reset(seed=0)
    first = run(policy, [gaussian_world(TOY_ARMS)] * 30, 30)
    policy.reset(seed=0)
    assert policy.stats.count.sum() == 0 and policy.scale is None
    assert run(policy, [gaussian_world(TOY_ARMS)] * 30, 30) == first


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("epsilon_greedy", {"epsilon": 1.5}, "epsilon"),
        ("ucb1", {"c": -1}, "c must be"),
        ("sw_ucb", {"window": 0}, "window"),
        ("discounted_ucb", {"gamma": 1.5}, "gamma"),
        ("exp3", {"gamma": 0.0}, "gamma"),
        ("linucb", {"ridge": 0.0}, "ridge"),
        ("thompson", {"initial_draft_length": 9}, "initial_draft_length"),
        ("ucb1", {"failure_penalty_ms": -5}, "failure_penalty_ms"),
        ("ucb1", {"no_such_option": 1}, "ucb1.*no_such_option"),
    ],
)
def test_bad_hyperparameters_raise_clear_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_policy(name, **kwargs)


def test_unknown_policy_name_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown policy 'ppo_bandit'.*epsilon_greedy.*linucb"):
        make_policy("ppo_bandit")


def test_load_policy_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_policy(missing)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ValueError, match="garbage.json"):
        load_policy(garbage)
    wrong_state = tmp_path / "wrong.json"
    wrong_state.write_text(json.dumps({"name": "ucb1", "kwargs": {}, "state": {"stats": {}}}))
    with pytest.raises(ValueError, match="wrong.json"):
        load_policy(wrong_state)
    linucb = make_policy("linucb")
    with pytest.raises(ValueError, match="shape"):
        linucb._choose(np.zeros(3))
