"""The simulated backend: seeded, responds to k, load and content as its model says, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from halospec_rl.backends import Backend, Prompt, make_backend
from halospec_rl.backends.simulated import (
    SimulatedBackend,
    expected_rounds_drafted,
    load_preset,
    preset_names,
    with_overrides,
)


def mean_latency(backend: SimulatedBackend, k: int, n: int, domain: str = "prose", seed: int = 0) -> float:
    backend.reset(seed)
    return float(np.mean([backend.generate(Prompt(domain=domain), k).latency_ms for _ in range(n)]))


def test_presets_exist_and_state_their_source():
    assert set(preset_names()) >= {"halospec-lemonade", "gpu-7b", "embedded-cpu"}
    for name in preset_names():
        assert load_preset(name).source


def test_registry_builds_a_backend_that_follows_the_protocol():
    backend = make_backend("simulated", preset="gpu-7b", seed=0)
    assert isinstance(backend, SimulatedBackend) and isinstance(backend, Backend)
    r = backend.generate(Prompt(), 4)
    assert r.success and r.tokens == 64 and r.draft_length == 4 and r.latency_ms > 0
    assert 0 <= r.accepted <= r.drafted and r.rounds >= 1 and r.error == ""
    assert r.tokens_per_round == pytest.approx(64 / r.rounds)


def test_best_fixed_k_on_gpu_7b_steady_prose_is_large():
    backend = SimulatedBackend(preset="gpu-7b")
    means = {k: mean_latency(backend, k, 300) for k in range(1, 9)}
    best = min(means, key=means.get)
    assert best >= 4, means
    assert means[best] < means[1]


def test_latencies_rise_under_high_load():
    backend = SimulatedBackend(preset="gpu-7b")
    for k in (1, 4, 8):
        calm = mean_latency(backend, k, 100)
        backend.set_load(1.0, "load")
        loaded = mean_latency(backend, k, 100)
        backend.set_load(0.0)
        assert loaded > 1.2 * calm, (k, calm, loaded)
    backend.set_load(1.0, "load")
    r = backend.generate(Prompt(), 4)
    assert (r.load, r.phase) == (1.0, "load")


def test_load_on_the_seed_like_preset_moves_latency_modestly():
    backend = SimulatedBackend(preset="halospec-lemonade")
    calm = mean_latency(backend, 4, 100)
    backend.set_load(1.0)
    loaded = mean_latency(backend, 4, 100)
    assert calm < loaded < 1.3 * calm
    assert 3000 < calm < 4500  # the seed's magnitudes: about 3.4-4.2 s per 64-token request


def test_same_seed_same_results_and_other_seed_other_results():
    def trace(seed):
        backend = SimulatedBackend(preset="halospec-lemonade", seed=seed)
        mixed = [backend.generate(Prompt(domain=d), k) for d in ("code", "prose", "random") for k in range(9)]
        return mixed + [backend.generate(Prompt(), 3) for _ in range(600)]  # past one block of 512

    assert trace(5) == trace(5)
    assert trace(5) != trace(6)
    backend = SimulatedBackend(preset="gpu-7b", seed=1)
    first = [backend.generate(Prompt(), 2) for _ in range(5)]
    backend.reset(1)
    assert [backend.generate(Prompt(), 2) for _ in range(5)] == first
    assert backend.clock_s == pytest.approx(sum(r.latency_ms for r in first) / 1000)


def test_content_stream_does_not_depend_on_the_draft_lengths_chosen():
    # common random numbers: the acceptance pattern of request i is the same whatever k was used before
    a = SimulatedBackend(preset="gpu-7b", seed=3)
    b = SimulatedBackend(preset="gpu-7b", seed=3)
    rng = np.random.default_rng(0)
    for _ in range(50):
        a.generate(Prompt(), 1)
        b.generate(Prompt(), int(rng.integers(1, 9)))
    assert a.generate(Prompt(), 5) == b.generate(Prompt(), 5)


def test_acceptance_ordering_code_prose_random():
    backend = SimulatedBackend(preset="gpu-7b", seed=0)
    rates = {}
    for domain in ("code", "prose", "random"):
        results = [backend.generate(Prompt(domain=domain), 4) for _ in range(300)]
        rates[domain] = sum(r.accepted for r in results) / sum(r.drafted for r in results)
    assert rates["code"] > rates["prose"] > rates["random"], rates


def test_no_speculation_is_one_pass_per_token():
    r = SimulatedBackend(preset="gpu-7b", seed=0).generate(Prompt(max_tokens=10), 0)
    assert (r.rounds, r.drafted, r.accepted, r.tokens) == (10, 0, 0, 10)


@pytest.mark.parametrize(("k", "alpha"), [(1, 0.5), (4, 0.8), (8, 0.78), (3, 0.3)])
def test_expected_rounds_drafted_matches_monte_carlo(k, alpha):
    params = with_overrides(
        load_preset("gpu-7b"),
        alpha_spread=0.0,
        domain_alpha={"code": alpha, "prose": alpha, "random": alpha},
    )
    backend = SimulatedBackend(params=params, seed=0)
    results = [backend.generate(Prompt(), k) for _ in range(2000)]
    rounds, drafted = expected_rounds_drafted(k, alpha, 64)
    assert np.mean([r.rounds for r in results]) == pytest.approx(rounds, rel=0.02)
    assert np.mean([r.drafted for r in results]) == pytest.approx(drafted, rel=0.02)
    # and the mean latency formula agrees with the simulated latencies (noise and spikes included)
    mean_ms = np.mean([r.latency_ms for r in results])
    assert mean_ms == pytest.approx(params.mean_latency_ms(k, alpha), rel=0.03)


def test_expected_rounds_drafted_edge_cases():
    assert expected_rounds_drafted(0, 0.7, 64) == (64.0, 0.0)  # no speculation
    # perfect acceptance: k + 1 tokens per round, the last round drafts only what is left
    assert expected_rounds_drafted(3, 1.0, 8) == (2.0, 6.0)
    rounds, drafted = expected_rounds_drafted(4, 0.0, 10)  # nothing accepted: one token per round
    assert rounds == pytest.approx(10.0)


@pytest.mark.parametrize("bad", [9, -1, 2.5, "4", None, True])
def test_bad_draft_length_names_the_value(bad):
    backend = SimulatedBackend(preset="gpu-7b", seed=0)
    with pytest.raises(ValueError, match="draft_length") as info:
        backend.generate(Prompt(), bad)
    assert repr(bad) in str(info.value) and "0..8" in str(info.value)


def test_unknown_domain_names_it_and_lists_the_known():
    with pytest.raises(ValueError, match="unknown domain 'poetry'") as info:
        SimulatedBackend(preset="gpu-7b").generate(Prompt(domain="poetry"), 2)
    assert all(d in str(info.value) for d in ("code", "prose", "random"))


def test_unknown_preset_names_it_and_lists_the_known():
    with pytest.raises(ValueError, match="unknown simulator preset 'h100-70b'") as info:
        SimulatedBackend(preset="h100-70b")
    assert "gpu-7b" in str(info.value)


def test_other_bad_arguments():
    backend = SimulatedBackend(preset="gpu-7b")
    with pytest.raises(ValueError, match="1.5"):
        backend.set_load(1.5)
    with pytest.raises(ValueError, match="max_tokens"):
        backend.generate(Prompt(max_tokens=0), 2)
    with pytest.raises(ValueError, match="max_draft_length"):
        SimulatedBackend(preset="gpu-7b", max_draft_length=0)
    with pytest.raises(ValueError, match="unknown simulator parameter"):
        with_overrides(load_preset("gpu-7b"), warp_speed=9.0)
    with pytest.raises(ValueError, match="noise_sigma"):
        with_overrides(load_preset("gpu-7b"), noise_sigma=-0.1)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"overhead_ms": -500}, "overhead_ms"),  # presets are JSON: whole numbers arrive as int
        ({"target_pass_ms": -1}, "target_pass_ms"),
        ({"draft_token_ms": float("inf")}, "draft_token_ms"),
        ({"spike_prob": 3.0}, "spike_prob"),
        ({"domain_alpha": {"code": 0.8, "prose": 1.2, "random": 0.3}}, "prose"),
        ({"domain_alpha": {"code": 0.8, "prose": 0.7}}, "random"),
    ],
)
def test_bad_simulator_parameters_are_rejected(override, needle):
    with pytest.raises(ValueError, match=needle):
        with_overrides(load_preset("gpu-7b"), **override)
