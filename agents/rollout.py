"""Run a policy through HaloSpec-v0 and record every request, as evaluation and benchmarks do."""

from __future__ import annotations

from collections.abc import Callable

from agents.base import Policy
from envs.halospec_env import HaloSpecEnv
from halospec_rl.report import RequestRecord


def run_episode(
    env: HaloSpecEnv,
    policy: Policy,
    seed: int,
    mode: str | None = None,
    on_record: Callable[[RequestRecord], None] | None = None,
    global_step_start: int = 0,
) -> list[RequestRecord]:
    """One episode of ``policy`` on ``env`` reset with ``seed`` (the same seed gives every policy the
    same workload). Returns one record per request, warmup included (phase "warmup")."""
    mode = mode or policy.name
    observation, _ = env.reset(seed=seed)
    policy.reset(seed)
    records: list[RequestRecord] = []
    backend_name = getattr(env.backend, "name", "")
    terminated = False
    while not terminated:
        draft_length = policy.act(observation)
        observation, _, terminated, _, info = env.step(draft_length - 1)
        result = info["result"]
        policy.update(draft_length, result, observation)
        record = RequestRecord(
            global_step=global_step_start + len(records) + 1,
            step=info["step"],
            mode=mode,
            phase=info["phase"],
            draft_length=draft_length,
            success=result.success,
            latency_ms=result.latency_ms if result.success else 0.0,
            tokens=result.tokens if result.success else 0,
            drafted=result.drafted,
            accepted=result.accepted,
            domain=info["domain"],
            load=info["load"],
            backend=backend_name,
            scenario=env.scenario,
            seed=seed,
            error=result.error,
        )
        records.append(record)
        if on_record is not None:
            on_record(record)
    return records
