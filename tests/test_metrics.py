"""HaloSpec's statistics (design.md section 3) against values worked out by hand on small lists."""

from __future__ import annotations

import math

import pytest

from halospec_rl.metrics import (
    converged_at_step,
    draft_length_changes,
    mode_stats,
    nearest_rank,
    population_stddev,
    slo_score,
    tail_penalty_ms,
)


def stats_of(latencies, tokens=None, successes=None, draft_lengths=None, mode="fixed_1"):
    n = len(latencies)
    return mode_stats(
        mode,
        [True] * n if successes is None else successes,
        latencies,
        [64] * n if tokens is None else tokens,
        [1] * n if draft_lengths is None else draft_lengths,
    )


# ------------------------------------------------------------------------------------- nearest rank
@pytest.mark.parametrize(
    ("values", "percentile", "expected"),
    [
        ([7], 50, 7),  # n = 1: every percentile is the only value
        ([7], 95, 7),
        ([10, 20, 30, 40, 50], 50, 30),  # odd n: rank ceil(2.5) = 3
        ([10, 20, 30, 40, 50], 95, 50),  # rank ceil(4.75) = 5
        ([10, 20, 30, 40], 50, 20),  # even n: rank ceil(2.0) = 2, the lower middle (no interpolation)
        ([10, 20, 30, 40], 95, 40),  # rank ceil(3.8) = 4
        (list(range(1, 21)), 95, 19),  # n = 20: rank ceil(19.0) = 19, not the maximum
        (list(range(1, 21)), 50, 10),
        (list(range(1, 11)), 95, 10),  # HaloSpec's 10 steps: p95 is the maximum
        (list(range(1, 16)), 50, 8),  # HaloSpec's 15 adaptive steps: median rank 8
        ([5, 5, 5, 7], 50, 5),  # ties
        ([5, 5, 5, 7], 95, 7),
        ([10, 20, 30, 40], 100, 40),
        ([10, 20, 30, 40], 1, 10),
    ],
)
def test_nearest_rank(values, percentile, expected):
    assert nearest_rank(values, percentile) == expected


@pytest.mark.parametrize("n", [20, 40, 60, 100, 140, 1000])
def test_nearest_rank_p95_has_no_float_off_by_one(n):
    # 0.95 * n is an integer here; a float rounding up would pick the next value
    assert nearest_rank(list(range(1, n + 1)), 95) == n * 95 // 100


def test_nearest_rank_rejects_empty_and_bad_percentiles():
    with pytest.raises(ValueError, match="empty"):
        nearest_rank([], 50)
    for bad in (0, -5, 101):
        with pytest.raises(ValueError, match=str(bad)):
            nearest_rank([1, 2], bad)


# ------------------------------------------------------------------------------------------ stddev
def test_population_stddev():
    assert population_stddev([]) == 0.0
    assert population_stddev([42]) == 0.0  # fewer than 2 samples
    assert population_stddev([3, 3, 3]) == 0.0
    assert population_stddev([100, 300]) == pytest.approx(100.0)  # population, not sample (141.4)
    assert population_stddev([10, 20, 30, 40, 50]) == pytest.approx(math.sqrt(200))
    assert population_stddev([10, 20, 30, 40]) == pytest.approx(math.sqrt(125))
    assert population_stddev([5, 5, 5, 7]) == pytest.approx(math.sqrt(0.75))


# ------------------------------------------------------------------------------------------- score
def test_slo_score_by_hand():
    assert slo_score([100]) == pytest.approx(150.0)  # 100 + 0.5 * 100 + 0
    # avg 30, p95 50, stddev sqrt(200)
    assert slo_score([50, 10, 40, 20, 30]) == pytest.approx(30 + 25 + 0.2 * math.sqrt(200))
    # avg 25, p95 40, stddev sqrt(125)
    assert slo_score([40, 10, 30, 20]) == pytest.approx(25 + 20 + 0.2 * math.sqrt(125))
    assert tail_penalty_ms([40, 10, 30, 20]) == pytest.approx(20 + 0.2 * math.sqrt(125))
    with pytest.raises(ValueError):
        slo_score([])


# -------------------------------------------------------------------------------------- mode_stats
def test_mode_stats_single_request():
    s = stats_of([100], tokens=[5])
    assert (s.steps, s.successes, s.failures, s.success_rate) == (1, 1, 0, 1.0)
    assert (s.avg_ms, s.median_ms, s.p95_ms, s.min_ms, s.max_ms, s.stddev_ms) == (100, 100, 100, 100, 100, 0)
    assert s.throughput_tok_s == pytest.approx(50.0)  # 5 tokens in 0.1 s
    assert s.score == pytest.approx(150.0)


def test_mode_stats_odd_n():
    s = stats_of([50, 10, 40, 20, 30], tokens=[1, 2, 3, 4, 5])
    assert s.avg_ms == pytest.approx(30.0)
    assert (s.median_ms, s.p95_ms, s.min_ms, s.max_ms) == (30, 50, 10, 50)
    assert s.stddev_ms == pytest.approx(math.sqrt(200))
    assert s.throughput_tok_s == pytest.approx(15 / 0.150)  # 15 tokens in 150 ms
    assert s.score == pytest.approx(30 + 25 + 0.2 * math.sqrt(200))


