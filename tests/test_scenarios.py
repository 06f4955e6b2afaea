"""Named workloads (halospec_rl.scenarios): deterministic per seed, documented phases, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from halospec_rl.backends.base import DOMAINS
from halospec_rl.scenarios import SCENARIO_NAMES, ScenarioPlan, make_plan


def same_plan(a: ScenarioPlan, b: ScenarioPlan) -> bool:
    return (
        a.name == b.name
        and a.domains == b.domains
        and a.phases == b.phases
        and np.array_equal(a.load, b.load)
        and np.array_equal(a.prompt_seeds, b.prompt_seeds)
    )


def test_the_documented_scenarios_exist():
    assert set(SCENARIO_NAMES) >= {"steady", "load_spike", "domain_shift", "mixed", "bursty"}


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_plan_is_deterministic_for_a_seed_and_well_formed(name):
    a, b = make_plan(name, 120, seed=3), make_plan(name, 120, seed=3)
    assert same_plan(a, b)
    assert len(a) == len(a.phases) == len(a.load) == len(a.prompt_seeds) == 120
    assert set(a.domains) <= set(DOMAINS)
    assert ((a.load >= 0) & (a.load <= 1)).all()
    # another seed draws other prompts
    assert not np.array_equal(a.prompt_seeds, make_plan(name, 120, seed=4).prompt_seeds)


def test_steady():
    plan = make_plan("steady", 10, seed=0)
    assert plan.domains == ("prose",) * 10
    assert plan.phases == ("steady",) * 10
    assert not plan.load.any()
    assert make_plan("steady", 3, seed=0, domain="code").domains == ("code",) * 3


def test_load_spike_phases_follow_halospec():
    plan = make_plan("load_spike", 10, seed=0)
    # measured step 6 (index 5) starts the load, for 40% of the episode (4 requests), then recovery
    assert plan.phases == ("steady",) * 5 + ("load",) * 4 + ("recovery",)
    assert plan.load.tolist() == [0.0] * 5 + [1.0] * 4 + [0.0]
    # the schedule does not depend on the seed
    assert make_plan("load_spike", 10, seed=99).phases == plan.phases


def test_load_spike_parameters():
    plan = make_plan("load_spike", 20, seed=0, start_step=3, load_fraction=0.25)
    assert plan.phases == ("steady",) * 2 + ("load",) * 5 + ("recovery",) * 13
    # at least one loaded request even for a tiny fraction
    assert make_plan("load_spike", 10, seed=0, load_fraction=0.01).phases.count("load") == 1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_domain_shift_cycles_all_three_domains(seed):
    plan = make_plan("domain_shift", 60, seed=seed)
    assert plan.phases == plan.domains  # phase is the domain
    assert not plan.load.any()
    # regimes of 10 requests (60 // 6), each a single domain, cycling through all three
    regimes = [plan.domains[i : i + 10] for i in range(0, 60, 10)]
    assert all(len(set(r)) == 1 for r in regimes)
    firsts = [r[0] for r in regimes]
    assert set(firsts[:3]) == set(DOMAINS)
    assert firsts[3:] == firsts[:3]


def test_domain_shift_regime_length():
    plan = make_plan("domain_shift", 12, seed=0, regime_length=2)
    assert all(plan.domains[i] == plan.domains[i + 1] for i in range(0, 12, 2))
    assert set(plan.domains) == set(DOMAINS)


def test_mixed_draws_domains_per_request():
    plan = make_plan("mixed", 300, seed=0)
    counts = {d: plan.domains.count(d) for d in DOMAINS}
    assert all(60 < c < 140 for c in counts.values()), counts
    only_code = make_plan("mixed", 50, seed=0, weights=(1, 0, 0))
    assert set(only_code.domains) == {"code"}


def test_bursty_switches_load_on_and_off():
    plan = make_plan("bursty", 400, seed=0)
    assert set(plan.phases) == {"steady", "load"}
    assert all((p == "load") == (level > 0) for p, level in zip(plan.phases, plan.load, strict=True))
    switches = sum(a != b for a, b in zip(plan.phases, plan.phases[1:], strict=False))
    assert switches > 10
    assert plan.phases[0] == "steady"


def test_unknown_scenario_names_it_and_lists_the_known():
    with pytest.raises(ValueError, match="unknown scenario 'flash_crowd'") as info:
        make_plan("flash_crowd", 10)
    for name in SCENARIO_NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("name", "params", "needle"),
    [
        ("load_spike", {"start_step": 0}, "start_step"),
        ("load_spike", {"load_fraction": 0.0}, "load_fraction"),
        ("load_spike", {"load_fraction": 1.5}, "1.5"),
        ("domain_shift", {"regime_length": 0}, "regime_length"),
        ("mixed", {"weights": (1, 1)}, "weights"),
        ("mixed", {"weights": (-1, 1, 1)}, "weights"),
        ("bursty", {"mean_burst": 0.5}, "mean_burst"),
        ("steady", {"domain": "poetry"}, "poetry"),
        ("steady", {"spike": True}, "steady"),  # an unknown keyword names the scenario
    ],
)
def test_bad_parameters_raise_value_error(name, params, needle):
    with pytest.raises(ValueError, match=needle):
        make_plan(name, 20, seed=0, **params)


@pytest.mark.parametrize("n", [0, -3])
def test_non_positive_length_raises(n):
    with pytest.raises(ValueError, match=str(n)):
        make_plan("steady", n)
