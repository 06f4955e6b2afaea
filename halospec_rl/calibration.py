"""Fit the simulator's parameters to a recorded trace, and report its error per draft length.

    halospec-rl calibrate --csv decoder_runs.csv --preset embedded-cpu --write

The trace is a results CSV (``halospec_rl.report``) with fixed-mode requests (``fixed_k``; ``k = 0``
is plain decoding). What is fitted, in this order:

1. ``domain_alpha``: per content domain, the acceptance rate whose expected target passes per token
   (``expected_rounds_drafted``) best match the measured ones (``rounds = tokens - accepted``).
   Needs ``drafted``/``accepted``; a trace without them (HaloSpec's) keeps the base preset's rates.
2. ``overhead_ms``, ``target_pass_ms``, ``draft_round_ms`` and the per-drafted-token cost: least
   squares of the relative error of idle mean latencies per (k, domain) cell on the cells' mean
   (1, passes, speculative passes, drafted tokens) (plain
   decoding, k = 0, has passes but no speculative ones, which separates the two per-pass costs).
   The per-drafted-token cost is split into ``verify_slope * target_pass_ms + draft_token_ms``
   keeping the base preset's ``verify_slope`` (latency alone cannot tell them apart).
3. ``load_slowdown`` and ``load_verify_slope``: the same for the loaded cells, on (passes,
   speculative passes, drafted tokens) given the idle fit.
4. ``noise_sigma``, ``spike_prob``, ``spike_factor``, ``alpha_spread``: robust spread of the
   residuals in log space (spikes are residuals beyond 3 sigma) and of per-request acceptance.
"""

from __future__ import annotations

import math
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from halospec_rl.backends.simulated import SimulatorParams, expected_rounds_drafted
from halospec_rl.report import RequestRecord, read_results

_ALPHAS = np.linspace(0.0, 0.98, 99)
_FIXED = re.compile(r"^fixed_(\d+)$")


@dataclass(frozen=True)
class FitRow:
    """Measured vs simulated mean latency (ms) of one draft length, domain and load condition."""

    draft_length: int
    domain: str
    loaded: bool
    requests: int
    measured_ms: float
    predicted_ms: float

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_ms - self.measured_ms) / self.measured_ms


def _requests(path: str | Path) -> list[tuple[int, RequestRecord]]:
    """(draft length, record) of every successful measured fixed-mode request in the trace."""
    rows = []
    for run in read_results(path):
        for r in run:
            match = _FIXED.match(r.mode)
            if r.success and r.phase != "warmup" and match and r.tokens > 0:
                rows.append((int(match.group(1)), r))
    if not rows:
        raise ValueError(f"{path}: no successful fixed_k requests to fit the simulator on")
    return rows


def _passes(k: int, r: RequestRecord, alpha: float) -> tuple[float, float]:
    """(target passes, drafted tokens) of a request: measured when the trace has them, else expected."""
    if k == 0:
        return float(r.tokens), 0.0
    if r.accepted >= 0 and r.drafted >= 0:
        return float(r.tokens - r.accepted), float(r.drafted)
    return expected_rounds_drafted(k, alpha, r.tokens)


def _fit_alpha(rows: list[tuple[int, RequestRecord]]) -> float | None:
    """The acceptance rate whose expected passes per token best match these requests'."""
    usable = [(k, r) for k, r in rows if k > 0 and r.accepted >= 0 and r.drafted > 0]
    if not usable:
        return None
    errors = np.zeros(len(_ALPHAS))
    for i, alpha in enumerate(_ALPHAS):
        for k, r in usable:
            expected, _ = expected_rounds_drafted(k, float(alpha), r.tokens)
            errors[i] += ((r.tokens - r.accepted) - expected) ** 2
    return float(_ALPHAS[int(np.argmin(errors))])


def _cell_means(rows: list[tuple[int, RequestRecord]], features) -> tuple[np.ndarray, np.ndarray]:
    """Mean features and mean latency (ms) per (draft length, domain) cell: the cells the fit is
    judged on, so least squares on their relative errors (rows divided by the mean latency) fits
    what ``compare`` reports, and no cell outweighs another by its request count or its latency."""
    cells: dict[tuple[int, str], list] = defaultdict(list)
    for k, r in rows:
        cells[(k, r.domain)].append((features(k, r), r.latency_ms))
    x = np.array([np.mean([f for f, _ in cell], axis=0) for cell in cells.values()])
    y = np.array([np.mean([lat for _, lat in cell]) for cell in cells.values()])
    return x, y


