"""Gymnasium environments of halospec-rl; importing this package registers ``HaloSpec-v0``."""

import gymnasium as gym

from envs.halospec_env import REWARD_MODES, HaloSpecEnv
from envs.observation import OBSERVATION_FEATURES, ObservationTracker

ENV_ID = "HaloSpec-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="envs.halospec_env:HaloSpecEnv")

__all__ = ["ENV_ID", "OBSERVATION_FEATURES", "REWARD_MODES", "HaloSpecEnv", "ObservationTracker"]
