"""SB3 models wrapped into the policy protocol, saved and loaded by path."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from agents import load_policy, save_policy
from agents.sb3 import SB3Policy, load_sb3, meta_path
from halospec_rl.backends.base import RequestResult

N_FEATURES = 10


class ToyEnv(gym.Env):
    """Just the spaces of HaloSpec-v0: a Box(10) observation and Discrete(8) draft lengths."""

    observation_space = gym.spaces.Box(0.0, 1.0, (N_FEATURES,), dtype=np.float32)
    action_space = gym.spaces.Discrete(8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), -float(action), True, False, {}


@pytest.fixture(scope="module")
def ppo():
    from stable_baselines3 import PPO

    return PPO("MlpPolicy", ToyEnv(), n_steps=16, batch_size=16, seed=0, device="cpu")


def observations(n: int) -> np.ndarray:
    return np.random.default_rng(0).random((n, N_FEATURES)).astype(np.float32)


def test_wrapper_acts_with_deterministic_action_plus_one(ppo):
    policy = SB3Policy(ppo)
    assert (policy.name, policy.max_draft_length) == ("ppo", 8)
    for obs in observations(20):
        action, _ = ppo.predict(obs, deterministic=True)
        assert policy.act(obs) == int(action) + 1
    policy.update(3, RequestResult(True, 100.0, 8, 3), observations(1)[0])  # frozen: no error, no change
    assert policy.state_dict() == {}
    with pytest.raises(ValueError, match="does not match"):
        SB3Policy(ppo, max_draft_length=6)


def test_save_and_load_policy_round_trip(ppo, tmp_path):
    policy = SB3Policy(ppo)
    path = save_policy(policy, tmp_path / "run" / "model.zip")
    assert path.is_file() and meta_path(path) == tmp_path / "run" / "model.meta.json"
    loaded = load_policy(path)
    assert isinstance(loaded, SB3Policy) and loaded.algorithm == "PPO"
    assert [loaded.act(o) for o in observations(20)] == [policy.act(o) for o in observations(20)]


def test_load_without_sidecar_tries_algorithms(tmp_path):
    from stable_baselines3 import DQN

    dqn = DQN("MlpPolicy", ToyEnv(), learning_starts=0, buffer_size=100, seed=0, device="cpu")
    dqn.save(tmp_path / "dqn.zip")
    loaded = load_sb3(tmp_path / "dqn.zip")
    obs = observations(5)
    assert [loaded.act(o) for o in obs] == [int(dqn.predict(o, deterministic=True)[0]) + 1 for o in obs]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.zip"):
        load_policy(tmp_path / "missing.zip")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.zip"):
        load_sb3(tmp_path / "junk.zip")
    with pytest.raises(ValueError, match="unknown stable-baselines3 algorithm 'NOPE'"):
        load_sb3(tmp_path / "junk.zip", algorithm="NOPE")


def test_importing_agents_does_not_import_sb3():
    code = "import sys, agents; agents.make_policy('ucb1'); print('stable_baselines3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
