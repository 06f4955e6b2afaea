"""Named workloads: which content domain each request has, and when CPU contention is on.

A scenario's plan is a function of the seed and the request index only, never of the actions
taken, so every mode of an evaluation (and every policy on the same seed) sees the same workload:
common random numbers for paired comparisons. Steps are 0-based request indices of the measured
part of an episode (HaloSpec's "measured step 6" is index 5).

==============  =======================================================================================
name            schedule
==============  =======================================================================================
steady          one domain (``domain``, default prose), no load
load_spike      HaloSpec's: load from measured step ``start_step`` (default 6) for ``load_fraction`` of
                the episode (default 0.4, at least one request); phases steady / load / recovery
domain_shift    regimes of ``regime_length`` requests (default episode/6, at least 5) cycling through
                code, prose and random in a seeded order; phase = the domain
mixed           domain drawn per request (``weights`` over code/prose/random, default uniform), no load
bursty          load switching on and off in bursts whose lengths are geometric with mean
                ``mean_burst`` (default 10) requests; phases steady / load
==============  =======================================================================================

HaloSpec timed its load by the wall clock (a 30 s burner from step 6, about 8 of its 3.5 s requests:
the rest of a mode). A scenario counts requests instead, so the load falls on the same requests for
every mode, however fast each one serves them (see design.md section 5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from halospec_rl.backends.base import DOMAINS


@dataclass(frozen=True)
class ScenarioPlan:
    """Per-request schedule of one episode, arrays of length ``n_steps``.

    ``domains[i]`` is the content domain of request ``i``, ``load[i]`` the contention level
    (0..1) in force while it runs, ``phases[i]`` its phase label, ``prompt_seeds[i]`` the seed a
    backend uses to draw the prompt text.
    """

    name: str
    domains: tuple[str, ...]
    load: np.ndarray
    phases: tuple[str, ...]
    prompt_seeds: np.ndarray

    def __len__(self) -> int:
        return len(self.domains)


def _steady(n, rng, domain: str = "prose"):
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r} for steady; known domains: {', '.join(DOMAINS)}")
    return [domain] * n, np.zeros(n), ["steady"] * n


def _load_spike(n, rng, start_step: int = 6, load_fraction: float = 0.4, domain: str = "prose"):
    if start_step < 1:
        raise ValueError(f"load_spike start_step must be >= 1 (1-based measured step), got {start_step}")
    if not 0 < load_fraction <= 1:
        raise ValueError(f"load_spike load_fraction must be in (0, 1], got {load_fraction}")
    domains, load, _ = _steady(n, rng, domain)
    start = start_step - 1
    end = start + max(1, round(load_fraction * n))
    load[start:end] = 1.0
    phases = ["steady" if i < start else "load" if i < end else "recovery" for i in range(n)]
    return domains, load, phases


def _domain_shift(n, rng, regime_length: int | None = None):
    length = regime_length if regime_length is not None else max(5, n // 6)
    if length < 1:
        raise ValueError(f"domain_shift regime_length must be >= 1, got {length}")
    order = [DOMAINS[i] for i in rng.permutation(len(DOMAINS))]
    domains = [order[(i // length) % len(order)] for i in range(n)]
    return domains, np.zeros(n), list(domains)


def _mixed(n, rng, weights: tuple[float, ...] | None = None):
    p = np.full(len(DOMAINS), 1.0 / len(DOMAINS)) if weights is None else np.asarray(weights, float)
    if p.shape != (len(DOMAINS),) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"mixed weights must be {len(DOMAINS)} non-negative numbers for {DOMAINS}, got {weights}")
    idx = rng.choice(len(DOMAINS), size=n, p=p / p.sum())
    domains = [DOMAINS[i] for i in idx]
    return domains, np.zeros(n), list(domains)


def _bursty(n, rng, mean_burst: float = 10.0, domain: str = "prose"):
    if mean_burst < 1:
        raise ValueError(f"bursty mean_burst must be >= 1 request, got {mean_burst}")
    domains, load, _ = _steady(n, rng, domain)
    i, on = 0, False
    while i < n:
        length = int(rng.geometric(1.0 / mean_burst))
        if on:
            load[i : i + length] = 1.0
        i += length
        on = not on
    phases = ["load" if level > 0 else "steady" for level in load]
    return domains, load, phases


_SCHEDULES: dict[str, Callable] = {
    "steady": _steady,
    "load_spike": _load_spike,
    "domain_shift": _domain_shift,
    "mixed": _mixed,
    "bursty": _bursty,
}
SCENARIO_NAMES = tuple(_SCHEDULES)


def make_plan(name: str, n_steps: int, seed: int | None = None, **params) -> ScenarioPlan:
    """The schedule of ``n_steps`` measured requests of scenario ``name``.

    Raises ValueError naming an unknown scenario (and listing the known) or a bad parameter.
    """
    if name not in _SCHEDULES:
        raise ValueError(f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIO_NAMES)}")
    if n_steps < 1:
        raise ValueError(f"a scenario plan needs n_steps >= 1, got {n_steps}")
    rng = np.random.default_rng(seed)
    schedule_rng, prompt_rng = rng.spawn(2)
    try:
        domains, load, phases = _SCHEDULES[name](n_steps, schedule_rng, **params)
    except TypeError as exc:  # an unexpected keyword: name the scenario in the message
        raise ValueError(f"bad parameters {params} for scenario {name!r}: {exc}") from None
    prompt_seeds = prompt_rng.integers(0, 2**31 - 1, size=n_steps)
    return ScenarioPlan(name, tuple(domains), np.asarray(load, float), tuple(phases), prompt_seeds)
