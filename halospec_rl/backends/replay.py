"""The replay backend: answers requests from a recorded results CSV (ours or HaloSpec's).

For offline evaluation of agents on real traces: a request with draft length k gets the latency,
tokens and draft counts of a recorded request with draft length k, drawn uniformly (seeded, with
replacement). Warmup rows are left out (they carry cold-start costs the measured phase does not).
"""

from __future__ import annotations

import random
from pathlib import Path

from halospec_rl.backends.base import Prompt, RequestResult, check_draft_length
from halospec_rl.report import WARMUP_PHASE, RequestRecord, read_results


class ReplayBackend:
    """Samples recorded requests of the requested draft length.

    Args:
        path: results CSV (``report.read_results`` format; all runs in it are pooled).
        seed: seed of the sampling stream (``reset(seed)`` restarts it).
        max_draft_length: largest draft length callers may ask for; default the largest recorded.

    Phase-aware: after ``set_load(level, phase)`` a request draws from the rows recorded in ``phase``
    when k has any there, else from all of k's rows (scenario phases and recorded phases need not
    share names). Recorded failures are replayed as failures, so the success rate is reproduced too.
    ``Prompt`` content and ``max_tokens`` do not affect the draw: the trace decides the tokens.
    """

    name = "replay"

    def __init__(self, path: str | Path, seed: int = 0, max_draft_length: int | None = None):
        self.path = Path(path)
        rows = [r for run in read_results(self.path) for r in run if r.phase != WARMUP_PHASE]
        self._pools: dict[int, list[RequestRecord]] = {}
        self._phase_pools: dict[tuple[int, str], list[RequestRecord]] = {}
        for r in rows:
            self._pools.setdefault(r.draft_length, []).append(r)
            self._phase_pools.setdefault((r.draft_length, r.phase), []).append(r)
        if not self._pools:
            raise ValueError(f"{self.path}: no measured (non-warmup) rows to replay")
        self.recorded_draft_lengths = tuple(sorted(self._pools))
        self.max_draft_length = (
            self.recorded_draft_lengths[-1] if max_draft_length is None else max_draft_length
        )
        self._seed = seed
        self._rng = random.Random(seed)
        self._load = 0.0
        self._phase = "steady"

    def reset(self, seed: int | None = None) -> None:
        """Restart the sampling stream (from ``seed``, or the last seed given)."""
        if seed is not None:
            self._seed = seed
        self._rng = random.Random(self._seed)

    def set_load(self, level: float, phase: str = "steady") -> None:
        """Select the recorded phase to draw from; the level is only recorded (the trace has its load)."""
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"load level must be in 0..1, got {level!r}")
        self._load, self._phase = float(level), phase

    def generate(self, prompt: Prompt, draft_length: int) -> RequestResult:
        """A recorded request of draft length ``draft_length``; ValueError when there is none."""
        k = check_draft_length(draft_length, self.max_draft_length)
        pool = self._pools.get(k)
        if pool is None:
            recorded = ", ".join(map(str, self.recorded_draft_lengths))
            raise ValueError(
                f"{self.path} has no recorded request with draft_length {k}; recorded: {recorded}"
            )
        r = self._rng.choice(self._phase_pools.get((k, self._phase), pool))
        return RequestResult(
            success=r.success,
            latency_ms=r.latency_ms,
            tokens=r.tokens,
            draft_length=k,
            drafted=r.drafted,
            accepted=r.accepted,
            error=r.error or ("" if r.success else "recorded failure"),
            load=self._load,
            phase=self._phase,
        )

    def close(self) -> None:
        """Nothing to release."""