def fit(path: str | Path, base: SimulatorParams, source: str = "") -> tuple[SimulatorParams, list[FitRow]]:
    """Fit ``base``'s parameters to the trace at ``path``; returns the fitted parameters and the
    per-(k, domain, load) comparison of measured and simulated mean latency."""
    rows = _requests(path)
    by_domain: dict[str, list] = defaultdict(list)
    for k, r in rows:
        by_domain[r.domain or "prose"].append((k, r))
    alphas = dict(base.domain_alpha)
    for domain, domain_rows in by_domain.items():
        fitted = _fit_alpha(domain_rows)
        if fitted is not None and domain in alphas:
            alphas[domain] = fitted

    def features(k, r):
        passes, drafted = _passes(k, r, alphas.get(r.domain or "prose", 0.6))
        return passes, passes if k > 0 else 0.0, drafted

    idle = [(k, r) for k, r in rows if r.load <= 0 and r.phase != "load"]
    loaded = [(k, r) for k, r in rows if not (r.load <= 0 and r.phase != "load")]
    if len({k for k, _ in idle}) < 2:
        raise ValueError(f"{path}: idle requests of at least two draft lengths are needed, got {sorted({k for k, _ in idle})}")
    x_cells, y_cells = _cell_means(idle, lambda k, r: (1.0, *features(k, r)))
    (overhead, target_pass, draft_round, per_drafted), *_ = np.linalg.lstsq(
        x_cells / y_cells[:, None], np.ones_like(y_cells), rcond=None
    )
    overhead, target_pass, draft_round = max(overhead, 0.0), max(target_pass, 1e-3), max(draft_round, 0.0)
    verify_slope = min(base.verify_slope, max(per_drafted, 0.0) / target_pass)
    draft_token = max(per_drafted - verify_slope * target_pass, 0.0)

    load_slowdown, load_verify_slope = base.load_slowdown, base.load_verify_slope
    if len({k for k, _ in loaded}) >= 2:
        xl, yl = _cell_means(loaded, features)
        (a, _, b), *_ = np.linalg.lstsq(xl / yl[:, None], (yl - overhead) / yl, rcond=None)
        multiplier = max(a / target_pass, 1.0)
        load_slowdown = multiplier - 1.0
        load_verify_slope = max((b / multiplier - per_drafted) / target_pass, 0.0)

    # Residual spread of idle requests around the deterministic cost (log space, robust).
    y = np.array([r.latency_ms for _, r in idle])
    predicted = np.array([overhead + target_pass * p + draft_round * ps + per_drafted * d
                          for p, ps, d in (features(k, r) for k, r in idle)])
    log_residual = np.log(np.maximum(y, 1e-6) / np.maximum(predicted, 1e-6))
    centred = log_residual - np.median(log_residual)
    sigma = max(1.4826 * float(np.median(np.abs(centred))), 1e-3)
    spikes = centred > 3 * sigma
    spike_prob = float(spikes.mean())
    spike_factor = float(np.exp(np.median(centred[spikes]))) if spikes.any() else base.spike_factor

    per_request_alpha = defaultdict(list)
    for k, r in rows:
        if k > 0 and r.accepted >= 0 and r.drafted > 0:
            per_request_alpha[r.domain].append(_fit_alpha([(k, r)]))
    spreads = [float(np.std(v)) for v in per_request_alpha.values() if len(v) > 2]
    alpha_spread = min(float(np.median(spreads)), 0.2) if spreads else base.alpha_spread

    params = replace(
        base,
        overhead_ms=float(overhead),
        target_pass_ms=float(target_pass),
        draft_token_ms=float(draft_token),
        draft_round_ms=float(draft_round),
        verify_slope=float(verify_slope),
        domain_alpha=alphas,
        alpha_spread=alpha_spread,
        noise_sigma=sigma,
        spike_prob=spike_prob,
        spike_factor=max(spike_factor, 1.0),
        load_slowdown=float(load_slowdown),
        load_verify_slope=float(load_verify_slope),
        source=source or f"Fitted by halospec_rl.calibration from {Path(path).name}",
    )
    return params, compare(params, rows)


def compare(params: SimulatorParams, rows: list[tuple[int, RequestRecord]]) -> list[FitRow]:
    """Measured vs simulated mean latency per (draft length, domain, idle/loaded)."""
    groups: dict[tuple[int, str, bool], list[RequestRecord]] = defaultdict(list)
    for k, r in rows:
        groups[(k, r.domain or "prose", r.load > 0 or r.phase == "load")].append(r)
    result = []
    for (k, domain, is_loaded), group in sorted(groups.items(), key=lambda g: (g[0][2], g[0][1], g[0][0])):
        alpha = params.domain_alpha.get(domain, 0.6)
        tokens = group[0].tokens
        predicted = params.mean_latency_ms(k, alpha, max_tokens=tokens, load=1.0 if is_loaded else 0.0)
        measured = math.fsum(r.latency_ms for r in group) / len(group)
        result.append(FitRow(k, domain, is_loaded, len(group), measured, predicted))
    return result


def format_fit(rows: list[FitRow]) -> str:
    lines = [f"{'k':>2} {'domain':<7} {'load':<5} {'n':>4} {'measured ms':>12} {'simulated ms':>13} {'error':>8}"]
    for row in rows:
        lines.append(f"{row.draft_length:>2} {row.domain:<7} {'yes' if row.loaded else 'no':<5} {row.requests:>4} "
                     f"{row.measured_ms:>12.1f} {row.predicted_ms:>13.1f} {row.error_pct:>7.1f}%")
    return "\n".join(lines)


def add_calibrate_arguments(parser) -> None:
    from halospec_rl.backends.simulated import preset_names

    parser.add_argument("--csv", required=True, help="results CSV of fixed_k requests (e.g. from decoder_speed.py --csv)")
    parser.add_argument("--preset", default="embedded-cpu", choices=preset_names(), help="preset to start from and to write")
    parser.add_argument("--write", action="store_true", help="write the fitted preset where the simulator loads it")


def run_calibrate(args) -> int:
    from halospec_rl.backends.simulated import load_preset, save_preset
    from halospec_rl.report import ResultsFileError

    try:
        params, rows = fit(args.csv, load_preset(args.preset))
    except (ResultsFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_fit(rows))
    idle = [abs(r.error_pct) for r in rows if not r.loaded]
    print(f"\nidle: max |error| {max(idle):.1f}%, mean |error| {sum(idle) / len(idle):.1f}% over {len(idle)} (k, domain) cells")
    print(params)
    if args.write:
        print(f"wrote {save_preset(args.preset, params)}")
    return 0
