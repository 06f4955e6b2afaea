"""Steps per second of HaloSpec-v0 on the simulated backend: one env, and a vector of 8.

    python benchmarks/env_speed.py [--steps 100000] [--preset embedded-cpu]

Actions are pre-drawn so the number measures the env (gym.make's wrappers included), not the
action sampler. Run it with nothing else busy; it uses one core.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers HaloSpec-v0)


def single_env_rate(steps: int, preset: str) -> float:
    env = gym.make("HaloSpec-v0", scenario="load_spike", episode_length=200, backend_kwargs={"preset": preset})
    actions = np.random.default_rng(0).integers(0, env.action_space.n, size=steps).tolist()
    env.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, _, _ = env.step(action)
        if terminated:
            env.reset()
    return steps / (time.perf_counter() - start)


def vector_env_rate(steps: int, preset: str, num_envs: int = 8) -> float:
    vec = gym.make_vec("HaloSpec-v0", num_envs=num_envs, vectorization_mode="sync", scenario="load_spike",
                       episode_length=200, backend_kwargs={"preset": preset})
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 8, size=num_envs) for _ in range(steps // num_envs)]
    vec.reset(seed=0)
    start = time.perf_counter()
    for actions in batches:
        vec.step(actions)
    return len(batches) * num_envs / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--preset", default="embedded-cpu")
    args = p.parse_args()
    print(f"single env (gym.make): {single_env_rate(args.steps, args.preset):,.0f} steps/s")
    print(f"vector of 8 (gym.make_vec, sync): {vector_env_rate(args.steps, args.preset):,.0f} env-steps/s")


if __name__ == "__main__":
    main()
