"""Decision quality: how close each controller comes to the best draft length, per scenario.

    python benchmarks/decision_quality.py                         # 4 scenarios x 5 seeds x 200 requests
    python benchmarks/decision_quality.py --preset gpu-7b --ppo-timesteps 0

On the simulator, every mode runs the same workload per seed (common random numbers): fixed_1..8,
adaptive, hf_heuristic, every bandit (a fresh learner per episode, learning online), and PPO trained
on the scenario first (``--ppo-timesteps``, on other seeds than the evaluation's). Prints per
scenario the mean score per mode with its 95% t-interval, three oracles, and the ratios:

* ``oracle_fixed``: the best fixed draft length in hindsight, per seed;
* ``oracle_phase``: the best fixed draft length per phase (load phase or content domain) in
  hindsight, by score: what a controller that knew the phase and the best k for it would get;
* ``oracle_step``: the best draft length for every request in hindsight (clairvoyant bound).
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as st

import agents
from agents.rollout import run_episode
from envs import HaloSpecEnv
from halospec_rl.metrics import slo_score

SCENARIOS = ("steady", "load_spike", "domain_shift", "mixed")
LEARNED_PREFIXES = tuple(agents.BANDIT_NAMES) + ("ppo",)


def make_env(args, scenario: str) -> HaloSpecEnv:
    return HaloSpecEnv(backend="simulated", scenario=scenario, episode_length=args.episode_length,
                       max_draft_length=8, backend_kwargs={"preset": args.preset})


def train_ppo(args, scenario: str):
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)  # a 64x64 MLP: one thread beats two contended ones

    from agents.sb3 import SB3Policy

    env = make_env(args, scenario)
    model = PPO("MlpPolicy", env, n_steps=1000, batch_size=100, ent_coef=0.01, seed=10_000,
                policy_kwargs={"net_arch": [64, 64]}, verbose=0)
    model.learn(total_timesteps=args.ppo_timesteps)
    return SB3Policy(model, name="ppo")


def latencies(records) -> np.ndarray:
    return np.array([r.latency_ms for r in records if r.phase != "warmup"])


def oracles(fixed: dict[str, tuple[np.ndarray, list[str]]]) -> dict[str, float]:
    """Scores of the three hindsight oracles from the fixed modes' per-request latencies (same workload)."""
    names = sorted(fixed)
    lat = np.stack([fixed[m][0] for m in names])  # (modes, requests)
    phases = np.array(fixed[names[0]][1])
    masks = [phases == phase for phase in np.unique(phases)]
    # Exhaustive over one fixed k per phase (8^phases assignments, phases <= 3 here): the score is
    # not additive over requests, so the best k per phase by mean latency is not the best by score.
    best_phase_score = math.inf
    for assignment in itertools.product(range(len(names)), repeat=len(masks)):
        composed = np.empty(lat.shape[1])
        for mode_index, mask in zip(assignment, masks, strict=True):
            composed[mask] = lat[mode_index, mask]
        best_phase_score = min(best_phase_score, slo_score(composed))
    return {
        "oracle_fixed": min(slo_score(row) for row in lat),
        "oracle_phase": best_phase_score,
        "oracle_step": slo_score(lat.min(axis=0)),
    }


def evaluate_scenario(args, scenario: str) -> dict[str, list[float]]:
    modes = {f"fixed_{k}": (lambda k=k: agents.make_policy(f"fixed_{k}")) for k in range(1, 9)}
    modes.update({m: (lambda m=m: agents.make_policy(m)) for m in ("adaptive", "hf_heuristic", *agents.BANDIT_NAMES)})
    if args.ppo_timesteps > 0:
        ppo = train_ppo(args, scenario)
        modes["ppo"] = lambda: ppo
    scores: dict[str, list[float]] = {m: [] for m in [*modes, "oracle_fixed", "oracle_phase", "oracle_step"]}
    env = make_env(args, scenario)
    for seed in range(args.seeds):
        fixed = {}
        for mode, factory in modes.items():
            records = run_episode(env, factory(), seed, mode=mode)
            lat = latencies(records)
            scores[mode].append(slo_score(lat))
            if mode.startswith("fixed_"):
                fixed[mode] = (lat, [r.phase for r in records if r.phase != "warmup"])
        for name, value in oracles(fixed).items():
            scores[name].append(value)
    return scores


def interval(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values)
    half = st.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return float(v.mean()), float(half)


def report(scenario: str, scores: dict[str, list[float]]) -> str:
    means = {m: float(np.mean(v)) for m, v in scores.items()}
    fixed = [m for m in means if m.startswith("fixed_")]
    learned = [m for m in means if m.startswith(LEARNED_PREFIXES)]
    bandits = [m for m in learned if m != "ppo"]
    best_fixed = min(fixed, key=means.get)
    best_learned = min(learned, key=means.get)
    best_bandit = min(bandits, key=means.get)
    lines = [f"\n## {scenario}", "", "| mode | mean score (ms) | 95% CI +- |", "|---|---:|---:|"]
    for mode in scores:
        mean, half = interval(scores[mode])
        lines.append(f"| {mode} | {mean:.1f} | {half:.1f} |")
    lines += [
        "",
        f"- best fixed: {best_fixed} ({means[best_fixed]:.1f}); best learned: {best_learned} "
        f"({means[best_learned]:.1f}); best bandit: {best_bandit} ({means[best_bandit]:.1f})",
        f"- best learned / best fixed = {means[best_learned] / means[best_fixed]:.3f}",
        f"- best learned / adaptive = {means[best_learned] / means['adaptive']:.3f}",
        f"- best learned / hf_heuristic = {means[best_learned] / means['hf_heuristic']:.3f}",
        f"- best bandit / oracle_fixed = {means[best_bandit] / means['oracle_fixed']:.3f}",
        f"- headroom: oracle_phase / best fixed = {means['oracle_phase'] / means[best_fixed]:.3f}, "
        f"oracle_step / best fixed = {means['oracle_step'] / means[best_fixed]:.3f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="embedded-cpu")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--episode-length", type=int, default=200)
    p.add_argument("--ppo-timesteps", type=int, default=30_000, help="0 skips PPO")
    p.add_argument("--out", type=Path, help="also write the markdown report here")
    args = p.parse_args(argv)
    started = time.time()
    text = [f"# Decision quality: preset {args.preset}, {args.seeds} seeds x {args.episode_length} requests"]
    for scenario in args.scenarios.split(","):
        text.append(report(scenario, evaluate_scenario(args, scenario)))
        print(text[-1], flush=True)
    print(f"\n({time.time() - started:.0f} s)")
    if args.out:
        args.out.write_text("\n".join(text) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
