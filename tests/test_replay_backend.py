"""The replay backend: recorded statistics come back, seeded, phase-aware, clear errors."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from halospec_rl.backends import Prompt, make_backend
from halospec_rl.backends.replay import ReplayBackend
from halospec_rl.report import HALOSPEC_COLUMNS, RequestRecord, ResultsWriter, read_results


def _record(
    step: int, k: int, latency_ms: float, phase: str = "measured", success: bool = True
) -> RequestRecord:
    return RequestRecord(
        global_step=step,
        step=step,
        mode=f"fixed_{k}",
        phase=phase,
        draft_length=k,
        success=success,
        latency_ms=latency_ms,
        tokens=64 if success else 0,
        drafted=10 * k,
        accepted=7 * k,
    )


@pytest.fixture
def trace(tmp_path):
    """fixed_2 and fixed_4 with lognormal latencies, 5% failures, a warmup and a 'spike' phase."""
    rng = random.Random(7)
    path = tmp_path / "trace.csv"
    step = 0
    with ResultsWriter(path) as writer:
        for k, median_ms in ((2, 3800.0), (4, 3400.0)):
            step += 1
            writer.write(_record(step, k, 99_999.0, phase="warmup"))  # must never be replayed
            for _ in range(300):
                step += 1
                writer.write(
                    _record(step, k, median_ms * rng.lognormvariate(0, 0.1), success=rng.random() > 0.05)
                )
            for _ in range(50):
                step += 1
                writer.write(_record(step, k, 3.0 * median_ms, phase="spike"))
    return path


def test_replay_reproduces_a_recorded_mode_within_sampling_error(trace):
    recorded = [
        r for run in read_results(trace) for r in run if r.draft_length == 4 and r.phase == "measured"
    ]
    backend = ReplayBackend(trace, seed=1)
    backend.set_load(0.0, "measured")
    n = 4000
    results = [backend.generate(Prompt(), 4) for _ in range(n)]

    ok = [r.latency_ms for r in results if r.success]
    rec_ok = [r.latency_ms for r in recorded if r.success]
    # Resampling with replacement: the mean's standard error is the recorded sd / sqrt(n).
    assert abs(statistics.fmean(ok) - statistics.fmean(rec_ok)) < 4 * statistics.pstdev(rec_ok) / math.sqrt(n)
    rec_rate = sum(r.success for r in recorded) / len(recorded)
    assert abs(len(ok) / n - rec_rate) < 4 * math.sqrt(rec_rate * (1 - rec_rate) / n)
    assert set(ok) <= set(rec_ok)
    assert all(r.draft_length == 4 and r.drafted == 40 and r.accepted == 28 for r in results)
    assert all(r.error == "recorded failure" for r in results if not r.success)


def test_replay_is_seeded_and_reset_restarts_the_stream(trace):
    a, b = ReplayBackend(trace, seed=3), ReplayBackend(trace, seed=3)
    first = [a.generate(Prompt(), 2).latency_ms for _ in range(20)]
    assert first == [b.generate(Prompt(), 2).latency_ms for _ in range(20)]
    a.reset()
    assert first == [a.generate(Prompt(), 2).latency_ms for _ in range(20)]
    a.reset(seed=4)
    assert first != [a.generate(Prompt(), 2).latency_ms for _ in range(20)]


def test_replay_draws_from_the_matching_phase_else_from_all(trace):
    backend = ReplayBackend(trace, seed=0)
    backend.set_load(0.8, "spike")
    spike = [backend.generate(Prompt(), 4) for _ in range(50)]
    assert {r.latency_ms for r in spike} == {3 * 3400.0}
    assert all(r.phase == "spike" and r.load == 0.8 for r in spike)

    backend.set_load(0.0, "steady")  # no row recorded in 'steady': any phase but warmup
    latencies = [backend.generate(Prompt(), 4).latency_ms for _ in range(400)]
    assert 3 * 3400.0 in latencies and max(latencies) < 99_999.0
    assert min(latencies) < 2 * 3400.0


def test_unrecorded_draft_length_names_it_and_the_recorded_ones(trace):
    backend = make_backend("replay", path=trace)
    assert backend.recorded_draft_lengths == (2, 4) and backend.max_draft_length == 4
    with pytest.raises(ValueError, match=r"draft_length 3; recorded: 2, 4"):
        backend.generate(Prompt(), 3)
    with pytest.raises(ValueError, match=r"0\.\.4"):
        backend.generate(Prompt(), 5)


def test_replays_a_halospec_eight_column_csv(tmp_path):
    path = tmp_path / "halospec.csv"
    lines = [",".join(HALOSPEC_COLUMNS)]
    lines += [f"{i},{i},fixed_6,measured,6,true,{3400 + i}.5,64" for i in range(1, 11)]
    path.write_text("\n".join(lines) + "\n")
    backend = ReplayBackend(path, seed=0, max_draft_length=8)
    result = backend.generate(Prompt(), 6)
    assert result.success and result.tokens == 64 and 3401 <= result.latency_ms <= 3411
    assert result.drafted == -1 and result.accepted == -1