def test_mode_stats_even_n():
    s = stats_of([40, 10, 30, 20], tokens=[10, 10, 10, 10])
    assert s.avg_ms == pytest.approx(25.0)
    assert (s.median_ms, s.p95_ms, s.min_ms, s.max_ms) == (20, 40, 10, 40)
    assert s.stddev_ms == pytest.approx(math.sqrt(125))
    assert s.throughput_tok_s == pytest.approx(40 / 0.1)
    assert s.score == pytest.approx(25 + 20 + 0.2 * math.sqrt(125))


def test_mode_stats_ties():
    s = stats_of([7, 5, 5, 5])
    assert s.avg_ms == pytest.approx(5.5)
    assert (s.median_ms, s.p95_ms, s.min_ms, s.max_ms) == (5, 7, 5, 7)
    assert s.stddev_ms == pytest.approx(math.sqrt(0.75))
    assert s.score == pytest.approx(5.5 + 3.5 + 0.2 * math.sqrt(0.75))


@pytest.mark.parametrize("failed_latency", [0, 60_000])
def test_mode_stats_failure_is_excluded_from_latency_statistics(failed_latency):
    # HaloSpec writes a failed request with latency 0 and tokens 0; a timed-out one may carry 60 s
    s = stats_of([100, failed_latency, 300], tokens=[10, 0, 30], successes=[True, False, True])
    assert (s.steps, s.successes, s.failures) == (3, 2, 1)
    assert s.success_rate == pytest.approx(2 / 3)
    assert s.avg_ms == pytest.approx(200.0)
    assert (s.median_ms, s.p95_ms, s.min_ms, s.max_ms) == (100, 300, 100, 300)  # ranks 1 and 2 of 2
    assert s.stddev_ms == pytest.approx(100.0)
    assert s.throughput_tok_s == pytest.approx(40 / 0.4)
    assert s.score == pytest.approx(200 + 150 + 20)


def test_mode_stats_failed_tokens_do_not_count_in_throughput():
    s = stats_of([1000, 1000], tokens=[64, 64], successes=[True, False])
    assert s.throughput_tok_s == pytest.approx(64.0)


def test_mode_stats_without_successes_reports_none():
    s = stats_of([0, 0, 0], tokens=[0, 0, 0], successes=[False, False, False], draft_lengths=[2, 2, 3])
    assert (s.steps, s.successes, s.failures, s.success_rate) == (3, 0, 3, 0.0)
    for value in (s.avg_ms, s.median_ms, s.p95_ms, s.min_ms, s.max_ms, s.stddev_ms, s.throughput_tok_s, s.score):
        assert value is None
    assert s.draft_length_changes == 1
    d = s.to_dict()
    assert d["score"] is None and d["success_rate"] == 0.0


def test_mode_stats_accepts_halospec_integer_success_flags():
    s = stats_of([100, 0, 300], successes=[1, 0, 1])
    assert (s.successes, s.failures) == (2, 1)


def test_mode_stats_rejects_columns_of_different_length():
    with pytest.raises(ValueError, match="latencies_ms=2"):
        mode_stats("fixed_1", [True] * 3, [1, 2], [1, 2, 3], [1, 1, 1])


def test_mode_stats_empty_mode():
    s = mode_stats("fixed_1", [], [], [], [])
    assert s.steps == 0 and s.success_rate == 0.0 and s.score is None


# ------------------------------------------------------------------------- draft-length behaviour
@pytest.mark.parametrize(
    ("lengths", "changes"),
    [([], 0), ([4], 0), ([4, 4, 4], 0), ([4, 4, 5, 5, 3], 2), ([1, 2, 1, 2], 3), ([4, 5, 6, 7, 6, 6, 6], 4)],
)
def test_draft_length_changes(lengths, changes):
    assert draft_length_changes(lengths) == changes


@pytest.mark.parametrize(
    ("lengths", "step"),
    [
        ([], None),
        ([4, 4, 4, 4], None),  # fewer than k = 5 requests
        ([4, 4, 4, 4, 4], 5),  # the first possible step
        ([4, 5, 6, 6, 6, 6, 6], 7),
        ([4, 5, 6, 7, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6], 9),  # seed: changes=4, converged_at_step=9
        ([4, 5, 6, 6, 6, 6, 5, 5, 5, 5, 6, 6, 6, 6, 5], None),  # runs of 4 never converge
        ([1, 2] * 8, None),
    ],
)
def test_converged_at_step(lengths, step):
    assert converged_at_step(lengths) == step


def test_converged_at_step_other_window():
    assert converged_at_step([3, 1, 1, 1], window=3) == 4
    assert converged_at_step([3, 1], window=1) == 1


def test_mode_stats_carries_draft_length_behaviour():
    s = stats_of([1.0] * 15, draft_lengths=[4, 5, 6, 7, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6], mode="adaptive")
    assert (s.draft_length_changes, s.converged_at_step) == (4, 9)
