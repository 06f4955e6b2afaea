"""Fixed, HaloSpec-adaptive and transformers-heuristic controllers against hand-traced sequences."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents import FixedPolicy, HaloSpecAdaptive, HFHeuristic, make_policy
from halospec_rl.backends.base import RequestResult

OBS = np.zeros(10, dtype=np.float32)


def ok(
    latency_ms: float, k: int = 4, phase: str = "steady", drafted: int = -1, accepted: int = -1
) -> RequestResult:
    return RequestResult(True, latency_ms, 64, k, drafted=drafted, accepted=accepted, phase=phase)


def failed(k: int = 4, phase: str = "steady") -> RequestResult:
    return RequestResult(False, 0.0, 0, k, error="boom", phase=phase)


def drive(policy, results: list[RequestResult]) -> list[int]:
    """Feed results in order; returns the draft length chosen before each one."""
    chosen = []
    for result in results:
        k = policy.act(OBS)
        chosen.append(k)
        policy.update(k, result, OBS)
    return chosen


def test_fixed_policy_always_serves_its_length():
    policy = FixedPolicy(3)
    assert policy.name == "fixed_3"
    assert drive(policy, [ok(100.0), failed(), ok(5000.0)]) == [3, 3, 3]
    assert policy.state_dict() == {}


@pytest.mark.parametrize("bad", [0, 9, 2.5, True])
def test_fixed_policy_rejects_bad_lengths(bad):
    with pytest.raises(ValueError, match="draft_length"):
        FixedPolicy(bad)


def test_adaptive_hand_traced_sequence():
    # Warmup: 900..1300 (one failure, ignored). Sorted 900,1000,1100,1200,1300:
    # p50 = sorted[ceil(2.5)-1] = 1100, p95 = sorted[ceil(4.75)-1] = 1300
    # low = int(0.85*1100) = 935, high = int(1.05*1300) = 1365.
    policy = HaloSpecAdaptive()
    warmup = [ok(lat, phase="warmup") for lat in (1000.7, 1200, 1100, 900, 1300)] + [failed(phase="warmup")]
    assert drive(policy, warmup) == [4] * 6
    assert not policy.calibrated  # thresholds are set when the first measured result arrives

    measured = [
        ok(800.9),  # 1: first measured keeps 4; ema 800 (int latency) -> last 800
        ok(1000),  # 2: 800 < 935 -> 5; ema .4*1000+.6*800 = 880
        ok(1100),  # 3: 880 < 935 -> 6; ema 968
        ok(1000),  # 4: 935 <= 968 <= 1365 and 6 is not < 6 -> stays 6; ema 980.8 -> 980
        ok(2500),  # 5: 980 in band -> 6; ema 1588.48 -> 1588
        ok(2000),  # 6: 1588 > 1365 -> 6-2 = 4; ema 1753.088 -> 1753
        ok(1500),  # 7: > high -> 2; ema 1651.85 -> 1651
        failed(),  # 8: > high -> max(2-2, 1) = 1; failure -> draft 1, ema unchanged
        ok(500),  # 9: 1651 still > high -> max(1-2, 1) = 1; ema 1191.1 -> 1191
        ok(300),  # 10: in band, 1 < 6 -> gently +1 = 2; ema 834.7 -> 834
        ok(300),  # 11: 834 < 935 -> 3; ema 620
        ok(300),  # 12: -> 4
        ok(300),  # 13: -> 5
        ok(300),  # 14: -> 6
        ok(300),  # 15: -> 7
        ok(300),  # 16: -> 8
        ok(300),  # 17: clamp at 8
    ]
    assert drive(policy, measured) == [4, 5, 6, 6, 6, 4, 2, 1, 1, 2, 3, 4, 5, 6, 7, 8, 8]
    assert (policy.low_ms, policy.high_ms) == (935, 1365)


def test_adaptive_failure_falls_back_to_one_then_climbs():
    policy = HaloSpecAdaptive()
    drive(policy, [ok(1000, phase="warmup")] * 5)  # p50 = p95 = 1000: low 850, high 1050
    # 4 (first), fail -> 1 with last_latency still None -> 1 again, then 1000 in band -> +1.
    assert drive(policy, [failed(), ok(1000), ok(1000), ok(1000)]) == [4, 1, 2, 3]
    assert (policy.low_ms, policy.high_ms) == (850, 1050)


def test_adaptive_without_successful_warmup_uses_halospec_defaults():
    policy = HaloSpecAdaptive()
    drive(policy, [failed(phase="warmup")] * 5)
    assert drive(policy, [ok(1000)] * 6) == [4, 5, 6, 7, 8, 8]
    assert (policy.low_ms, policy.high_ms) == (9000, 22000)


def test_adaptive_calibrates_on_first_requests_when_env_has_no_warmup_phase():
    policy = HaloSpecAdaptive(warmup_steps=5)
    chosen = drive(policy, [ok(lat) for lat in (1000, 1000, 1000, 1000, 1000)] + [ok(5000)] * 3)
    # Five implicit warmup requests at 4; thresholds 850/1050; then 4 (first measured), 5000 > high: 2, 1.
    assert (policy.low_ms, policy.high_ms) == (850, 1050)
    assert chosen == [4] * 5 + [4, 2, 1]


def test_adaptive_caps_at_smaller_max_and_reset_forgets():
    policy = HaloSpecAdaptive(max_draft_length=5)
    drive(policy, [ok(1000, phase="warmup")] * 5)
    assert drive(policy, [ok(100)] * 4) == [4, 5, 5, 5]
    state = json.loads(json.dumps(policy.state_dict()))
    policy.reset(0)
    assert not policy.calibrated and policy.act(OBS) == 4
    policy.load_state_dict(state)
    assert policy.act(OBS) == 5


def test_hf_heuristic_trace():
    policy = HFHeuristic()
    results = [
        ok(1, drafted=5, accepted=5),  # 5 all accepted -> 7
        ok(1, drafted=7, accepted=7),  # -> 9, capped at 8
        ok(1, drafted=8, accepted=3),  # partial -> 7
        failed(),  # unknown counts -> unchanged 7
        ok(1, drafted=0, accepted=0),  # nothing drafted is not "all accepted" -> 6
        *[ok(1, drafted=6, accepted=0)] * 6,  # 5, 4, 3, 2, 1, floor 1
        ok(1, drafted=1, accepted=1),  # -> 3
    ]
    assert drive(policy, results) == [5, 7, 8, 7, 7, 6, 5, 4, 3, 2, 1, 1]
    assert policy.act(OBS) == 3
    policy.reset()
    assert policy.act(OBS) == 5
    assert HFHeuristic(max_draft_length=3).act(OBS) == 3


def test_registry_builds_baselines():
    assert make_policy("fixed_8").act(OBS) == 8
    assert make_policy("adaptive", warmup_steps=3).warmup_steps == 3
    assert make_policy("hf_heuristic", max_draft_length=4).act(OBS) == 4
    with pytest.raises(ValueError, match="fixed_9"):
        make_policy("fixed_9")
    with pytest.raises(ValueError, match="warmup_steps"):
        make_policy("adaptive", warmup_steps=-1)
