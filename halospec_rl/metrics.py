"""HaloSpec's per-mode statistics and its SLO-aware score.

Semantics follow HaloSpec exactly (design.md section 3):

* latency statistics are over *successful* requests only, in milliseconds;
* ``median`` and ``p95`` are nearest-rank: ``rank = ceil(p / 100 * n)``, value ``sorted[rank - 1]``;
* ``stddev`` is the population standard deviation (0 when fewer than 2 samples);
* ``throughput_tok_s = sum(tokens) / sum(latency seconds)`` over successful requests;
* ``score = avg + 0.5 * p95 + 0.2 * stddev`` (lower is better).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

P95_WEIGHT = 0.5
STDDEV_WEIGHT = 0.2
CONVERGENCE_WINDOW = 5


def nearest_rank(sorted_values: Sequence[float], percentile: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    if not sorted_values:
        raise ValueError("nearest_rank needs at least one value, got an empty sequence")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    rank = math.ceil(percentile / 100.0 * len(sorted_values))
    return float(sorted_values[max(rank, 1) - 1])


def population_stddev(values: Sequence[float]) -> float:
    """Population standard deviation; 0 for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = math.fsum(values) / n
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)


def slo_score(latencies_ms: Sequence[float]) -> float:
    """HaloSpec's SLO-aware score (ms) of successful request latencies: avg + 0.5 p95 + 0.2 stddev."""
    if len(latencies_ms) == 0:
        raise ValueError("slo_score needs at least one successful latency, got none")
    ordered = sorted(latencies_ms)
    avg = math.fsum(ordered) / len(ordered)
    return avg + P95_WEIGHT * nearest_rank(ordered, 95) + STDDEV_WEIGHT * population_stddev(ordered)


def tail_penalty_ms(latencies_ms: Sequence[float]) -> float:
    """The part of the score that is not the mean: ``0.5 * p95 + 0.2 * stddev`` (ms)."""
    ordered = sorted(latencies_ms)
    return P95_WEIGHT * nearest_rank(ordered, 95) + STDDEV_WEIGHT * population_stddev(ordered)


def draft_length_changes(draft_lengths: Sequence[int]) -> int:
    """Number of adjacent chosen draft lengths that differ."""
    return sum(1 for a, b in zip(draft_lengths, draft_lengths[1:], strict=False) if a != b)


def converged_at_step(draft_lengths: Sequence[int], window: int = CONVERGENCE_WINDOW) -> int | None:
    """First 1-based step whose last ``window`` chosen draft lengths are equal, else None."""
    for end in range(window, len(draft_lengths) + 1):
        if len(set(draft_lengths[end - window : end])) == 1:
            return end
    return None


@dataclass(frozen=True)
class ModeStats:
    """One mode's row of the HaloSpec summary. Latencies in ms; ``None`` when no request succeeded."""

    mode: str
    steps: int
    successes: int
    failures: int
    avg_ms: float | None
    median_ms: float | None
    p95_ms: float | None
    min_ms: float | None
    max_ms: float | None
    stddev_ms: float | None
    throughput_tok_s: float | None
    score: float | None
    draft_length_changes: int
    converged_at_step: int | None

    @property
    def success_rate(self) -> float:
        """Fraction of requests that succeeded (0..1)."""
        return self.successes / self.steps if self.steps else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["success_rate"] = self.success_rate
        return d


def mode_stats(
    mode: str,
    successes: Sequence[bool],
    latencies_ms: Sequence[float],
    tokens: Sequence[int],
    draft_lengths: Sequence[int],
) -> ModeStats:
    """Compute HaloSpec's statistics for one mode from per-request columns of equal length."""
    n = len(successes)
    if not (len(latencies_ms) == len(tokens) == len(draft_lengths) == n):
        raise ValueError(
            "mode_stats columns differ in length: "
            f"successes={n}, latencies_ms={len(latencies_ms)}, tokens={len(tokens)}, "
            f"draft_lengths={len(draft_lengths)}"
        )
    ok_lat = sorted(float(lat) for ok, lat in zip(successes, latencies_ms, strict=True) if ok)
    ok_tokens = sum(int(t) for ok, t in zip(successes, tokens, strict=True) if ok)
    n_ok = len(ok_lat)
    changes = draft_length_changes(list(draft_lengths))
    converged = converged_at_step(list(draft_lengths))
    if n_ok == 0:
        return ModeStats(mode, n, 0, n, None, None, None, None, None, None, None, None, changes, converged)
    avg = math.fsum(ok_lat) / n_ok
    p95 = nearest_rank(ok_lat, 95)
    stddev = population_stddev(ok_lat)
    total_s = math.fsum(ok_lat) / 1000.0
    throughput = ok_tokens / total_s if total_s > 0 else 0.0
    return ModeStats(
        mode=mode,
        steps=n,
        successes=n_ok,
        failures=n - n_ok,
        avg_ms=avg,
        median_ms=nearest_rank(ok_lat, 50),
        p95_ms=p95,
        min_ms=ok_lat[0],
        max_ms=ok_lat[-1],
        stddev_ms=stddev,
        throughput_tok_s=throughput,
        score=avg + P95_WEIGHT * p95 + STDDEV_WEIGHT * stddev,
        draft_length_changes=changes,
        converged_at_step=converged,
    )
